"""The report folder: ``index.html``, its figures (PNG, and SVG beside each plot) and
``report.json``.

Sections: a summary table (frames, threshold, selected, and with truth precision, recall,
F1, accuracy, ROC AUC, average precision and the suggested thresholds); the
precision-recall and ROC curves with the thresholds marked (with truth); with truth and
``by``, a table and a bar chart of the selected share (and recall) per category of frame;
with truth and a per-frame photon count, precision, recall and F1 per photon-count bin; score
histograms (by truth class when there is truth); montages of frames — top hits,
borderline frames near the threshold and, with truth, the top-scoring negatives and the
lowest-scoring positives — read again from the files the hit list names and shown as a
log-scaled crop around the beam centre with the detection box; the radial profiles of the
selected hits as a map sorted by fitted diameter; and the size histogram.

The figures are drawn by :mod:`spidarknet.report.plot` (matplotlib); the page is the
Jinja2 template ``spidarknet/templates/report.html``, filled from the dict that
:func:`page_context` builds.  The folder is built under a temporary name and renamed
when complete.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from spidarknet.core.version import __version__
from spidarknet.core.errors import ConfigError, InputError
from spidarknet.core.keys import match_keys
from spidarknet.core.outputs import check_destination, json_ready, staged_dir
from spidarknet.frames.euxfel import recorded_run_options, sources_of_keys
from spidarknet.frames.source import FrameKey, FrameSource
from spidarknet.hits import HitList
from spidarknet.hits import read_selected
from spidarknet.judge.breakdown import PHOTON_EDGES, breakdowns, check_photon_edges
from spidarknet.judge.evaluation import evaluate
from spidarknet.judge.truth import Truth, load_truth
from spidarknet.report import plot
from spidarknet.sizing import SPHERE_FIRST_ZERO_X, SizeResult, SizingSettings, estimate_sizes, read_sizes

#: the second zero of the sphere amplitude (x = q R)
SPHERE_SECOND_ZERO_X = 7.725251836937707
BOX_COLOUR = "#00e5ff"
MASKED_RGB = (72, 72, 72)


@dataclass
class ReportOptions:
    """What goes into a report (defaults suit a few thousand frames)."""

    truth_dataset: str | None = None
    truth_csv: str | None = None
    sizes_csv: str | None = None
    common_only: bool = False
    target_recall: float = 0.9
    tiles: int = 12              # frames per montage
    crop_px: int = 256           # side of the square shown around the beam centre, pixels
    tile_px: int = 160           # side of a montage tile on the page
    max_sized: int = 300         # selected frames whose radial profiles are computed
    by: tuple[str, ...] = ()     # with truth: per-frame datasets (or truth CSV columns) to count by
    photons_dataset: str | None = None   # with truth: per-frame photon count (None: /truth/photons if there)
    photon_edges: tuple[float, ...] = PHOTON_EDGES   # photon-count bin edges, photons per frame
    sizing: SizingSettings = field(default_factory=SizingSettings)

    def check(self) -> "ReportOptions":
        """Raise :class:`ConfigError` on values that cannot work."""
        self.sizing.check()
        if self.tiles < 1 or self.crop_px < 16 or self.tile_px < 32 or self.max_sized < 1:
            raise ConfigError("--tiles and --max-profiles must be at least 1, --crop at least 16 px (and "
                              "the tile size at least 32 px)")
        if self.by and not (self.truth_dataset or self.truth_csv):
            raise ConfigError("--by counts positives and recall per category, so it needs the truth: "
                              "give --truth-dataset PATH or --truth CSV as well")
        check_photon_edges(self.photon_edges)
        return self


@dataclass
class _Context:
    hits: HitList
    flags: np.ndarray
    labels: np.ndarray | None           # per hit-list row; None without truth
    truth: Truth | None
    evaluation: dict | None
    table_sizes: dict[int, float]       # hit-list row -> diameter (nm) from --sizes
    sized: list[SizeResult]
    row_of: dict[tuple[str, int], int]  # (absolute file, index) -> hit-list row


def _abs_key(key: FrameKey) -> tuple[str, int]:
    return os.path.abspath(key.file), int(key.index)


def build_report(hits_path: str, out_dir: str, options: ReportOptions | None = None, *,
                 force: bool = False, on_step: Callable[[str], object] | None = None) -> dict:
    """Write the report folder ``out_dir`` for the hit list ``hits_path``; returns the
    summary numbers (also written as ``report.json``)."""
    o = (options or ReportOptions()).check()
    step = on_step or (lambda _text: None)
    check_destination(out_dir, force, "report folder")
    hits, flags = read_selected(hits_path)
    if not len(hits):
        raise InputError(f"{hits_path} holds no frames; nothing to report")
    ctx = _context(hits, flags, o)
    selected_rows = np.flatnonzero(flags)
    sample = selected_rows
    if len(sample) > o.max_sized:
        sample = selected_rows[np.unique(np.linspace(0, len(selected_rows) - 1, o.max_sized).astype(int))]
    panels = _choose_tiles(hits, flags, ctx.labels, o.tiles)
    tile_rows = sorted({int(r) for rows in panels.values() for r in rows})
    # every file the report reads, opened once: the montages' frames and the sized ones
    # (European XFEL runs as detect read them: the geometry and photon conversion the hit list records)
    checked = sources_of_keys([hits.keys[r] for r in sorted(set(tile_rows) | {int(r) for r in sample})],
                              recorded_run_options(hits.meta))
    centres = {info.path: info.geometry.centre_px for source in checked for info in source.files}
    sides = {name: _panel_side(hits, rows, centres, o.crop_px) for name, rows in panels.items()}
    step(f"radial profiles of {len(sample)} selected frames")
    if len(sample):
        ctx.sized = estimate_sizes(_of_keys(checked, [hits.keys[r] for r in sample]), settings=o.sizing,
                                   keep_profiles=True)
    step("reading frames for the montages")
    crops = _read_crops(_of_keys(checked, [hits.keys[r] for r in tile_rows]), max(sides.values()))
    summary = _summary(hits_path, ctx, o)
    with staged_dir(out_dir, force) as stage:
        step("drawing figures")
        drawn = _draw_figures(stage, ctx, o)
        drawn["montages"] = _draw_montages(stage, ctx, panels, crops, sides, o)
        (stage / "report.json").write_text(json.dumps(json_ready(summary), indent=2, allow_nan=False) + "\n")
        (stage / "index.html").write_text(render_page(page_context(hits_path, summary, drawn, o, stage)),
                                          encoding="utf-8")
    return summary


def _context(hits: HitList, flags: np.ndarray, o: ReportOptions) -> _Context:
    """The hit list with its truth, evaluation and size table (the fits come later)."""
    truth = labels = evaluation = None
    if o.truth_dataset or o.truth_csv:
        truth = load_truth(hits, dataset=o.truth_dataset, csv_path=o.truth_csv, common_only=o.common_only)
        labels = np.full(len(hits), -1, dtype=np.int8)
        labels[truth.index] = truth.labels
        evaluation = evaluate(truth.hits.scores, truth.labels, hits.threshold,
                              target_recall=o.target_recall, selected=flags[truth.index],
                              unusable=truth.hits.unusable)
        evaluation.update(breakdowns(truth, flags[truth.index], by=o.by, truth_csv=o.truth_csv,
                                     photons_dataset=o.photons_dataset, photon_edges=o.photon_edges))
    table_sizes = _table_sizes(o.sizes_csv, hits, flags) if o.sizes_csv else {}
    return _Context(hits, flags, labels, truth, evaluation, table_sizes, [],
                    {_abs_key(k): i for i, k in enumerate(hits.keys)})


# -- inputs ------------------------------------------------------------------------------------

def _table_sizes(path: str, hits: HitList, flags: np.ndarray) -> dict[int, float]:
    table = {(r.file, r.index): r.diameter_nm for r in read_sizes(path)}
    index = np.flatnonzero(flags)
    found, _ = match_keys([(hits.keys[i].file, hits.keys[i].index) for i in index], table)
    out = {int(i): d for i, d in zip(index, found) if d is not None}
    if flags.any() and not out:
        raise InputError(f"the size table {path} holds none of the hit list's selected frames; "
                         "make it with 'spidarknet size ... --hits' on the same hit list")
    return out


_PANEL_TITLES = {
    "top": ("Top hits", "The selected frames with the highest scores."),
    "borderline": ("Borderline frames", "The frames scoring closest to the threshold, above and below it."),
    "negatives": ("Top-scoring negatives", "Frames the truth calls negative, highest scores first "
                  "(false positives when above the threshold)."),
    "missed": ("Lowest-scoring positives", "Frames the truth calls positive, lowest scores first "
               "(missed when below the threshold)."),
}


def _choose_tiles(hits: HitList, flags: np.ndarray, labels: np.ndarray | None, n: int) -> dict[str, np.ndarray]:
    scores = hits.scores.astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    panels = {"top": np.array([i for i in order if flags[i]][:n], dtype=int)}
    distance = np.abs(scores - hits.threshold) if math.isfinite(hits.threshold) else -scores
    near = np.argsort(distance, kind="stable")[:n]
    panels["borderline"] = near[np.argsort(-scores[near], kind="stable")]
    if labels is not None:
        panels["negatives"] = np.array([i for i in order if labels[i] == 0][:n], dtype=int)
        panels["missed"] = np.array([i for i in order[::-1] if labels[i] == 1][:n], dtype=int)
    return panels


def _panel_side(hits: HitList, rows: np.ndarray, centres: dict, crop_px: int) -> int:
    """Side of the square shown for a montage: ``crop_px``, or larger (up to twice) so
    that the detection boxes of its frames fit, a multiple of 16."""
    side = crop_px
    for row in rows:
        box = hits.boxes[row]
        if not (np.all(np.isfinite(box)) and box[2] > 0 and box[3] > 0):
            continue
        cx, cy = centres[os.path.abspath(hits.keys[row].file)]
        reach = max(abs(box[0] - cx), abs(box[0] + box[2] - cx), abs(box[1] - cy), abs(box[1] + box[3] - cy))
        side = max(side, int(math.ceil(2 * reach)) + 8)
    return int(min(math.ceil(side / 16) * 16, 2 * crop_px))


def _of_keys(sources: list[FrameSource], keys: list[FrameKey]) -> list[FrameSource]:
    """The sources cut down to the frames ``keys`` name (those left without a frame dropped)."""
    return [s for s in (source.select_keys(keys) for source in sources) if len(s)]


def _read_crops(sources: list[FrameSource], crop_px: int) -> dict[tuple[str, int], tuple]:
    """(photons, usable, origin (row, col), centre) of a ``crop_px`` square around each
    file's beam centre (smaller where it meets the frame's edge), for the frames of ``sources``."""
    half = crop_px // 2

    def region(info):
        cx, cy = info.geometry.centre_px
        r0, c0 = int(round(cy)) - half, int(round(cx)) - half
        return r0, r0 + crop_px, c0, c0 + crop_px

    crops = {}
    for source in sources:
        for chunk in source.chunks(16, roi=region):
            for i, key in enumerate(chunk.keys):
                valid = chunk.valid if chunk.valid.ndim == 2 else chunk.valid[i]
                crops[_abs_key(key)] = (np.asarray(chunk.data[i], dtype=np.float32), valid, chunk.origin,
                                        chunk.info.geometry.centre_px)
    return crops


# -- figures -----------------------------------------------------------------------------------

_PR_CAPTION = ("Precision-recall curve over all thresholds, with the hit list's threshold and the two "
               "suggested ones marked; grey lines are constant F1.")
_ROC_CAPTION = "ROC curve: true-positive rate against false-positive rate."


def _draw_figures(stage: Path, ctx: _Context, o: ReportOptions) -> dict:
    """Every plot of the report into ``stage`` (PNG and SVG); returns what the page shows:
    ``sections`` of (PNG name, caption) and whether the profile map and the size
    histogram were drawn."""
    ev, hits = ctx.evaluation, ctx.hits
    sections = []
    if ev is not None:
        label = _selection_label(hits.meta, hits.threshold)
        plot.save(plot.pr_curve(ev, label, _num), stage, "pr_curve.png")
        plot.save(plot.roc_curve(ev, label, _num), stage, "roc_curve.png")
        sections.append(("Precision and recall", [("pr_curve.png", _PR_CAPTION), ("roc_curve.png", _ROC_CAPTION)]))
    for name, section in (ev or {}).get("by", {}).items():
        plot.save(plot.by_category(name, section), stage, _by_file(name))
    plot.save(_score_figure(ctx), stage, "scores.png")
    sections.append(("Scores", [("scores.png", "Histogram of the frames' scores"
                                 + (" by truth class" if ctx.labels is not None else "")
                                 + "; solid line: the hit list's threshold"
                                 + ("; dashed: the max-F1 threshold (one line when they coincide)."
                                    if ctx.evaluation is not None else "."))]))
    profiles = _profile_map(ctx, o)
    if profiles is not None:
        plot.save(profiles, stage, "profiles.png")
    sizes = _size_figure(ctx)
    if sizes is not None:
        plot.save(sizes, stage, "sizes.png")
    return {"sections": sections, "profile_map": profiles is not None, "size_histogram": sizes is not None}


def _selection_label(ctx_meta: dict, threshold: float) -> str:
    window = ctx_meta.get("size_range_nm")
    if isinstance(window, list) and len(window) == 2:
        return f"hit list: {_num(threshold)} + {window[0]:g}-{window[1]:g} nm"
    return f"hit list: {_num(threshold)}"


def _by_file(name: str) -> str:
    """The chart's file name for ``--by NAME``: by_truth_kind.png for /truth/kind."""
    return "by_" + (re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "category") + ".png"


def _score_figure(ctx: _Context):
    """Score histograms (by truth class with truth) with the threshold and the max-F1 threshold."""
    scores = ctx.hits.scores.astype(np.float64)
    finite = scores[np.isfinite(scores)]
    lo = min(0.0, float(finite.min())) if len(finite) else 0.0
    hi = max(1.0, float(finite.max())) if len(finite) else 1.0
    edges = np.linspace(lo, hi, 41)
    if ctx.labels is not None:
        groups = [("negative (truth)", scores[ctx.labels == 0], plot.BLUE),
                  ("positive (truth)", scores[ctx.labels == 1], plot.ORANGE)]
    else:
        groups = [("all frames", finite, plot.BLUE)]
    series = []
    for label, values, colour in groups:
        counts = np.histogram(values, bins=edges)[0]
        series.append((f"{label}: {int(counts.sum())}", counts, colour))
    best = ctx.evaluation["suggested_thresholds"]["max_f1"]["threshold"] if ctx.evaluation is not None else None
    return plot.score_histogram(edges, series, _threshold_lines(ctx.hits.threshold, best, edges[1] - edges[0]))


def _threshold_lines(threshold: float, max_f1: float | None, bin_width: float) -> list[tuple]:
    """The score histogram's vertical lines (score, colour, label, line style): the hit list's
    threshold (solid) and the max-F1 threshold (dashed); one line naming both where they lie
    within half a bin of each other, so that neither hides the other."""
    lines = []
    if math.isfinite(threshold):
        lines.append((threshold, plot.DARK, f"threshold {_num(threshold)}", "-"))
    if max_f1 is None or not math.isfinite(max_f1):
        return lines
    if lines and abs(max_f1 - threshold) < 0.5 * bin_width:
        lines[0] = (threshold, plot.DARK, f"threshold {_num(threshold)} = max F1 {_num(max_f1)}", "-")
    else:
        lines.append((max_f1, plot.GREEN, f"max F1 {_num(max_f1)}", "--"))
    return lines


def _tile(crop: tuple, box: np.ndarray, side: int, o: ReportOptions) -> np.ndarray:
    """A montage tile: the ``side`` square around the beam centre, log scale, mask grey,
    the detection box drawn."""
    import cv2
    photons, valid, origin, (cx, cy) = crop
    r0 = max(int(round(cy)) - side // 2 - origin[0], 0)
    c0 = max(int(round(cx)) - side // 2 - origin[1], 0)
    photons, valid = photons[r0:r0 + side, c0:c0 + side], valid[r0:r0 + side, c0:c0 + side]
    origin = (origin[0] + r0, origin[1] + c0)
    image = np.log10(1.0 + np.clip(np.nan_to_num(photons), 0, None))
    shown = image[valid] if np.any(valid) else image.ravel()
    top = max(float(np.percentile(shown, 99.8)) if shown.size else 1.0, math.log10(2.0))
    scaled = np.clip(image / top, 0.0, 1.0)
    scaled = np.where(valid, scaled, 0.0)
    size = (o.tile_px, o.tile_px)
    small = cv2.resize(scaled.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    masked = cv2.resize(valid.astype(np.float32), size, interpolation=cv2.INTER_AREA) < 0.5
    rgb = plot.colormap(small, "inferno")
    rgb[masked] = MASKED_RGB
    picture = Image.fromarray(rgb, "RGB")
    if np.all(np.isfinite(box)) and box[2] > 0 and box[3] > 0:
        scale_x = o.tile_px / photons.shape[1]
        scale_y = o.tile_px / photons.shape[0]
        x0 = (box[0] - origin[1]) * scale_x
        y0 = (box[1] - origin[0]) * scale_y
        ImageDraw.Draw(picture).rectangle([x0, y0, x0 + box[2] * scale_x, y0 + box[3] * scale_y],
                                          outline=BOX_COLOUR, width=2)
    return np.asarray(picture)


def _montage(ctx: _Context, rows: np.ndarray, crops: dict, side: int, o: ReportOptions) -> Image.Image:
    sized = {_abs_key(r.key): r.diameter_nm for r in ctx.sized}
    tiles, captions = [], []
    for row in rows:
        key = ctx.hits.keys[row]
        crop = crops[_abs_key(key)]
        tiles.append(_tile(crop, ctx.hits.boxes[row], side, o))
        line2 = f"score {ctx.hits.scores[row]:.3f}" + (" · hit" if ctx.flags[row] else "")
        if ctx.labels is not None and ctx.labels[row] >= 0:
            line2 += f" · truth {int(ctx.labels[row])}"
        diameter = ctx.table_sizes.get(int(row), sized.get(_abs_key(key), float("nan")))
        line3 = f"{diameter:.1f} nm" if math.isfinite(diameter) else ""
        captions.append([f"{os.path.basename(key.file)} #{key.index}", line2, line3])
    return plot.montage(tiles, captions, columns=6)


def _diameters(ctx: _Context) -> list[tuple[float, SizeResult | None]]:
    """(diameter, sized result or None) of the selected frames: the --sizes table's values
    when given, else the fits made here."""
    if ctx.table_sizes:
        by_row = {ctx.row_of[_abs_key(r.key)]: r for r in ctx.sized}
        return [(d, by_row.get(row)) for row, d in ctx.table_sizes.items() if math.isfinite(d)]
    return [(r.diameter_nm, r) for r in ctx.sized if r.ok]


def _draw_montages(stage: Path, ctx: _Context, panels: dict, crops: dict, sides: dict,
                   o: ReportOptions) -> list[dict]:
    """The montages into ``stage``; per panel its title, PNG name (None when the panel is
    empty) and note."""
    montages = []
    for name, (title, note) in _PANEL_TITLES.items():
        rows = panels.get(name)
        if rows is None:
            continue
        if len(rows) == 0:
            montages.append({"title": title, "png": None, "note": "No frame of this kind."})
            continue
        _montage(ctx, rows, crops, sides[name], o).save(stage / f"montage_{name}.png", optimize=True)
        note += " " + _tile_size_note(sides[name], o.crop_px)
        montages.append({"title": title, "png": f"montage_{name}.png", "note": note})
    return montages


def _tile_size_note(side: int, crop_px: int) -> str:
    """What a montage's tiles show: ``side`` pixels square, said once, beside the panel (a
    panel whose detection boxes reach farther than ``crop_px`` shows more)."""
    if side == crop_px:
        return f"Tiles: {side} × {side} pixels."
    return f"Tiles: {side} × {side} pixels (more than the {crop_px} asked for, so that the boxes fit)."


def _profile_map(ctx: _Context, o: ReportOptions):
    """Rows: selected frames sorted by diameter; columns: q; colour: log10 of the
    background-subtracted profile times q⁴, normalised per row (so the fringes of all
    frames show at every q despite the steep fall-off and the shot-to-shot fluence)."""
    rows = [(d, r) for d, r in _diameters(ctx) if r is not None and r.profile is not None]
    if not rows:
        return None
    rows.sort(key=lambda item: item[0])
    s = o.sizing
    q_grid = np.linspace(0.0, s.q_max_inv_nm, 200)            # nm⁻¹, column centres
    image = np.full((len(rows), len(q_grid)), np.nan)
    for k, (_, r) in enumerate(rows):
        p = r.profile
        full_ring = 2.0 * math.pi * (np.arange(len(p.n_pixels)) + 0.5) * p.bin_px ** 2
        good = p.n_pixels >= np.maximum(s.min_ring_fraction * full_ring, 3)
        if good.sum() < 2:
            continue
        q = r.q_inv_m[good] * 1e-9
        signal = p.mean[good] - (r.background_photons_per_pixel if math.isfinite(
            r.background_photons_per_pixel) else 0.0)
        inside = (q_grid >= q.min()) & (q_grid <= q.max())
        values = np.interp(q_grid, q, signal) * q_grid ** 4
        scale = np.nanmedian(np.where(values[inside] > 0, values[inside], np.nan))
        if math.isfinite(scale) and scale > 0:
            image[k, inside] = values[inside] / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(np.where(image > 0, image, np.nan))
    finite = logs[np.isfinite(logs)]
    if not finite.size:
        return None
    vmin, vmax = np.percentile(finite, [5.0, 99.5])
    vmax = vmax if vmax > vmin else vmin + 1.0
    shown = np.where(np.isfinite(image), np.where(np.isfinite(logs), logs, vmin), np.nan)
    return plot.profile_map(shown, s.q_max_inv_nm, np.array([item[0] for item in rows]),
                            (SPHERE_FIRST_ZERO_X, SPHERE_SECOND_ZERO_X), float(vmin), float(vmax))


def _size_figure(ctx: _Context):
    """The histogram of the selected frames' diameters, in bins of 0.25-20 nm (at most 30
    across the diameters and the size window)."""
    d = np.array([item[0] for item in _diameters(ctx)], dtype=np.float64)
    if not d.size:
        return None
    window = ctx.hits.meta.get("size_range_nm")
    window = (float(window[0]), float(window[1])) if isinstance(window, list) and len(window) == 2 else None
    low, high = float(d.min()), float(d.max())
    if window is not None:
        low, high = min(low, window[0]), max(high, window[1])
    span = max(high - low, 1.0)
    width = next((w for w in (0.25, 0.5, 1.0, 2.0, 5.0, 10.0) if span / w <= 30), 20.0)
    lo = math.floor(low / width) * width - 2 * width
    hi = math.ceil(high / width) * width + 2 * width
    return plot.size_histogram(d, np.arange(lo, hi + 0.5 * width, width), window)


# -- summary and page --------------------------------------------------------------------------

def _num(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def _summary(hits_path: str, ctx: _Context, o: ReportOptions) -> dict:
    hits = ctx.hits
    out = {"hits": os.path.abspath(hits_path), "frames": len(hits), "selected": int(ctx.flags.sum()),
           "no_valid_pixel_frames": hits.n_unusable,
           "threshold": hits.threshold,
           "files": sorted({os.path.abspath(k.file) for k in hits.keys}),
           "backend": hits.meta.get("backend"), "weights": hits.meta.get("weights"),
           "size_range_nm": hits.meta.get("size_range_nm")}
    if ctx.evaluation is not None:
        ev = {k: v for k, v in ctx.evaluation.items() if k not in ("pr_curve", "roc_curve")}
        out["truth"] = {"source": ctx.truth.source, "frames_without_truth": ctx.truth.dropped,
                        "truth_frames_not_scored": ctx.truth.unscored, **ev}
    reasons: dict[str, int] = {}
    if ctx.table_sizes:      # the table's verdicts on the selected frames it holds
        n_sized = len(ctx.table_sizes)
        n_fitted = sum(1 for d in ctx.table_sizes.values() if math.isfinite(d))
    else:
        n_sized = len(ctx.sized)
        n_fitted = sum(1 for r in ctx.sized if r.ok)
        for r in ctx.sized:
            if not r.ok:
                kind = r.reason.split(":")[0]
                reasons[kind] = reasons.get(kind, 0) + 1
    diameters = [d for d, _ in _diameters(ctx)]
    out["sizes"] = {"source": o.sizes_csv or "fitted for the report", "profiles_computed": len(ctx.sized),
                    "sized": n_sized, "fitted": n_fitted, "failed": n_sized - n_fitted,
                    "failure_reasons": reasons,
                    "median_diameter_nm": float(np.median(diameters)) if diameters else None,
                    "diameter_p10_p90_nm": ([float(np.percentile(diameters, 10)),
                                             float(np.percentile(diameters, 90))] if diameters else None)}
    return out




_BY_CAPTION = ("Bars: the share of each category's frames that the hit list selected (blue: a category "
               "holding positives; red: one without, so every frame selected from it is a false "
               "positive); green diamonds: recall of the category's positives; numbers: selected / frames.")
_MAP_CAPTION = ("One row per selected frame, sorted by fitted diameter: the azimuthal average around the "
                "refined beam centre, less the fitted flat background, times q^4 (which flattens the "
                "fall-off so that fringes show at every q), normalised per row, on a log colour scale; "
                "grey: no usable pixels (beam stop). White dots: the first and second minima of a sphere "
                "of the fitted diameter. q = 4π sin(θ)/λ with 2θ = atan(r/D).")
_SIZES_CAPTION = "Diameters of the best-fitting uniform spheres (Poisson fit of the radial profile)."


@functools.lru_cache(maxsize=1)
def _templates():
    import jinja2
    return jinja2.Environment(loader=jinja2.PackageLoader("spidarknet", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def render_page(context: dict) -> str:
    """``index.html``: the template ``templates/report.html`` filled with :func:`page_context`."""
    return _templates().get_template("report.html").render(context)


def page_context(hits_path: str, summary: dict, drawn: dict, o: ReportOptions, stage: Path) -> dict:
    """What the page shows, as plain values: the summary tables, the figures of ``drawn``
    (as :func:`_draw_figures` and :func:`_draw_montages` return them) with their sizes, the
    per-category and photon-count tables."""
    truth = summary.get("truth") or {}
    montages = [{**m, "figure": _figure(stage, m["png"], m["title"], m["note"]) if m["png"] else None}
                for m in drawn["montages"]]
    return {
        "title": os.path.basename(hits_path), "hits": summary["hits"], "version": __version__,
        "made": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "summary_tables": _summary_tables(summary),
        "sections": [{"title": title, "figures": [_figure(stage, name, caption, caption) for name, caption in images]}
                     for title, images in drawn["sections"]],
        "by": [_by_context(name, section, stage) for name, section in truth.get("by", {}).items()],
        "photons": _photons_context(truth["photon_bins"]) if truth.get("photon_bins") else None,
        "tile_note": ("Each tile: a square around the beam centre (its side in pixels under each panel), "
                      "log10(1 + photons), each tile scaled to its own range; grey = masked pixels; "
                      "cyan box = the detection (x, y, w, h from the hit list)."),
        "montages": montages,
        "profile_map": (_figure(stage, "profiles.png", "radial profile map", _MAP_CAPTION)
                        if drawn["profile_map"] else None),
        "size_histogram": (_figure(stage, "sizes.png", "size histogram", _SIZES_CAPTION)
                           if drawn["size_histogram"] else None),
    }


def _figure(stage: Path, name: str, alt: str, caption: str) -> dict:
    """A figure of the page: its PNG with the PNG's size (so that the page does not jump
    while it loads) and the SVG beside it, if any."""
    with Image.open(stage / name) as im:
        width, height = im.size
    svg = Path(name).with_suffix(".svg").name
    return {"src": name, "width": width, "height": height, "alt": alt, "caption": caption,
            "svg": svg if (stage / svg).is_file() else None}


def _summary_tables(summary: dict) -> list[list[tuple[str, str]]]:
    """The summary's tables of (name, value): the run, the truth (when there is one), the sizes."""
    share = 100.0 * summary["selected"] / summary["frames"]
    run = [("frames scored", str(summary["frames"])),
           ("selected (hit = 1)", f"{summary['selected']} ({share:.1f} %)"),
           ("threshold", _num(summary["threshold"]))]
    if summary.get("size_range_nm"):
        lo, hi = summary["size_range_nm"]
        run.append(("size window", f"{lo:g}-{hi:g} nm"))
    if summary.get("backend"):
        run.append(("backend", str(summary["backend"])))
    if summary.get("weights"):
        run.append(("weights", os.path.basename(str(summary["weights"]))))
    files = summary["files"]
    run.append(("frame files", ", ".join(os.path.basename(f) for f in files[:6])
                + (f" and {len(files) - 6} more" if len(files) > 6 else "")))
    s = summary["sizes"]
    sizes = [("sizes from", s["source"]), ("radial profiles computed", str(s["profiles_computed"])),
             ("fitted / failed", f"{s['fitted']} / {s['failed']}")]
    sizes += [(f"failed: {k}", str(v)) for k, v in s["failure_reasons"].items()]
    if s["median_diameter_nm"] is not None:
        p10, p90 = s["diameter_p10_p90_nm"]
        sizes.append(("median diameter", f"{s['median_diameter_nm']:.1f} nm (80 % within {p10:.1f}-{p90:.1f} nm)"))
    truth = _truth_rows(summary["truth"]) if summary.get("truth") else []
    return [run] + ([truth] if truth else []) + [sizes]


def _truth_rows(t: dict) -> list[tuple[str, str]]:
    """The evaluation against the truth: counts, P/R/F1, AUC, AP and the suggested thresholds."""
    at = t["at_threshold"]
    rows = [("truth", t["source"]), ("positives / negatives", f"{t['positives']} / {t['negatives']}"),
            ("precision", _num(at["precision"])), ("recall", _num(at["recall"])),
            ("F1", _num(at["f1"])), ("accuracy", _num(at["accuracy"])),
            ("TP / FP / TN / FN", f"{at['tp']} / {at['fp']} / {at['tn']} / {at['fn']}"),
            ("ROC AUC", _num(t["roc_auc"])), ("average precision", _num(t["average_precision"]))]
    for name, point in t["suggested_thresholds"].items():
        label = "max-F1 threshold" if name == "max_f1" else (
            f"threshold for recall ≥ {point.get('target_recall', 0):g}" if name == "high_recall" else name)
        rows.append((label, f"{_num(point['threshold'])}: P {_num(point['precision'])}, "
                            f"R {_num(point['recall'])}, F1 {_num(point['f1'])}"))
    if t["frames_without_truth"] or t["truth_frames_not_scored"]:
        rows.append(("left out (--common-only)", f"{t['frames_without_truth']} without truth, "
                                                f"{t['truth_frames_not_scored']} not scored"))
    return rows


def _by_context(name: str, section: dict, stage: Path) -> dict:
    """One ``--by`` section: its table (a row per category and one for all) and its chart."""
    rows = [[r["category"], str(r["frames"]), str(r["selected"]), f"{100 * r['selected_share']:.1f} %",
             str(r["positives"]), _num(r["recall"])] for r in section["categories"]]
    recall = (sum(r["selected_positives"] for r in section["categories"]) / section["positives"]
              if section["positives"] else float("nan"))
    rows.append(["all", str(section["frames"]), str(section["selected"]),
                 f"{100 * section['selected'] / max(section['frames'], 1):.1f} %", str(section["positives"]),
                 _num(recall)])
    return {"name": name, "source": section["source"],
            "table": {"css": "by", "header": ["category", "frames", "selected", "share", "positives", "recall"],
                      "rows": rows},
            "figure": _figure(stage, _by_file(name), f"selected share by {name}", _BY_CAPTION)}


def _photons_context(photons: dict) -> dict:
    """The photon-count section: where the counts come from and a row per bin."""
    rows = [[b["photons"], str(b["frames"]), str(b["positives"]), str(b["selected"]), str(b["tp"]),
             str(b["fp"]), str(b["fn"]), _num(b["precision"]), _num(b["recall"]), _num(b["f1"])]
            for b in photons["bins"]]
    return {"source": photons["source"],
            "table": {"css": "photons", "rows": rows,
                      "header": ["photons", "frames", "positives", "selected", "TP", "FP", "FN", "precision",
                                 "recall", "F1"]}}
