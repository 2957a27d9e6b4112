"""``distillab report AUDIT_DIR``: audit.json → report.html, report.md and figures.

Nothing heavy is imported here; matplotlib loads inside the handler.
"""

from __future__ import annotations


def register(subparsers) -> None:
    """Add ``report`` to the ``distillab`` parser."""
    p = subparsers.add_parser(
        "report",
        help="render audit.json as a self-contained HTML page and Markdown with figures",
        description="Turn an audit directory (audit.json) into report.html (no network, figures inline), "
        "report.md with figures/ (PNG + SVG), and per_class.csv, ending in a deployment recommendation "
        "per scenario.",
    )
    p.add_argument("audit_dir", metavar="AUDIT_DIR", help="directory holding audit.json (or the file itself)")
    p.add_argument("--out", metavar="DIR", default=None, help="where to write the report (default: AUDIT_DIR)")
    p.add_argument("--scenarios", metavar="FILE", default=None,
                   help="YAML or JSON deployment scenarios (default: the reference experiment's A, B, C)")
    p.add_argument("--title", default=None, help="page title (default: 'Distillation report: DATASET')")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import sys
    import time

    from distillab.report.render import render_report

    start = time.perf_counter()
    written = render_report(args.audit_dir, out_dir=args.out, scenarios_path=args.scenarios, title=args.title)
    print(f"wrote {written['html']} and {written['markdown']} in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
    return 0
