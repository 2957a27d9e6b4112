"""Regenerate ``fixtures/audit_verdict.json``: the REAL audit of the audit's synthetic example.

``python tests/report/make_fixture_audit.py`` — small (k=12, n=900, 100 resamples) with a grid and a
reference baseline arm (``tfidf_linear``: a copy of one KD arm's predictions whose sidecar says
``role: reference``), so the report's verdict, paired-CI decisions and threshold search are tested
on what the audit actually writes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from distillab.audit import audit, make_example

OUT = Path(__file__).parent / "fixtures" / "audit_verdict.json"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_example(root / "preds", seed=2, n=900, k=12, grid=True)
        ref = root / "preds" / "tfidf_linear.npz"
        shutil.copy(paths["kd_T8_a90"], ref)
        meta = json.loads(Path(str(paths["kd_T8_a90"])[:-4] + ".json").read_text())
        meta.update(model="tfidf+logreg", arm="tfidf_linear", role="reference",
                    recipe={"loss": "reference_baseline", "kind": "tfidf_linear"})
        ref.with_suffix(".json").write_text(json.dumps(meta))
        arms = {name: paths[name] for name in ("vanilla", "distilled", "kd_T1_a70")}
        arms["tfidf_linear"] = ref
        result = audit(arms=arms, baseline="vanilla", teacher=paths["teacher"], train_counts=paths["train_counts"],
                       classes=paths["classes"], tier_cutoffs=(3, 7), n_resamples=100)
    for entry in result["inputs"].values():  # no temporary paths in the fixture
        entry["path"] = "preds/" + Path(entry["path"]).name
    OUT.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
