"""Hot and dead pixels found in a run's own frames (spidarknet.frames.badpixels): the simulator's
unmasked hot pixels are found, clean frames lose no pixel, workers get the same mask without
reading again, and the size window keeps the dim singles that hot pixels made it drop."""

import h5py
import numpy as np
import pytest

from spidarknet import open_frames
from spidarknet.frames.badpixels import MIN_FRAMES, find_bad_pixels, sample_indices
from spidarknet.frames.source import FrameSource
from spidarknet.simulate import MEASURED_LIKE_SETTINGS, FrameSimulator, simulate_file

SMALL = {"shape": (128, 256)}
HOT = {"hot_pixels": 40, "dead_pixels": 0, "bad_pixels_masked": 0.0, "ring_photons": 0.0,
       "beamline_photons": 0.0}


@pytest.fixture(scope="module")
def hot_run(tmp_path_factory):
    """40 measured-like frames with 40 unmasked hot pixels, and the simulator's own list of them."""
    path = tmp_path_factory.mktemp("bad") / "hot.cxi"
    settings = MEASURED_LIKE_SETTINGS.with_options(**HOT)
    simulate_file(path, 40, seed=7, settings=settings, **SMALL)
    hot = FrameSimulator(seed=7, settings=settings, **SMALL).effects.hot_index
    return path, set(int(i) for i in hot)


def test_the_simulators_hot_pixels_are_found_and_nothing_else(hot_run):
    path, hot = hot_run
    source = open_frames(str(path))
    found = set(source.bad_pixels[source.files[0].path].tolist())
    assert len(found & hot) >= 0.9 * len(hot)
    assert found <= hot  # no pixel flagged that the simulator did not make bad
    usable = source.files[0].mask_shared.ravel()
    assert not usable[sorted(found)].any()


def test_clean_frames_lose_no_pixel(small_cxi, tmp_path):
    """Every kind of frame, bright ones included (their speckles light their neighbours too)."""
    bright = tmp_path / "bright.cxi"
    simulate_file(bright, 40, seed=3, photons=40_000, **SMALL)
    for path in (small_cxi, bright):
        source = FrameSource([str(path)], bad_pixels=True)
        assert len(source.bad_pixels[source.files[0].path]) == 0


def test_workers_rebuild_the_mask_from_the_spec_without_reading(hot_run, monkeypatch):
    path, _ = hot_run
    source = FrameSource([str(path)], bad_pixels=True)
    spec = source.spec()

    def no_reading(*args, **kwargs):
        raise AssertionError("the bad pixels were looked for again")

    monkeypatch.setattr("spidarknet.frames.badpixels.BadPixelCounter.add", no_reading)
    again = FrameSource.from_spec(spec)
    assert np.array_equal(again.files[0].mask_shared, source.files[0].mask_shared)
    assert not again.files[0].mask_shared.all()


def test_keep_bad_pixels_and_what_is_not_judged(hot_run, tmp_path):
    path, _ = hot_run
    kept = open_frames(str(path), keep_bad_pixels=True)
    assert kept.bad_pixels == {}
    few = open_frames(str(path), frames=f"0:{MIN_FRAMES - 1}")
    assert len(few.bad_pixels[few.files[0].path]) == 0  # too few frames to judge
    # raw ADU (a photon is 100): not photon counts, so nothing is judged
    with h5py.File(path, "r") as f:
        frames = f["/entry_1/instrument_1/detector_1/data"][()].astype(np.float32) * 100 + 500
    result = find_bad_pixels(frames, np.ones(frames.shape[1:], dtype=bool))
    assert len(result) == 0 and "not a photon count" in result.skipped


def test_a_dead_pixel_among_lit_neighbours_and_hot_ones_in_dark_and_lit_surroundings():
    rng = np.random.default_rng(0)
    frames = rng.poisson(0.05, size=(32, 40, 40)).astype(np.float32)
    frames[:, :20] = rng.poisson(0.8, size=(32, 20, 40))  # a bright band, lit in ~55 % of frames
    frames[:, 10, 12] = 0.0        # dead where its neighbours see ~26 photons over the sample
    frames[:, 30, 30] = 2.0        # hot in the dark
    frames[:, 5, 30] = 6.0         # hot among often lit neighbours
    result = find_bad_pixels(frames, np.ones((40, 40), dtype=bool))
    assert result.dead.tolist() == [10 * 40 + 12]
    assert result.hot.tolist() == [5 * 40 + 30, 30 * 40 + 30]
    usable = np.ones((40, 40), dtype=bool)
    usable[30, 30] = False         # a pixel masked already is never counted
    assert find_bad_pixels(frames, usable).hot.tolist() == [5 * 40 + 30]


def test_a_central_peak_at_the_beam_stop_s_edge_is_not_hot():
    """On binned frames a particle's central peak reaches the beam stop and falls steeply over
    a block's 24 pixels but not from one pixel to the next (the old rule flagged 7 edge
    pixels here); two hot pixels side by side among lit neighbours are still found."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[:64, :64]
    r = np.hypot(y - 31.6, x - 32.3)
    usable = r > 5
    frames = rng.poisson(6000 * np.exp(-(r - 5) / 3.0) * rng.lognormal(0, 0.3, (32, 1, 1)) + 0.05) * usable
    assert find_bad_pixels(frames, usable).hot.size == 0
    frames = frames.astype(np.float64)
    frames[:, 55:, :] += rng.poisson(0.8, size=(32, 9, 64))  # often lit, 1 photon a frame
    frames[:, 60, 10:12] += 40.0
    assert find_bad_pixels(frames, usable).hot.tolist() == [60 * 64 + 10, 60 * 64 + 11]


def test_sample_spreads_over_the_file():
    assert sample_indices(10).tolist() == list(range(10))
    picked = sample_indices(1000)
    assert len(picked) == 32 and picked[0] == 0 and picked[-1] == 999
