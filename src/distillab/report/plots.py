"""Figures for the report: arrays in, matplotlib axes out.

Every function takes plain arrays (already computed by the audit) and an optional ``ax``; it draws
and returns the axes, so a notebook user can compose them. Figures are built with
``matplotlib.figure.Figure`` (no pyplot global state, no GUI backend), which renders with Agg.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, NullFormatter

TIER_COLORS = {"head": "#4c72b0", "mid": "#dd8452", "tail": "#c44e52"}
# Above this many classes the per-class view is binned by frequency rank instead of one bar per class.
PER_CLASS_BIN_ABOVE = 200


def arm_colors(n: int) -> list:
    """One stable colour per arm (tab10, then tab20 for many arms)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plain_log_ticks(axis) -> None:
    """Label a log axis "1, 10, 1,000" in plain text: the default $10^{k}$ labels go through mathtext,
    which dominates the drawing time of an otherwise simple figure."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def new_axes(ax: Axes | None, figsize=(5.0, 4.0)) -> Axes:
    if ax is not None:
        return ax
    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    return fig.add_subplot()


def reliability_diagram(
    lower: Sequence[float],
    upper: Sequence[float],
    counts: Sequence[int],
    accuracy: Sequence[float],
    confidence: Sequence[float],
    ax: Axes | None = None,
    title: str | None = None,
    color="#4c72b0",
    scaled: tuple[Sequence, Sequence, Sequence, Sequence, Sequence] | None = None,
    scaled_label: str = "+ temperature scaling",
) -> Axes:
    """Accuracy per confidence bin against the diagonal, with the rows per bin drawn underneath.

    Bars are the raw probabilities' bins (below the diagonal = over-confident). ``scaled`` — the
    same five arrays after temperature scaling — is overlaid as a line of (mean confidence,
    accuracy) points, so one panel shows what scaling did. Grey bars (raw) and the grey outline
    (scaled) show each bin's rows, scaled so the fullest bin reaches 0.25 and labelled in the
    title, so a large gap in a nearly empty bin reads as what it is.
    """
    ax = new_axes(ax)
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    counts, acc = np.asarray(counts, float), np.asarray(accuracy, float)
    s_counts = np.asarray(scaled[2], float) if scaled is not None else np.zeros(0)
    peak = max(counts.max(initial=0), s_counts.max(initial=0), 1)
    width = upper - lower
    ax.bar(lower, 0.25 * counts / peak, width=width, align="edge", color="0.85", lw=0, label="rows per bin")
    ax.plot([0, 1], [0, 1], ls="--", color="0.4", lw=1)
    ax.bar(lower, acc, width=width, align="edge", color=to_rgba(color, 0.55), edgecolor=color, lw=0.8,
           label="raw accuracy")
    if scaled is not None:
        s_lower, s_upper = np.asarray(scaled[0], float), np.asarray(scaled[1], float)
        ax.bar(s_lower, 0.25 * s_counts / peak, width=s_upper - s_lower, align="edge", fill=False,
               edgecolor="0.45", lw=0.6)
        ax.plot(np.asarray(scaled[4], float), np.asarray(scaled[3], float), "s-", color="black", ms=3, lw=1,
                label=scaled_label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xticks([0, 0.5, 1])
    ax.set_yticks([0, 0.5, 1])
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    if title:
        ax.set_title(f"{title}\nfullest bin: {int(peak):,} rows", fontsize=8)
    return ax


def ece_nll_scatter(
    names: Sequence[str],
    ece_raw: Sequence[float],
    nll_raw: Sequence[float],
    ece_scaled: Sequence[float | None] | None = None,
    nll_scaled: Sequence[float | None] | None = None,
    ax: Axes | None = None,
    colors: Sequence | None = None,
) -> Axes:
    """Each arm raw (circle) and temperature-scaled (square), with an arrow raw → scaled.

    Names never collide: they sit in one column right of the axes, in the order of the raw points'
    height, each joined to its point by a thin leader line (points of similar arms crowd together;
    labels placed beside them overlapped).
    """
    ax = new_axes(ax, figsize=(5.5, 4.2))
    colors = colors or arm_colors(len(names))
    shown = []
    for i, name in enumerate(names):
        x0, y0 = nll_raw[i], ece_raw[i]
        if x0 is None or y0 is None:
            continue
        shown.append(i)
        ax.plot(x0, y0, "o", color=colors[i], ms=7)
        if ece_scaled is None or nll_scaled is None or ece_scaled[i] is None or nll_scaled[i] is None:
            continue
        x1, y1 = nll_scaled[i], ece_scaled[i]
        ax.plot(x1, y1, "s", color=colors[i], ms=6, mfc="white", mew=1.5)
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="->", color=colors[i], lw=1.2, shrinkA=4, shrinkB=4))
    ax.plot([], [], "o", color="0.3", label="raw")
    ax.plot([], [], "s", color="0.3", mfc="white", label="+ temperature scaling")
    ax.set_xlabel("NLL (lower is better)")
    ax.set_ylabel("ECE (lower is better)")
    ax.margins(0.12)
    label_column(ax, [names[i] for i in shown], [nll_raw[i] for i in shown], [ece_raw[i] for i in shown],
                 [colors[i] for i in shown])
    # Below the axes, at a fixed place: loc="best" scans every artist (slow) and still hides points.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    return ax


def label_column(ax: Axes, names: Sequence[str], x: Sequence[float], y: Sequence[float], colors: Sequence,
                 fontsize: float = 7) -> None:
    """Name each point in a column right of the axes, evenly spaced in the points' vertical order.

    Evenly spaced slots cannot overlap (up to ~40 names at this size); a leader line joins each name
    to its point, so even points on top of each other stay readable.
    """
    if not names:
        return
    order = sorted(range(len(names)), key=lambda i: (y[i], x[i]))
    slots = np.linspace(0.02, 0.98, len(names)) if len(names) > 1 else np.array([0.5])
    for slot, i in zip(slots, order):
        ax.annotate(names[i], xy=(x[i], y[i]), xycoords="data", xytext=(1.03, slot), textcoords="axes fraction",
                    fontsize=fontsize, color="0.15", va="center", ha="left", annotation_clip=False,
                    arrowprops=dict(arrowstyle="-", color=colors[i], lw=0.6, alpha=0.7, shrinkA=0, shrinkB=3))


def tier_f1_bars(
    arms: Sequence[str],
    scopes: Sequence[str],
    f1: np.ndarray,
    ci_low: np.ndarray | None = None,
    ci_high: np.ndarray | None = None,
    ax: Axes | None = None,
    colors: Sequence | None = None,
) -> Axes:
    """Grouped bars: macro-F1 per scope (overall/head/mid/tail) per arm; whiskers where a CI exists.

    ``f1``, ``ci_low``, ``ci_high`` are [arms, scopes]; NaN means "no bar" / "no whisker".
    """
    ax = new_axes(ax, figsize=(max(5.0, 1.2 * len(scopes) + 0.25 * len(arms) * len(scopes)), 3.8))
    f1 = np.asarray(f1, float)
    colors = colors or arm_colors(len(arms))
    n_arms = len(arms)
    width = 0.8 / n_arms
    x = np.arange(len(scopes))
    for i, arm in enumerate(arms):
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, np.nan_to_num(f1[i]), width=width, color=colors[i], label=arm)
        if ci_low is not None and ci_high is not None:
            lo, hi = np.asarray(ci_low, float)[i], np.asarray(ci_high, float)[i]
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                mid = (lo[ok] + hi[ok]) / 2
                ax.errorbar(pos[ok], mid, yerr=[mid - lo[ok], hi[ok] - mid], fmt="none", ecolor="black",
                            capsize=3, lw=1)
    ax.set_xticks(x, list(scopes))
    ax.set_ylabel("macro-F1")
    # Whiskers are never clipped: a baseline score plus its CI can pass 1.0 (or drop below 0).
    top = max(np.nanmax(f1, initial=0.1), np.nanmax(ci_high, initial=0) if ci_high is not None else 0)
    bottom = min(0.0, np.nanmin(ci_low, initial=0) if ci_low is not None else 0)
    ax.set_ylim(bottom - (0.02 if bottom < 0 else 0), top * 1.08 + 0.02)
    if top > 1.0:
        ax.axhline(1.0, color="0.6", lw=0.6, ls=":")
    # Right of the axes, off the bars.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              ncol=2 if n_arms > 14 else 1)
    return ax


def coverage_curves(
    arms: Sequence[str],
    thresholds: Sequence[Sequence[float]],
    coverage: Sequence[Sequence[float | None]],
    accuracy: Sequence[Sequence[float | None]],
    sla_target: float | None = None,
    ax: Axes | None = None,
    colors: Sequence | None = None,
) -> Axes:
    """Selective accuracy against coverage per arm (one point per threshold), with the SLA line."""
    ax = new_axes(ax, figsize=(5.5, 4.0))
    colors = colors or arm_colors(len(arms))
    for i, arm in enumerate(arms):
        cov = np.array([np.nan if v is None else v for v in coverage[i]], float)
        acc = np.array([np.nan if v is None else v for v in accuracy[i]], float)
        ax.plot(cov, acc, "o-", color=colors[i], ms=4, lw=1.2, label=arm)
        if i == 0:
            for t, c, a in zip(thresholds[i], cov, acc):
                if np.isfinite(c) and np.isfinite(a):
                    ax.annotate(f"{t:g}", (c, a), xytext=(3, -9), textcoords="offset points", fontsize=6,
                                color=colors[i])
    if sla_target is not None:
        ax.axhline(sla_target, color="crimson", ls="--", lw=1, label=f"SLA accuracy {sla_target:g}")
    ax.set_xlabel("coverage (fraction with max probability ≥ threshold)")
    ax.set_ylabel("accuracy on covered rows")
    ax.set_xlim(0, 1.02)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=2 if len(arms) > 12 else 1)
    return ax


def grid_heatmap(
    t_values: Sequence[float],
    alpha_values: Sequence[float],
    values: np.ndarray,
    title: str,
    higher_is_better: bool,
    noise_floor: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """One metric over the T × α grid ([alpha, T] array, NaN = not run), each cell annotated.

    With ``noise_floor``, cells within it of the best are outlined: the data cannot rank them.
    """
    ax = new_axes(ax, figsize=(3.6, 3.0))
    values = np.asarray(values, float)
    cmap = "viridis" if higher_is_better else "viridis_r"
    image = ax.imshow(values, cmap=cmap, aspect="auto", origin="lower")
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(t_values)), [f"{t:g}" for t in t_values])
    ax.set_yticks(range(len(alpha_values)), [f"{a:g}" for a in alpha_values])
    ax.set_xlabel("T")
    ax.set_ylabel("α")
    finite = values[np.isfinite(values)]
    best = (finite.max() if higher_is_better else finite.min()) if finite.size else np.nan
    for (r, c), v in np.ndenumerate(values):
        if not np.isfinite(v):
            ax.text(c, r, "not run", ha="center", va="center", fontsize=7, color="0.5")
            continue
        ax.text(c, r, f"{v:.4f}", ha="center", va="center", fontsize=8, color="white",
                bbox=dict(boxstyle="round,pad=0.15", fc="black", alpha=0.35, lw=0))
        if noise_floor is not None and abs(v - best) < noise_floor:
            ax.add_patch(Rectangle((c - 0.48, r - 0.48), 0.96, 0.96, fill=False, ec="red", lw=2))
    if noise_floor is not None:
        title += f"\n(red: within noise floor {noise_floor:.4f} of best)"
    ax.set_title(title, fontsize=9)
    return ax


def per_class_delta(
    deltas: dict[str, np.ndarray],
    tiers: Sequence[str] | None = None,
    ax: Axes | None = None,
    colors: Sequence | None = None,
    bin_above: int = PER_CLASS_BIN_ABOVE,
    xlabel: str = "class rank by training frequency (1 = most frequent)",
) -> Axes:
    """Δ F1 per class (arm − baseline) in order of class frequency, most frequent first.

    Up to ``bin_above`` classes: one point per class. Beyond that, classes are grouped into ~100
    rank bins of geometrically growing width (single classes in the head, wide bins deep in the
    tail, matching the log rank axis) and each bin shows the mean Δ with its min–max band.
    """
    ax = new_axes(ax, figsize=(7.0, 3.6))
    colors = colors or arm_colors(len(deltas))
    k = len(next(iter(deltas.values()))) if deltas else 0
    binned = k > bin_above
    if tiers is not None and k:
        tiers = np.asarray(tiers)
        for tier, color in TIER_COLORS.items():
            ranks = np.flatnonzero(tiers == tier)
            if ranks.size:
                ax.axvspan(ranks[0] + 0.5, ranks[-1] + 1.5, color=color, alpha=0.08, lw=0)
                ax.text((ranks[0] + ranks[-1]) / 2 + 1, 1.0, tier, transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=7, color=color)
    for i, (arm, delta) in enumerate(deltas.items()):
        delta = np.asarray(delta, float)
        if binned:
            edges = np.unique(np.round(np.geomspace(1, k + 1, 100)).astype(int) - 1)
            centers, mean, lo, hi = [], [], [], []
            for a, b in zip(edges[:-1], edges[1:]):
                chunk = delta[a:b]
                centers.append(np.sqrt((a + 1) * b))  # geometric centre of ranks a+1..b (log axis)
                mean.append(chunk.mean())
                lo.append(chunk.min())
                hi.append(chunk.max())
            ax.fill_between(centers, lo, hi, color=colors[i], alpha=0.15, lw=0)
            ax.plot(centers, mean, "-", color=colors[i], lw=1.2, label=f"{arm} (bin mean, min–max band)")
        else:
            ranks = np.arange(1, k + 1)
            ax.plot(ranks, delta, "o", ms=3 if k > 50 else 4, color=colors[i], label=arm, alpha=0.85)
            if len(deltas) == 1:
                ax.vlines(ranks, 0, delta, color=colors[i], lw=0.8, alpha=0.6)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Δ F1 vs baseline")
    ax.set_xlim(0.5, k + 0.5)
    if k > 50:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
    ax.legend(fontsize=7, loc="lower left", ncol=2 if len(deltas) > 4 else 1)
    return ax


def tier_support(counts: Sequence[int], tiers: Sequence[str], ax: Axes | None = None,
                 ylabel: str = "training examples per class (log)") -> Axes:
    """Examples per class by frequency rank (log scale), coloured by tier: the data ceiling.

    ``ylabel`` names what was counted (training examples, or evaluation rows when no training counts
    were given)."""
    ax = new_axes(ax, figsize=(7.0, 3.4))
    counts = np.asarray(counts, float)
    tiers = np.asarray(tiers)
    ranks = np.arange(1, counts.size + 1)
    for tier, color in TIER_COLORS.items():
        m = tiers == tier
        if not m.any():
            continue
        if counts.size <= 50:
            ax.bar(ranks[m], counts[m], width=1.0, color=color, label=f"{tier} ({int(m.sum()):,} classes)")
        else:  # a filled step reads better than thousands of bars, and works on a log rank axis
            ax.fill_between(ranks[m], counts[m], step="mid", color=color, alpha=0.8,
                            label=f"{tier} ({int(m.sum()):,} classes)")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    if counts.size > 50:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
    ax.set_xlabel("class rank (1 = most frequent)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="upper right")
    return ax
