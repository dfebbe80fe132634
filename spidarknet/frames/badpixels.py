"""Hot and dead pixels a run shows in its own frames, found before anything is scored.

A measured detector has pixels that its mask misses: hot ones, which read a few to tens of
photons in every frame, and dead ones, which read nothing where their neighbours count
photons.  One hot pixel in the sphere fit's region adds far more to its misfit than a
single's deviation from a sphere on a dim frame, so a run with a few dozen of them loses
its dim singles to the size window.  Both are found from the frames themselves, a sample
spread over the file:

- **hot**: lit (≥ ``LIT_PHOTONS``) in at least ``HOT_MIN_LIT`` of the sampled frames and
  ``HOT_CONTRAST`` times as often as the usable pixels around it (those of the 3 x 3
  blocks of ``BLOCK`` x ``BLOCK`` pixels about its own) plus ``HOT_MARGIN``; or, where its neighbours are often lit too (near the beam
  stop), lit in ``HOT_ALWAYS_LIT`` of the frames with ``HOT_CONTRAST`` times their mean
  photons plus one, and as many times its adjacent pixels' median (a pattern's central peak
  at a beam stop's edge falls steeply over the block's 24 pixels, not from one pixel to the
  next: on an 8 x 8-binned frame at 0.581 m its edge pixel read 2.5 times its block's mean
  but 1.9 times its adjacent pixels' median).  A particle's pattern lights its pixels in the frames it is
  hit in, and its neighbours with them; only a pixel that stands out of its neighbourhood in
  most frames is hot.
- **dead**: no photon in any sampled frame where its neighbours (hot ones left out) were
  lit in ``DEAD_MIN_EXPECTED`` frames' worth over the sample: a live pixel reads nothing
  then with a chance below e⁻¹⁰.

Frames that are not photon counts (a detector's raw ADU) are not judged: a sample whose
lit pixels' median is above ``MAX_PHOTON_MEDIAN`` (or whose median pixel is negative) is
left alone.  Pixels already
masked are never counted, and a run where more than ``MAX_FLAGGED_FRACTION`` of the
usable pixels would be flagged is not touched (that is not a few bad pixels but a
frame the rules do not describe); both leave the mask as it was.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

#: frames sampled per file (spread evenly over its selected frames)
SAMPLE_FRAMES = 32
#: fewer sampled frames than this: nothing is judged
MIN_FRAMES = 16
#: a pixel is lit from this many photons on
LIT_PHOTONS = 0.5
HOT_MIN_LIT = 0.5
HOT_CONTRAST = 4.0
HOT_MARGIN = 0.25
#: or lit in this share of the frames with HOT_CONTRAST times its neighbours' mean photons (+ 1)
HOT_ALWAYS_LIT = 0.9
DEAD_MIN_EXPECTED = 10.0
#: a pixel's neighbours: the usable pixels of the 3 x 3 blocks of BLOCK x BLOCK pixels around
#: its own block (24 x 24 pixels; blocks rather than a sliding square: a tenth of the cost)
BLOCK = 8
MAX_FLAGGED_FRACTION = 0.01
#: frames whose lit pixels' median is above this many are not photon counts (raw ADU)
MAX_PHOTON_MEDIAN = 20.0


@dataclass(frozen=True)
class BadPixels:
    """Pixels a file's frames show to be hot or dead, as flat indices into the frame."""

    hot: np.ndarray
    dead: np.ndarray
    frames: int                 # frames sampled
    skipped: str = ""           # why nothing was judged, if so

    def __len__(self) -> int:
        return len(self.hot) + len(self.dead)

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """True where usable: every pixel but the flagged ones."""
        out = np.ones(int(np.prod(shape)), dtype=bool)
        out[self.hot] = False
        out[self.dead] = False
        return out.reshape(shape)

    def describe(self) -> str:
        if self.skipped:
            return f"bad pixels not judged: {self.skipped}"
        return (f"{len(self.hot)} hot pixel{'s' if len(self.hot) != 1 else ''} (lit in "
                f">= {HOT_MIN_LIT:.0%} of {self.frames} frames, {HOT_CONTRAST:g}x as often as their "
                f"neighbours) and {len(self.dead)} dead one{'s' if len(self.dead) != 1 else ''}")


def sample_indices(n: int, wanted: int = SAMPLE_FRAMES) -> np.ndarray:
    """``wanted`` positions spread evenly over ``range(n)`` (all of them when fewer)."""
    if n <= wanted:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, wanted).round().astype(np.int64))


def _block_sums(image: np.ndarray) -> np.ndarray:
    """Sums over ``BLOCK`` x ``BLOCK`` blocks (the frame padded with zeros to whole blocks),
    then over the 3 x 3 blocks around each block."""
    rows, cols = image.shape
    nr, nc = -(-rows // BLOCK), -(-cols // BLOCK)
    padded = np.zeros((nr * BLOCK, nc * BLOCK), dtype=np.float64)
    padded[:rows, :cols] = image
    blocks = np.zeros((nr + 2, nc + 2), dtype=np.float64)   # a ring of empty blocks around
    blocks[1:-1, 1:-1] = padded.reshape(nr, BLOCK, nc, BLOCK).sum(axis=(1, 3))
    # the 3 x 3 sums by hand: scipy.ndimage's filter would cost every command ~0.3 s to import
    return sum(blocks[i:i + nr, j:j + nc] for i in range(3) for j in range(3))


def _neighbours_mean(values: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over the usable pixels of the 3 x 3 blocks around each pixel's block,
    the pixel itself left out (NaN where there are none)."""
    v = np.where(usable, values, 0.0)
    rows, cols = values.shape
    expand = (lambda b: np.repeat(np.repeat(b, BLOCK, axis=0), BLOCK, axis=1)[:rows, :cols])
    total = expand(_block_sums(v)) - v
    count = expand(_block_sums(usable.astype(np.float64))) - usable
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _adjacent_median(values: np.ndarray, usable: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Median of ``values`` over the usable ones of the 8 pixels adjacent to each pixel of
    ``flat`` (flat indices; 0 where none is usable)."""
    rows, cols = values.shape
    r, c = np.divmod(flat, cols)
    around = np.full((8, len(flat)), np.nan)
    steps = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if i or j]
    for k, (i, j) in enumerate(steps):
        rr, cc = r + i, c + j
        inside = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
        ok = inside.copy()
        ok[inside] = usable[rr[inside], cc[inside]]
        around[k, ok] = values[rr[ok], cc[ok]]
    if not len(flat):
        return np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: no usable neighbour
        return np.nan_to_num(np.nanmedian(around, axis=0), nan=0.0)


class BadPixelCounter:
    """What :func:`find_bad_pixels` needs of a file's sampled frames, added chunk by chunk:
    per pixel the frames it was usable in, the frames it was lit in and its summed photons."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = tuple(shape)
        self.counted = np.zeros(self.shape, dtype=np.int32)
        self.lit = np.zeros(self.shape, dtype=np.int32)
        self.total = np.zeros(self.shape, dtype=np.float64)
        self.frames = 0
        self.values: list[np.ndarray] = []     # a subsample of usable pixel values

    def add(self, frames: np.ndarray, usable: np.ndarray) -> None:
        """``frames`` (n, H, W) of photon counts (NaN = unread), ``usable`` (H, W) or (n, H, W)."""
        frames = np.asarray(frames)
        ok = np.broadcast_to(usable, frames.shape)
        if frames.dtype.kind == "f":
            ok = ok & np.isfinite(frames)
        lit = frames >= LIT_PHOTONS
        lit &= ok
        if len(frames) == 1:   # a sampled frame alone (the usual case): its own values, no sum over frames
            self.counted += ok[0]
            self.lit += lit[0]
            self.total += np.where(ok[0], frames[0], 0)
        else:
            self.counted += ok.sum(axis=0, dtype=np.int32)
            self.lit += lit.sum(axis=0, dtype=np.int32)
            self.total += np.where(ok, frames, 0).sum(axis=0, dtype=np.float64)
        step = max(1, int(np.count_nonzero(ok[0])) // 2_000)
        self.values += [frame[good][::step] for frame, good in zip(frames, ok)]
        self.frames += len(frames)

    def result(self) -> "BadPixels":
        """The hot and dead pixels by the rules of the module notes."""
        empty = np.zeros(0, dtype=np.int64)
        if self.frames < MIN_FRAMES:
            return BadPixels(empty, empty, self.frames, f"{self.frames} frames sampled, need {MIN_FRAMES}")
        values = np.concatenate(self.values) if self.values else np.zeros(0)
        if values.size == 0:
            return BadPixels(empty, empty, self.frames, "no usable pixel")
        lit_values = values[values >= LIT_PHOTONS]
        median = float(np.median(lit_values)) if lit_values.size else 0.0
        if np.median(values) < 0 or median > MAX_PHOTON_MEDIAN:
            return BadPixels(empty, empty, self.frames,
                             f"the frames' median lit pixel is {median:g}, not a photon count")
        seen = self.counted >= MIN_FRAMES
        lit = self.lit / np.maximum(self.counted, 1)
        mean = self.total / np.maximum(self.counted, 1)
        around = np.nan_to_num(_neighbours_mean(lit, seen), nan=1.0)
        around_mean = np.nan_to_num(_neighbours_mean(mean, seen), nan=np.inf)
        bright = (lit >= HOT_ALWAYS_LIT) & (mean >= HOT_CONTRAST * around_mean + 1.0)
        bright[bright] = mean[bright] >= HOT_CONTRAST * _adjacent_median(mean, seen, np.flatnonzero(bright)) + 1.0
        hot = seen & (lit >= HOT_MIN_LIT) & ((lit >= HOT_CONTRAST * around + HOT_MARGIN) | bright)
        # the dead ones against the lit share of their neighbours, hot ones left out: a hot
        # pixel's photons in every frame would make its dark neighbours look dead
        around_dead = np.nan_to_num(_neighbours_mean(lit, seen & ~hot))
        dead = seen & (self.total == 0) & (around_dead * self.counted >= DEAD_MIN_EXPECTED)
        flagged = int(hot.sum() + dead.sum())
        if flagged > MAX_FLAGGED_FRACTION * seen.sum():
            return BadPixels(empty, empty, self.frames, f"{flagged} pixels would be flagged, more than "
                                                        f"{MAX_FLAGGED_FRACTION:.0%} of the usable ones")
        return BadPixels(np.flatnonzero(hot), np.flatnonzero(dead), self.frames)


def find_bad_pixels(frames: np.ndarray, usable: np.ndarray) -> BadPixels:
    """Hot and dead pixels of ``frames`` (n, H, W photon counts; NaN = unread) among the
    ``usable`` (H, W, or n, H, W per frame) pixels, by the rules of the module notes."""
    frames = np.asarray(frames)
    counter = BadPixelCounter(frames.shape[1:])
    counter.add(frames, np.asarray(usable))
    return counter.result()
