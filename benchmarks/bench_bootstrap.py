"""Paired-bootstrap speed: distillab's vectorised bootstrap vs the course's sklearn ``f1_score`` loop.

Both run the course profile on the same resamples (one RandomState(42) stream; head, mid, tail, then
overall; 1,000 resamples each; macro-F1 of distilled − vanilla) at n = 6,430, K = 113, and must
agree exactly. Prints the two times and their ratio (goal: >= 50x).

    python benchmarks/bench_bootstrap.py [--n-resamples 1000]
"""

import argparse
import tempfile
import time

import numpy as np
from sklearn.metrics import f1_score

from distillab.audit import metrics as M
from distillab.audit.bootstrap import paired_bootstrap
from distillab.audit.example import make_example
from distillab.data.tiers import assign_tiers
from distillab.io import load_predictions, read_json


def sklearn_loop(preds: dict, labels, row_tiers, n_resamples: int, seed: int = 42) -> dict:
    """LAB [86d6b94e] with the overall group appended, as distillab draws it."""
    rng = np.random.RandomState(seed)
    out = {}
    for tier in ("head", "mid", "tail", "overall"):
        idx = np.arange(len(labels)) if tier == "overall" else np.where(row_tiers == tier)[0]
        kwargs = {} if tier == "overall" else {"labels": sorted(set(labels[idx]))}
        deltas = []
        for _ in range(n_resamples):
            s = rng.choice(idx, size=len(idx), replace=True)
            d = f1_score(labels[s], preds["distilled"][s], average="macro", zero_division=0, **kwargs)
            v = f1_score(labels[s], preds["vanilla"][s], average="macro", zero_division=0, **kwargs)
            deltas.append(d - v)
        out[tier] = (np.median(deltas), np.quantile(deltas, 0.025), np.quantile(deltas, 0.975))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-resamples", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_example(tmp)
        arms = {name: load_predictions(paths[name]) for name in ("vanilla", "distilled")}
        counts = np.asarray(read_json(paths["train_counts"]))
    labels = arms["vanilla"].labels
    row_tiers = assign_tiers(counts)[labels]
    probs = {name: M.softmax(p.logits) for name, p in arms.items()}
    preds = {name: p.argmax(axis=1) for name, p in probs.items()}

    start = time.perf_counter()
    records = paired_bootstrap(probs, labels, row_tiers, "vanilla", metrics=("macro_f1",), n_resamples=args.n_resamples)
    ours = time.perf_counter() - start

    start = time.perf_counter()
    reference = sklearn_loop(preds, labels, row_tiers, args.n_resamples)
    theirs = time.perf_counter() - start

    for r in records:
        assert (r["median"], r["ci_low"], r["ci_high"]) == reference[r["tier"]], f"{r['tier']}: results differ"
    print(f"n={len(labels)}, K={probs['vanilla'].shape[1]}, {args.n_resamples} resamples x 4 groups (head, mid, tail, overall)")
    for r in records:
        print(f"  {r['tier']:<8} median {r['median']:+.4f}  CI [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]  (identical to the loop)")
    print(f"distillab bootstrap: {ours:.2f} s   sklearn f1_score loop: {theirs:.2f} s   ratio: {theirs / ours:.0f}x")


if __name__ == "__main__":
    main()
