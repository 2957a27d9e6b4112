"""Plots take arrays and an optional axis, draw without pyplot, and cope with gaps and large K."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from distillab.report import plots


def axes():
    return Figure(figsize=(4, 3)).add_subplot()


def render(ax) -> bytes:
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png", dpi=50)
    return buf.getvalue()


def test_no_pyplot_state():
    ax = plots.tier_support([100, 10, 1], ["head", "mid", "tail"])
    render(ax)
    assert "matplotlib.pyplot" not in sys.modules or not __import__("matplotlib.pyplot").pyplot.get_fignums()


def test_reliability_uses_given_axis_and_overlays_scaled():
    ax = axes()
    e = np.linspace(0, 1, 16)
    raw = (e[:-1], e[1:], np.arange(15) + 1, np.linspace(0, 0.8, 15), (e[:-1] + e[1:]) / 2)
    out = plots.reliability_diagram(*raw, ax=ax, title="vanilla", scaled=raw)
    assert out is ax
    assert len(ax.patches) == 15 * 3  # count bars, accuracy bars, scaled count outlines
    assert "15 rows" in ax.get_title()
    assert render(ax)


def test_scatter_draws_an_arrow_per_scaled_arm_and_skips_missing():
    ax = plots.ece_nll_scatter(["a", "b", "c"], [0.13, 0.05, None], [1.55, 1.33, 1.2], [0.026, None, None],
                               [1.43, None, None], ax=axes())
    arrows = [c for c in ax.texts if getattr(c, "arrow_patch", None) is not None and not c.get_text()]
    assert len(arrows) == 1
    render(ax)


def _label_boxes(ax):
    renderer = ax.figure._get_renderer()
    # Text's own extent: an Annotation's includes its leader line.
    return {t.get_text(): Text.get_window_extent(t, renderer) for t in ax.texts if t.get_text()}


def test_scatter_names_never_collide_even_for_points_on_top_of_each_other():
    names = [f"kd_T{t}_a{a}" for t in (1, 4, 8) for a in (70, 90)] + ["vanilla", "label_smoothing", "hard_kd"]
    ece = [0.0210 + 0.0001 * i for i in range(len(names))]  # nine arms in one corner, as in the demo
    nll = [0.2900 + 0.0002 * i for i in range(len(names))]
    fig = Figure(figsize=(7.2, 4.8), layout="constrained")
    ax = plots.ece_nll_scatter(names + ["teacher"], ece + [0.015], nll + [0.304], ax=fig.add_subplot())
    fig.draw_without_rendering()
    boxes = _label_boxes(ax)
    assert set(boxes) == set(names) | {"teacher"}
    ordered = sorted(boxes.values(), key=lambda b: b.y0)
    for low, high in zip(ordered, ordered[1:]):
        assert low.y1 <= high.y0 + 0.5, "two arm names overlap"


def test_tier_bars_whiskers_are_not_clipped_and_the_legend_is_off_the_bars():
    f1 = np.array([[0.95, 0.98, 0.9, 0.2], [0.96, 0.99, 0.91, 0.1]])
    lo = np.array([[np.nan] * 4, [0.93, 0.97, 0.85, -0.05]])
    hi = np.array([[np.nan] * 4, [0.99, 1.04, 0.97, 0.3]])  # baseline + CI high passes 1.0
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = plots.tier_f1_bars(["v", "kd"], ["overall", "head", "mid", "tail"], f1, lo, hi, ax=fig.add_subplot())
    bottom, top = ax.get_ylim()
    assert top >= 1.04 and bottom <= -0.05
    renderer = fig._get_renderer()
    fig.draw_without_rendering()
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1, "the legend overlaps the plotting area"


def test_tier_bars_with_partial_ci():
    f1 = np.array([[0.26, 0.6, 0.4, 0.12], [0.28, 0.62, np.nan, 0.13]])
    lo = np.array([[np.nan] * 4, [0.27, 0.61, np.nan, 0.1]])
    ax = plots.tier_f1_bars(["v", "kd"], ["overall", "head", "mid", "tail"], f1, lo, lo + 0.03, ax=axes())
    assert len(ax.patches) == 8
    render(ax)


def test_coverage_curves_handle_empty_thresholds():
    ax = plots.coverage_curves(["v"], [[0.5, 0.9]], [[0.8, 0.0]], [[0.7, None]], sla_target=0.95, ax=axes())
    assert any(line.get_ydata()[0] == 0.95 for line in ax.lines if len(line.get_ydata()) == 2)
    render(ax)


def test_grid_heatmap_marks_cells_within_the_noise_floor():
    values = np.array([[0.283, 0.280, 0.270], [0.281, np.nan, 0.2705]])
    ax = plots.grid_heatmap([1, 4, 8], [0.7, 0.9], values, "macro-F1", True, noise_floor=0.005, ax=axes())
    outlined = [p for p in ax.patches if not p.get_fill()]
    assert len(outlined) == 3  # 0.283 (best), 0.281, 0.280
    assert any(t.get_text() == "not run" for t in ax.texts)
    render(ax)


@pytest.mark.parametrize("k, binned", [(30, False), (5000, True)])
def test_per_class_delta_bins_large_k(k, binned):
    rng = np.random.default_rng(0)
    tiers = np.array(["head"] * (k // 5) + ["mid"] * (k // 5) + ["tail"] * (k - 2 * (k // 5)))
    ax = plots.per_class_delta({"kd": rng.normal(0, 0.05, k)}, tiers, ax=axes())
    points = max(len(line.get_xdata()) for line in ax.lines)
    assert (points <= 100) if binned else (points == k)
    render(ax)


def test_tier_support_log_scale_for_many_classes():
    counts = np.sort(np.random.default_rng(0).zipf(1.5, 50_000))[::-1]
    tiers = np.array(["head"] * 20 + ["mid"] * 40 + ["tail"] * (50_000 - 60))
    ax = plots.tier_support(counts, tiers, ax=axes())
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    render(ax)
