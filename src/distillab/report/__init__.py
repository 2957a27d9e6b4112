"""The report stage: audit.json → report.html / report.md with figures and deployment recommendations.

Kept import-light (the CLI imports this package); use :func:`distillab.report.render.render_report`.
"""


def render_report(audit_dir, out_dir=None, scenarios_path=None, title=None):
    """Write the report for ``audit_dir`` (see :func:`distillab.report.render.render_report`)."""
    from distillab.report.render import render_report as _render

    return _render(audit_dir, out_dir=out_dir, scenarios_path=scenarios_path, title=title)
