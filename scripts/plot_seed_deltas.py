"""Draw a run's seed-paired Δ (each arm − the baseline, mean over seeds with its t CI) beside the
test-row paired-bootstrap Δ of the primary seed, per tier: the two noises a gain has to clear.

    python scripts/plot_seed_deltas.py runs/r52-dynamics/audit docs/dynamics-figure.png [--metric macro_f1]

Every number drawn is read from the run's ``audit.json`` and ``seeds.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TIERS = ("overall", "head", "mid", "tail")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audit_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--metric", default="macro_f1")
    args = parser.parse_args()
    audit = json.loads((args.audit_dir / "audit.json").read_text())
    seeds = json.loads((args.audit_dir / "seeds.json").read_text())
    paired = {(r["arm"], r["tier"]): r for r in seeds["paired"] if r["metric"] == args.metric}
    rows = {(r["arm"], r["tier"]): r for r in audit["bootstrap"] if r["metric"] == args.metric}
    arms = list(dict.fromkeys(arm for arm, _ in paired))
    fig, axes = plt.subplots(1, len(TIERS), figsize=(3.2 * len(TIERS), 0.38 * len(arms) + 1.2), sharey=True)
    for ax, tier in zip(axes, TIERS):
        for y, arm in enumerate(arms):
            for offset, record, centre, colour, label in (
                    (-0.17, paired.get((arm, tier)), "mean", "tab:blue", f"seed-paired ({len(seeds['seeds'])} seeds)"),
                    (0.17, rows.get((arm, tier)), "median", "tab:orange", f"test rows (seed {seeds['primary_seed']})")):
                if record is not None:
                    ax.errorbar(record[centre], y + offset, xerr=[[record[centre] - record["ci_low"]],
                                                                  [record["ci_high"] - record[centre]]],
                                fmt="o", color=colour, capsize=2, markersize=3, label=label if y == 0 else None)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_title(tier)
        ax.set_xlabel(f"Δ {args.metric} vs {seeds['baseline']} (95% CI)")
    axes[0].set_yticks(range(len(arms)), arms)
    axes[0].invert_yaxis()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(args.out, dpi=110, metadata={"Software": None})


if __name__ == "__main__":
    main()
