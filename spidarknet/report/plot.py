"""Small, clean figures drawn with Pillow: axes with ticks and labels, lines, markers,
histogram bars, colour maps with a colour bar, and image montages.

Everything is drawn at ``SUPERSAMPLE`` times the final size and reduced with a Lanczos
filter, which gives smooth lines and text without an anti-aliasing library.  Data are
clipped to the plot area.  Colours follow the usual ten-colour palette of scientific
plotting.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SUPERSAMPLE = 2
BLUE, ORANGE, GREEN, RED, PURPLE = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"
GREY, DARK, GRID = "#7f7f7f", "#222222", "#e6e6e6"

_FONTS: dict[int, ImageFont.ImageFont] = {}


def font(size_px: int) -> ImageFont.ImageFont:
    """A scalable sans-serif font of ``size_px`` pixels (Pillow's own; DejaVu as fallback)."""
    if size_px not in _FONTS:
        try:
            _FONTS[size_px] = ImageFont.load_default(size=size_px)  # Pillow ≥ 10.1
        except (TypeError, OSError, ImportError):
            try:
                _FONTS[size_px] = ImageFont.truetype("DejaVuSans.ttf", size_px)
            except OSError:
                _FONTS[size_px] = ImageFont.load_default()
    return _FONTS[size_px]


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2, 5 × 10^k steps) covering [lo, hi] with about ``count`` ticks."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    candidates = [m * p for p in (power / 10, power, power * 10) for m in (1, 2, 2.5, 5)]

    def n_ticks(step: float) -> int:
        return math.floor(hi / step + 1e-9) - math.ceil(lo / step - 1e-9) + 1

    # the step whose tick count comes closest to ``count`` (the larger step on ties)
    step = min(candidates, key=lambda c: (abs(n_ticks(c) - count), -c))
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + 1e-9 * step:
        ticks.append(0.0 if abs(value) < 1e-12 * step else value)
        value += step
    return ticks


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """``value`` with as many decimals as the tick step needs (0.25 → 2, 0.5 → 1, 5 → 0)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * max(step, 1e-300):
        decimals += 1
    return f"{value:.{decimals}f}"


def colormap(values: np.ndarray, name: str = "viridis") -> np.ndarray:
    """uint8 RGB of ``values`` in [0, 1] (NaN → light grey) through an OpenCV colour map."""
    import cv2
    maps = {"viridis": cv2.COLORMAP_VIRIDIS, "inferno": cv2.COLORMAP_INFERNO,
            "magma": cv2.COLORMAP_MAGMA}
    v = np.asarray(values, dtype=np.float64)
    nan = ~np.isfinite(v)
    index = (np.clip(np.nan_to_num(v), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    rgb = cv2.applyColorMap(index, maps[name])[..., ::-1].copy()
    rgb[nan] = (225, 225, 225)
    return rgb


def _dashed(draw: ImageDraw.ImageDraw, p0, p1, fill, width: int, dash: int) -> None:
    (x0, y0), (x1, y1) = p0, p1
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0:
        return
    steps = int(length // dash)
    for k in range(0, steps + 1, 2):
        a, b = k * dash / length, min((k + 1) * dash / length, 1.0)
        draw.line([(x0 + a * (x1 - x0), y0 + a * (y1 - y0)), (x0 + b * (x1 - x0), y0 + b * (y1 - y0))],
                  fill=fill, width=width)


class Axes:
    """One plot panel.  Data go onto a layer that is clipped to the plot area; the frame,
    ticks, labels, legend and colour bar are drawn around it by :meth:`image`."""

    def __init__(self, width: int = 560, height: int = 380, *, title: str = "", xlabel: str = "",
                 ylabel: str = "", xlim=(0.0, 1.0), ylim=(0.0, 1.0), ylog: bool = False,
                 margins=(72, 24, 34, 52), yticks: Sequence[tuple[float, str]] | None = None,
                 xticks: Sequence[tuple[float, str]] | None = None,
                 legend_at: str = "upper right", integer_y: bool = False):
        s = SUPERSAMPLE
        self.size = (width * s, height * s)
        self.left, self.right, self.top, self.bottom = (m * s for m in margins)
        self.box = (self.left, self.top, self.size[0] - self.right, self.size[1] - self.bottom)
        self.canvas = Image.new("RGB", self.size, "white")
        self.layer = Image.new("RGB", self.size, "white")
        self.draw = ImageDraw.Draw(self.layer, "RGBA")
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.ylog = ylog
        self.xlim = tuple(float(v) for v in xlim)
        self.ylim = tuple(float(v) for v in ylim)
        if ylog and self.ylim[0] <= 0:
            raise ValueError("a log axis needs positive limits")
        self.custom_yticks = yticks
        self.custom_xticks = xticks
        self.legend_items: list[tuple[str, str, str]] = []
        self.legend_at = legend_at  # "upper right", "upper left", "lower right" or "lower left"
        self.integer_y = integer_y  # counts: whole-number ticks only
        self.colorbar_spec = None
        self._grid()

    # -- coordinates -----------------------------------------------------------------------
    def _fy(self, v):
        v = np.asarray(v, dtype=np.float64)
        if self.ylog:
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.log10(v)
        return v

    def px(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        x0, y0, x1, y1 = self.box
        lo, hi = self._fy(self.ylim[0]), self._fy(self.ylim[1])
        xs = x0 + (np.asarray(x, dtype=np.float64) - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (x1 - x0)
        ys = y1 - (self._fy(y) - lo) / (hi - lo) * (y1 - y0)
        return xs, ys

    def _xticks(self) -> list[tuple[float, str]]:
        if self.custom_xticks is not None:
            return list(self.custom_xticks)
        ticks = nice_ticks(*self.xlim, count=max(4, (self.box[2] - self.box[0]) // (60 * SUPERSAMPLE)))
        return [(t, tick_label(t, ticks)) for t in ticks]

    def _yticks(self) -> list[tuple[float, str]]:
        if self.custom_yticks is not None:
            return list(self.custom_yticks)
        if self.ylog:
            lo, hi = math.floor(math.log10(self.ylim[0])), math.ceil(math.log10(self.ylim[1]))
            values = [10.0 ** k for k in range(lo, hi + 1) if self.ylim[0] <= 10.0 ** k <= self.ylim[1]]
            return [(v, f"{v:g}" if 1e-3 <= v < 1e5 else f"1e{int(math.log10(v))}") for v in values]
        ticks = nice_ticks(*self.ylim, count=max(5, (self.box[3] - self.box[1]) // (45 * SUPERSAMPLE)))
        if self.integer_y and len(ticks) > 1 and ticks[1] - ticks[0] < 1:
            ticks = [float(v) for v in range(math.ceil(self.ylim[0]), math.floor(self.ylim[1]) + 1)]
        return [(t, tick_label(t, ticks)) for t in ticks]

    def _grid(self) -> None:
        x0, y0, x1, y1 = self.box
        for t, _ in self._xticks():
            x, _ = self.px(t, self.ylim[0])
            self.draw.line([(float(x), y0), (float(x), y1)], fill=GRID, width=SUPERSAMPLE)
        for t, _ in self._yticks():
            _, y = self.px(self.xlim[0], t)
            self.draw.line([(x0, float(y)), (x1, float(y))], fill=GRID, width=SUPERSAMPLE)

    # -- data ------------------------------------------------------------------------------
    def line(self, x, y, color: str = BLUE, width: float = 2.0, label: str | None = None,
             dash: bool = False) -> None:
        xs, ys = self.px(x, y)
        good = np.isfinite(xs) & np.isfinite(ys)
        points = list(zip(xs[good].tolist(), ys[good].tolist()))
        w = max(1, int(round(width * SUPERSAMPLE)))
        if dash:
            for p0, p1 in zip(points[:-1], points[1:]):
                _dashed(self.draw, p0, p1, color, w, 6 * SUPERSAMPLE)
        elif len(points) > 1:
            self.draw.line(points, fill=color, width=w, joint="curve")
        if label:
            self.legend_items.append((label, color, "line"))

    def markers(self, x, y, color: str = RED, marker: str = "o", size: float = 5.0,
                label: str | None = None) -> None:
        xs, ys = self.px(np.atleast_1d(x), np.atleast_1d(y))
        r = size * SUPERSAMPLE
        for cx, cy in zip(xs, ys):
            if not (math.isfinite(cx) and math.isfinite(cy)):
                continue
            _marker(self.draw, marker, cx, cy, r, color)
        if label:
            self.legend_items.append((label, color, marker))

    def bars(self, edges, heights, color: str = BLUE, alpha: float = 0.55, label: str | None = None) -> None:
        edges = np.asarray(edges, dtype=np.float64)
        heights = np.asarray(heights, dtype=np.float64)
        base = self.ylim[0]
        rgba = _rgba(color, alpha)
        for left, right, h in zip(edges[:-1], edges[1:], heights):
            if not h > base:
                continue
            (xa, xb), (ya, yb) = self.px([left, right], [h, base])
            self.draw.rectangle([float(xa), float(ya), float(xb), float(yb)], fill=rgba,
                                outline=color, width=SUPERSAMPLE)
        if label:
            self.legend_items.append((label, color, "bar"))

    def hbars(self, y, widths, color: str = BLUE, alpha: float = 0.55, height: float = 0.7,
              label: str | None = None) -> None:
        """Horizontal bars from the left end of the x range to ``widths``, centred at ``y``,
        ``height`` high (in y units)."""
        rgba = _rgba(color, alpha)
        for centre, width in zip(np.atleast_1d(y), np.atleast_1d(widths)):
            if not (math.isfinite(width) and width > self.xlim[0]):
                continue
            (xa, xb), (ya, yb) = self.px([self.xlim[0], width], [centre + height / 2, centre - height / 2])
            self.draw.rectangle([float(xa), float(ya), float(xb), float(yb)], fill=rgba,
                                outline=color, width=SUPERSAMPLE)
        if label:
            self.legend_items.append((label, color, "bar"))

    def text(self, x: float, y: float, text: str, color: str = DARK, size_px: int = 11,
             anchor: str = "lm", offset_px: float = 4.0) -> None:
        """``text`` at data point (x, y), moved ``offset_px`` to the right (Pillow anchors)."""
        xs, ys = self.px(x, y)
        if math.isfinite(float(xs)) and math.isfinite(float(ys)):
            self.draw.text((float(xs) + offset_px * SUPERSAMPLE, float(ys)), text, fill=color,
                           font=font(size_px * SUPERSAMPLE), anchor=anchor)

    def vline(self, x: float, color: str = DARK, label: str | None = None, dash: bool = True,
              width: float = 1.5) -> None:
        xs, _ = self.px(x, self.ylim[0])
        y0, y1 = self.box[1], self.box[3]
        w = max(1, int(round(width * SUPERSAMPLE)))
        if dash:
            _dashed(self.draw, (float(xs), y0), (float(xs), y1), color, w, 7 * SUPERSAMPLE)
        else:
            self.draw.line([(float(xs), y0), (float(xs), y1)], fill=color, width=w)
        if label:
            self.legend_items.append((label, color, "dash" if dash else "line"))

    def band(self, x0: float, x1: float, color: str = GREEN, alpha: float = 0.12,
             label: str | None = None) -> None:
        (xa, xb), _ = self.px([x0, x1], [self.ylim[0]] * 2)
        self.draw.rectangle([float(xa), self.box[1], float(xb), self.box[3]], fill=_rgba(color, alpha))
        if label:
            self.legend_items.append((label, color, "band"))

    def raster(self, rgb: np.ndarray) -> None:
        """Fill the plot area with an image (rows top to bottom), nearest-neighbour scaled."""
        x0, y0, x1, y1 = (int(v) for v in self.box)
        picture = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
        self.layer.paste(picture.resize((x1 - x0, y1 - y0), Image.NEAREST), (x0, y0))

    def colorbar(self, vmin: float, vmax: float, label: str, cmap: str = "viridis") -> None:
        self.colorbar_spec = (vmin, vmax, label, cmap)

    def legend(self, *items: tuple[str, str, str]) -> None:
        self.legend_items.extend(items)

    # -- output ----------------------------------------------------------------------------
    def image(self) -> Image.Image:
        s = SUPERSAMPLE
        x0, y0, x1, y1 = (int(v) for v in self.box)
        canvas = self.canvas.copy()
        canvas.paste(self.layer.crop((x0, y0, x1, y1)), (x0, y0))
        draw = ImageDraw.Draw(canvas, "RGBA")
        small, normal = font(12 * s), font(13 * s)
        draw.rectangle([x0, y0, x1, y1], outline=DARK, width=s)
        for t, text in self._xticks():
            x, _ = self.px(t, self.ylim[0])
            x = float(x)
            draw.line([(x, y1), (x, y1 + 5 * s)], fill=DARK, width=s)
            draw.text((x, y1 + 7 * s), text, fill=DARK, font=small, anchor="mt")
        for t, text in self._yticks():
            _, y = self.px(self.xlim[0], t)
            y = float(y)
            draw.line([(x0 - 5 * s, y), (x0, y)], fill=DARK, width=s)
            draw.text((x0 - 8 * s, y), text, fill=DARK, font=small, anchor="rm")
        if self.xlabel:
            draw.text(((x0 + x1) / 2, self.size[1] - 6 * s), self.xlabel, fill=DARK, font=normal, anchor="md")
        if self.title:
            draw.text((x0, 8 * s), self.title, fill=DARK, font=font(14 * s), anchor="lt")
        if self.ylabel:
            _vertical_text(canvas, self.ylabel, (8 * s, (y0 + y1) // 2), normal)
        if self.colorbar_spec is not None:
            self._draw_colorbar(canvas, draw, small)
        if self.legend_items:
            self._draw_legend(draw, small)
        return canvas.resize((self.size[0] // s, self.size[1] // s), Image.LANCZOS)

    def save(self, path) -> None:
        self.image().save(path, optimize=True)

    def _draw_legend(self, draw: ImageDraw.ImageDraw, f) -> None:
        s = SUPERSAMPLE
        pad, swatch, row = 6 * s, 22 * s, 17 * s
        width = max(draw.textlength(label, font=f) for label, _, _ in self.legend_items) + swatch + 3 * pad
        height = row * len(self.legend_items) + pad
        if "left" in self.legend_at:
            x0 = self.box[0] + 6 * s
            x1 = x0 + width
        else:
            x1 = self.box[2] - 6 * s
            x0 = x1 - width
        y0 = self.box[3] - 6 * s - height if "lower" in self.legend_at else self.box[1] + 6 * s
        draw.rectangle([x0, y0, x1, y0 + height], fill=(255, 255, 255, 225), outline="#bbbbbb", width=s)
        for k, (label, color, kind) in enumerate(self.legend_items):
            cy = y0 + pad + row * k + row / 2 - 2 * s
            sx = x0 + pad
            if kind in ("line", "dash"):
                if kind == "dash":
                    _dashed(draw, (sx, cy), (sx + swatch, cy), color, 2 * s, 5 * s)
                else:
                    draw.line([(sx, cy), (sx + swatch, cy)], fill=color, width=2 * s)
            elif kind in ("bar", "band"):
                draw.rectangle([sx, cy - 5 * s, sx + swatch, cy + 5 * s], fill=_rgba(color, 0.55),
                               outline=color, width=s)
            else:
                _marker(draw, kind, sx + swatch / 2, cy, 5 * s, color)
            draw.text((sx + swatch + pad, cy), label, fill=DARK, font=f, anchor="lm")

    def _draw_colorbar(self, canvas: Image.Image, draw: ImageDraw.ImageDraw, f) -> None:
        s = SUPERSAMPLE
        vmin, vmax, label, cmap = self.colorbar_spec
        x0 = self.box[2] + 14 * s
        x1 = x0 + 14 * s
        y0, y1 = int(self.box[1]), int(self.box[3])
        ramp = colormap(np.linspace(1.0, 0.0, y1 - y0)[:, None].repeat(2, axis=1), cmap)
        canvas.paste(Image.fromarray(ramp, "RGB").resize((int(x1 - x0), y1 - y0)), (int(x0), y0))
        draw.rectangle([x0, y0, x1, y1], outline=DARK, width=s)
        ticks = nice_ticks(vmin, vmax, 5)
        for t in ticks:
            y = y1 - (t - vmin) / (vmax - vmin) * (y1 - y0)
            draw.line([(x1, y), (x1 + 4 * s, y)], fill=DARK, width=s)
            draw.text((x1 + 6 * s, y), tick_label(t, ticks), fill=DARK, font=f, anchor="lm")
        _vertical_text(canvas, label, (int(self.size[0] - 16 * s), (y0 + y1) // 2), f)


def _rgba(color: str, alpha: float) -> tuple[int, int, int, int]:
    from PIL import ImageColor
    r, g, b = ImageColor.getrgb(color)[:3]
    return r, g, b, int(round(alpha * 255))


def _marker(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, color: str) -> None:
    outline = DARK
    if kind == "s":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=color, outline=outline, width=SUPERSAMPLE)
    elif kind == "^":
        draw.polygon([(cx, cy - 1.2 * r), (cx - 1.1 * r, cy + 0.8 * r), (cx + 1.1 * r, cy + 0.8 * r)],
                     fill=color, outline=outline, width=SUPERSAMPLE)
    elif kind == "D":
        draw.polygon([(cx, cy - 1.3 * r), (cx + 1.3 * r, cy), (cx, cy + 1.3 * r), (cx - 1.3 * r, cy)],
                     fill=color, outline=outline, width=SUPERSAMPLE)
    else:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color, outline=outline, width=SUPERSAMPLE)


def _vertical_text(canvas: Image.Image, text: str, centre: tuple[int, int], f) -> None:
    """Text turned 90° anticlockwise, its box centred at ``centre`` (x, y)."""
    probe = ImageDraw.Draw(canvas)
    left, top, right, bottom = probe.textbbox((0, 0), text, font=f)
    w, h = int(right - left) + 4, int(bottom - top) + 4
    patch = Image.new("L", (w, h), 0)
    ImageDraw.Draw(patch).text((2 - left, 2 - top), text, fill=255, font=f)
    patch = patch.rotate(90, expand=True)
    x = int(centre[0] - patch.width / 2)
    y = int(centre[1] - patch.height / 2)
    canvas.paste(Image.new("RGB", patch.size, DARK), (max(x, 0), y), patch)


def montage(tiles: Sequence[np.ndarray], captions: Sequence[Sequence[str]], *, columns: int = 6,
            gap: int = 8) -> Image.Image:
    """RGB tiles (all the same size) in a grid, each with up to three caption lines below."""
    if not tiles:
        raise ValueError("no tiles")
    th, tw = tiles[0].shape[:2]
    f = font(11)
    line_h = 14
    cap_h = line_h * max(len(c) for c in captions) + 4
    cols = min(columns, len(tiles))
    rows = int(math.ceil(len(tiles) / cols))
    out = Image.new("RGB", (cols * (tw + gap) + gap, rows * (th + cap_h + gap) + gap), "white")
    draw = ImageDraw.Draw(out)
    for k, (tile, caption) in enumerate(zip(tiles, captions)):
        r, c = divmod(k, cols)
        x = gap + c * (tw + gap)
        y = gap + r * (th + cap_h + gap)
        out.paste(Image.fromarray(np.ascontiguousarray(tile, dtype=np.uint8), "RGB"), (x, y))
        for j, text in enumerate(caption):
            draw.text((x + 1, y + th + 3 + j * line_h), _fit_text(draw, text, f, tw), fill=DARK, font=f)
    return out


def _fit_text(draw: ImageDraw.ImageDraw, text: str, f, width: int) -> str:
    if draw.textlength(text, font=f) <= width:
        return text
    while text and draw.textlength(text + "…", font=f) > width:
        text = text[:-1]
    return text + "…"
