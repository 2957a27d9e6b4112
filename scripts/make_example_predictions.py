"""Write synthetic, course-shaped predictions (teacher, vanilla, distilled) for the demo audit.

    python scripts/make_example_predictions.py example/
    distillab audit --teacher example/teacher.npz --arm vanilla=example/vanilla.npz \
        --arm distilled=example/distilled.npz --baseline vanilla \
        --train-counts example/train_counts.json --reference-score 0.209 --out example/audit
"""

import argparse

from distillab.audit.example import make_example


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="directory to write the files into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=6430, help="rows (default: 6430, the course's val set)")
    parser.add_argument("--k", type=int, default=113, help="classes (default: 113)")
    parser.add_argument("--grid", action="store_true", help="also write two more KD arms (T=1, α=0.7; T=8, α=0.9)")
    args = parser.parse_args()
    paths = make_example(args.out_dir, seed=args.seed, n=args.n, k=args.k, grid=args.grid)
    for name, path in paths.items():
        print(f"{name:>12}: {path}")


if __name__ == "__main__":
    main()
