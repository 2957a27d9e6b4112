"""Whole-audit time for 3 arms (teacher, vanilla, distilled) at n = 6,430, K = 113 (goal: <= 3 s).

Times ``distillab.audit.audit`` with every default (1,000 resamples, 4 metrics x 4 groups, every arm
calibrated), reading the files and writing audit.json/audit.md; then the ``distillab audit``
command as a fresh process (adds interpreter start-up and imports).

    python benchmarks/bench_audit.py [--repeats 3]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distillab.audit import audit
from distillab.audit.example import make_example


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        p = make_example(Path(tmp) / "example")
        arms = {"vanilla": p["vanilla"], "distilled": p["distilled"]}
        times = []
        for i in range(args.repeats):
            start = time.perf_counter()
            audit(arms, "vanilla", teacher=p["teacher"], train_counts=p["train_counts"], out=Path(tmp) / f"audit{i}")
            times.append(time.perf_counter() - start)
        command = [
            sys.executable, "-m", "distillab", "audit", "--teacher", str(p["teacher"]), "--arm", f"vanilla={p['vanilla']}",
            "--arm", f"distilled={p['distilled']}", "--baseline", "vanilla", "--train-counts", str(p["train_counts"]),
            "--out", str(Path(tmp) / "cli"), "--quiet",
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        cli = time.perf_counter() - start
    print(f"audit(), 3 arms, n=6430, K=113: best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s "
          f"over {args.repeats} runs")
    print(f"distillab audit (fresh process): {cli:.2f} s")


if __name__ == "__main__":
    main()
