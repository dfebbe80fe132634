"""The report's figures, drawn with matplotlib, and its montages of frame crops.

Every figure is a :class:`matplotlib.figure.Figure` on its own Agg canvas (no pyplot, so
no global backend is chosen and nothing is drawn on screen), written by :func:`save` as
PNG for the page and as SVG beside it, text kept as text, for anyone who restyles a
figure.  matplotlib is imported inside the functions that draw, so commands that draw
nothing do not load it.  Colours are matplotlib's ten-colour palette; a figure's size is
given in pixels of the PNG (at ``DPI``).

Montages are images, not plots: tiles pasted into a grid with Pillow, each with its
caption lines.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

BLUE, ORANGE, GREEN, RED = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"
DARK, LIGHT = "#222222", "#c8c8c8"
#: pixels per inch of the PNGs: a figure of W x H pixels is W/DPI x H/DPI inches
DPI = 100
NAN_RGB = (225, 225, 225)

#: the house style, on top of the user's matplotlibrc
_STYLE = {"font.size": 9.0, "axes.titlesize": 10.5, "axes.titlelocation": "left", "axes.grid": True,
          "grid.color": "#e6e6e6", "axes.axisbelow": True, "legend.fontsize": 8.5, "legend.framealpha": 0.9,
          "svg.fonttype": "none", "svg.hashsalt": "spidarknet"}


@contextlib.contextmanager
def figure(width_px: int, height_px: int, margins_px: tuple[int, int, int, int] | None = None) -> Iterator:
    """A new figure of ``width_px`` x ``height_px`` pixels (at :data:`DPI`) with one
    axes, drawn in the house style: ``with figure(w, h) as (fig, ax): ...``.  The axes are
    laid out by matplotlib's constrained layout, or, with ``margins_px`` (left, right,
    bottom, top), placed at those margins: a third of the drawing time, for figures drawn
    again and again (the monitor page)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI,
                     layout="constrained" if margins_px is None else None)
        FigureCanvasAgg(fig)
        if margins_px is None:
            yield fig, fig.add_subplot()
        else:
            left, right, bottom, top = margins_px
            yield fig, fig.add_axes((left / width_px, bottom / height_px, 1 - (left + right) / width_px,
                                     1 - (bottom + top) / height_px))


def style():
    """The house style as a context: for drawing a figure made by :func:`figure` again (tick
    labels are made while drawing, and take the style of that moment)."""
    import matplotlib
    return matplotlib.rc_context(_STYLE)


def save(fig, folder: Path, png_name: str) -> None:
    """``fig`` as ``folder / png_name`` and as the same name with ``.svg``."""
    import matplotlib
    with matplotlib.rc_context(_STYLE):
        fig.savefig(folder / png_name, dpi=DPI, metadata={"Software": None})
        fig.savefig((folder / png_name).with_suffix(".svg"), metadata={"Date": None})


def colormap(values: np.ndarray, name: str = "viridis") -> np.ndarray:
    """uint8 RGB of ``values`` in [0, 1] through a matplotlib colour map (NaN: light grey)."""
    import matplotlib
    v = np.asarray(values, dtype=np.float64)
    rgb = matplotlib.colormaps[name](np.clip(np.nan_to_num(v), 0.0, 1.0), bytes=True)[..., :3]
    rgb[~np.isfinite(v)] = NAN_RGB
    return rgb


# -- figures -----------------------------------------------------------------------------------

def pr_curve(ev: dict, selection_label: str, number) -> object:
    """Precision against recall with lines of constant F1, the hit list's threshold and the
    two suggested ones marked; ``number`` formats a threshold."""
    with figure(520, 400) as (fig, ax):
        r = np.linspace(0.001, 1, 200)
        for f in (0.2, 0.4, 0.6, 0.8):
            rr = r[r > f / 2 + 1e-3]
            ax.plot(rr, f * rr / (2 * rr - f), color=LIGHT, lw=0.8)
        pr = ev["pr_curve"]
        ax.plot([pr["recall"][0]] + pr["recall"], [1.0] + pr["precision"], color=BLUE, lw=2,
                label=f"PR curve (AP {ev['average_precision']:.3f})")
        at, s = ev["at_threshold"], ev["suggested_thresholds"]
        hr = s["high_recall"]
        for point, colour, marker, label in (
                (at, DARK, "o", selection_label),
                (s["max_f1"], GREEN, "D", f"max F1: {number(s['max_f1']['threshold'])}"),
                (hr, RED, "^", f"recall >= {hr['target_recall']:g}: {number(hr['threshold'])}")):
            ax.plot(point["recall"], point["precision"], marker, color=colour, mec=DARK, ms=8, label=label)
        ax.set(title="Precision-recall", xlabel="recall", ylabel="precision", xlim=(0, 1.03), ylim=(0, 1.04))
        ax.legend(loc="lower left")
    return fig


def roc_curve(ev: dict, selection_label: str, number) -> object:
    """True-positive against false-positive rate, the hit list's threshold marked."""
    with figure(520, 400) as (fig, ax):
        ax.plot([0, 1], [0, 1], "--", color=LIGHT, lw=1)
        roc, at = ev["roc_curve"], ev["at_threshold"]
        ax.plot(roc["fpr"], roc["tpr"], color=BLUE, lw=2, label=f"ROC (AUC {number(ev['roc_auc'])})")
        ax.plot(at["fp"] / max(ev["negatives"], 1), at["recall"], "o", color=DARK, ms=8, label=selection_label)
        ax.set(title="ROC", xlabel="false-positive rate", ylabel="true-positive rate", xlim=(-0.02, 1.02),
               ylim=(0, 1.04))
        ax.legend(loc="lower right")
    return fig


def _short(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def by_category(name: str, section: dict) -> object:
    """Horizontal bars: the share of each category's frames the hit list selected (blue with
    positives, red without), recall as green diamonds, selected / frames at the bar's end."""
    rows = section["categories"]
    n = len(rows)
    y = np.arange(n)[::-1] + 0.5
    share = np.array([r["selected_share"] for r in rows], dtype=np.float64)
    recall = np.array([r["recall"] for r in rows], dtype=np.float64)
    positive = np.array([r["positives"] > 0 for r in rows], dtype=bool)
    with figure(600, int(min(max(180, 26 * n + 96), 900))) as (fig, ax):
        ax.barh(y, np.nan_to_num(share), height=0.7, color=np.where(positive, BLUE, RED), alpha=0.55,
                edgecolor=np.where(positive, BLUE, RED))
        ax.plot(recall[positive], y[positive], "D", color=GREEN, mec=DARK, ms=6, ls="none")
        for yk, sk, r in zip(y, share, rows):
            ax.annotate(f"{r['selected']} / {r['frames']}", (max(np.nan_to_num(sk), 0.0), yk),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
        ax.set_yticks(y, [_short(r["category"]) for r in rows])
        ax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0], ["0 %", "25 %", "50 %", "75 %", "100 %"])
        ax.set(title=f"Selected share by {_short(name, 48)}", xlabel="share of the category's frames selected",
               xlim=(0.0, 1.2), ylim=(0, n))
        ax.grid(False, axis="y")
    return fig


def score_histogram(edges: np.ndarray, series: Sequence[tuple[str, np.ndarray, str]],
                    lines: Sequence[tuple[float, str, str]]) -> object:
    """Histograms of scores (label, counts per bin of ``edges``, colour) on a log scale,
    with vertical ``lines`` (score, colour, label, line style), drawn above the bars."""
    top = max((int(c.max()) for _, c, _ in series), default=1)
    with figure(640, 380) as (fig, ax):
        for label, counts, colour in series:
            ax.stairs(counts, edges, fill=True, color=colour, alpha=0.5, label=label)
            ax.stairs(counts, edges, color=colour, lw=1)
        for x, colour, label, style in lines:
            ax.axvline(x, color=colour, ls=style, lw=1.5, label=label, zorder=3)
        ax.set_yscale("log")
        ax.set(title="Scores", xlabel="score", ylabel="frames (log scale)", xlim=(edges[0], edges[-1]),
               ylim=(0.7, max(10.0, top * 1.8)))
        ax.legend(loc="upper right")
    return fig


def profile_map(logs: np.ndarray, q_max_inv_nm: float, diameters_nm: np.ndarray, minima_x: Sequence[float],
                vmin: float, vmax: float) -> object:
    """Rows of ``logs`` (NaN where a ring has no usable pixel; row 0 the smallest diameter,
    at the bottom) over q from 0 to ``q_max_inv_nm`` on a colour scale from ``vmin`` to
    ``vmax``, with white dots at the sphere minima ``q = 2 x / d`` for each x of
    ``minima_x``."""
    import matplotlib
    n = len(diameters_nm)
    y = np.arange(n) + 0.5
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=np.array(NAN_RGB) / 255)
    with figure(700, int(min(max(340, 7 * n + 120), 760))) as (fig, ax):
        image = ax.imshow(logs, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="lower",
                          extent=(0.0, q_max_inv_nm, 0, n), interpolation="nearest")
        for k, x in enumerate(minima_x):
            q_min = 2.0 * x / diameters_nm
            keep = q_min <= q_max_inv_nm
            ax.plot(q_min[keep], y[keep], "o", color="white", mec=DARK, mew=0.3, ms=2.8 if n > 30 else 4.4,
                    ls="none", label="1st and 2nd minimum of the fitted sphere" if k == 0 else None)
        rows = np.unique(np.linspace(0, n - 1, min(n, 8)).astype(int))
        labels = {f"{diameters_nm[k]:.0f}": k for k in rows[::-1]}     # the first row of each label
        ax.set_yticks([y[k] for k in labels.values()], list(labels))
        ax.set(title=f"Radial profiles of {n} selected frames, sorted by fitted diameter", xlabel="q (1/nm)",
               ylabel="fitted diameter (nm)", xlim=(0.0, q_max_inv_nm), ylim=(0, n))
        ax.grid(False)
        ax.legend(loc="upper right")
        fig.colorbar(image, ax=ax, label="log10 (I - background) q^4, per row")
    return fig


def size_histogram(diameters_nm: np.ndarray, edges: np.ndarray, window: tuple[float, float] | None) -> object:
    """Histogram of the fitted diameters over ``edges`` (nm), the size window shaded."""
    from matplotlib.ticker import MaxNLocator
    counts = np.histogram(diameters_nm, bins=edges)[0]
    with figure(560, 360) as (fig, ax):
        if window is not None:
            ax.axvspan(*window, color=GREEN, alpha=0.12, label=f"size window {window[0]:g}-{window[1]:g} nm")
        ax.stairs(counts, edges, fill=True, color=BLUE, alpha=0.6, label="fitted diameters")
        ax.stairs(counts, edges, color=BLUE, lw=1)
        median = float(np.median(diameters_nm))
        ax.axvline(median, color=DARK, ls="--", lw=1.5, label=f"median {median:.1f} nm", zorder=3)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=f"Fitted diameters of {len(diameters_nm)} selected frames", xlabel="diameter (nm)",
               ylabel="frames", xlim=(edges[0], edges[-1]), ylim=(0, max(int(counts.max()) * 1.15, 1)))
        ax.legend(loc="upper right")
    return fig


# -- montages ----------------------------------------------------------------------------------

def montage(tiles: Sequence[np.ndarray], captions: Sequence[Sequence[str]], *, columns: int = 6,
            gap: int = 8) -> "Image.Image":
    """RGB tiles (all the same size) in a grid, each with up to three caption lines below."""
    from PIL import Image, ImageDraw, ImageFont
    if not tiles:
        raise ValueError("no tiles")
    th, tw = tiles[0].shape[:2]
    try:
        font = ImageFont.load_default(size=11)       # Pillow ≥ 10.1: a scalable font
    except TypeError:
        font = ImageFont.load_default()
    line_h = 14
    cap_h = line_h * max(len(c) for c in captions) + 4
    cols = min(columns, len(tiles))
    rows = int(math.ceil(len(tiles) / cols))
    out = Image.new("RGB", (cols * (tw + gap) + gap, rows * (th + cap_h + gap) + gap), "white")
    draw = ImageDraw.Draw(out)
    for k, (tile, caption) in enumerate(zip(tiles, captions)):
        r, c = divmod(k, cols)
        x, y = gap + c * (tw + gap), gap + r * (th + cap_h + gap)
        out.paste(Image.fromarray(np.ascontiguousarray(tile, dtype=np.uint8), "RGB"), (x, y))
        for j, text in enumerate(caption):
            draw.text((x + 1, y + th + 3 + j * line_h), _fit_text(draw, text, font, tw), fill=DARK, font=font)
    return out


def _fit_text(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
