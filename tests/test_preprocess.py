"""The preprocessing pipeline on frames with known content."""

import numpy as np
import pytest

from spidarknet.errors import ConfigError
from spidarknet.frames import FileInfo, FrameChunk, Geometry
from spidarknet.preprocess import Preprocessing, Preprocessor, pattern_extent


def make_chunk(data, centre=(31.5, 31.5), valid=None, origin=(0, 0)):
    data = np.asarray(data)
    info = FileInfo(path="/x.cxi", dataset="/d", n_frames=len(data), frame_shape=data.shape[1:],
                    dtype=data.dtype, geometry=Geometry(centre_px=centre))
    if valid is None:
        valid = np.ones(data.shape[1:], dtype=bool)
    return FrameChunk(info=info, indices=np.arange(len(data)), data=data, valid=valid, origin=origin)


def test_binning_conserves_photons_for_integer_and_fractional_factors():
    rng = np.random.default_rng(1)
    frames = rng.poisson(2.0, size=(3, 64, 64)).astype(np.uint16)
    for size, crop in ((16, 64), (24, 48)):
        pre = Preprocessor(Preprocessing(size=size, crop=crop, vmax=10))
        out = pre.process(make_chunk(frames))
        r0, c0 = out.crop_origin
        expected = frames[:, r0:r0 + crop, c0:c0 + crop].sum(axis=(1, 2))
        assert out.photons.shape == (3, size, size)
        assert out.photons.sum(axis=(1, 2)) == pytest.approx(expected, rel=1e-4)


def test_crop_is_centred_on_the_beam_and_padded_outside_the_detector():
    frames = np.zeros((1, 64, 64), dtype=np.float32)
    frames[0, 10, 50] = 100.0  # the "beam centre" pixel
    pre = Preprocessor(Preprocessing(size=16, crop=16, vmax=100))
    out = pre.process(make_chunk(frames, centre=(50.0, 10.0)))
    assert out.crop_origin == (2, 42)
    assert out.photons[0, 8, 8] == 100.0  # centre pixel lands in the middle of the crop
    # a crop reaching past the edge keeps its size; the outside is zero
    out = pre.process(make_chunk(frames, centre=(60.0, 60.0)))
    assert out.photons.shape == (1, 16, 16)
    assert out.photons[0, 12:, :].sum() == 0


def test_mask_nan_and_negative_pixels_are_zeroed_and_counted():
    frames = np.full((2, 32, 32), 3.0, dtype=np.float32)
    frames[0, 5, 5] = np.nan
    frames[1, 6, 6] = -4.0
    valid = np.ones((32, 32), dtype=bool)
    valid[:, :16] = False
    pre = Preprocessor(Preprocessing(size=32, crop=32, vmax=3))
    out = pre.process(make_chunk(frames, centre=(15.5, 15.5), valid=valid))
    assert out.n_bad_values == 0  # the bad values sit in the masked half
    assert np.all(out.photons[:, :, :16] == 0) and np.all(out.photons[:, :, 16:] == 3)
    frames[0, 5, 20] = np.nan
    out = pre.process(make_chunk(frames, centre=(15.5, 15.5), valid=valid))
    assert out.n_bad_values == 1 and out.photons[0, 5, 20] == 0 and np.isfinite(out.photons).all()


def test_adu_conversion_and_scales():
    frames = np.zeros((1, 8, 8), dtype=np.float32)
    frames[0, 0, 0] = 80.0   # 10 photons at 8 ADU/photon
    frames[0, 0, 1] = 800.0  # 100 photons
    lin = Preprocessor(Preprocessing(size=8, crop=8, adu_per_photon=8.0, vmax=100.0)).process(
        make_chunk(frames, centre=(3.5, 3.5)))
    assert lin.photons[0, 0, 0] == pytest.approx(10.0)
    assert lin.images[0, 0, 0, 0] == round(255 * 0.1) and lin.images[0, 0, 1, 0] == 255
    log = Preprocessor(Preprocessing(size=8, crop=8, adu_per_photon=8.0, vmax=100.0, scale="log")).process(
        make_chunk(frames, centre=(3.5, 3.5)))
    assert log.images[0, 0, 0, 0] == round(255 * np.log1p(10) / np.log1p(100))
    assert log.images[0, 0, 0, 0] > lin.images[0, 0, 0, 0]
    root = Preprocessor(Preprocessing(size=8, crop=8, adu_per_photon=8.0, vmax=100.0, scale="sqrt")).process(
        make_chunk(frames, centre=(3.5, 3.5)))
    assert root.images[0, 0, 0, 0] == round(255 * np.sqrt(0.1)) and root.images[0, 0, 1, 0] == 255
    assert lin.images[0, 0, 0, 0] < root.images[0, 0, 0, 0] < log.images[0, 0, 0, 0]


def test_per_frame_full_scale_has_a_floor_so_empty_frames_stay_dark():
    frames = np.zeros((2, 16, 16), dtype=np.uint16)
    frames[0, 3, 3] = 1            # an "empty" frame: one background photon
    frames[1] = 50                 # a bright frame
    out = Preprocessor(Preprocessing(size=16, crop=16)).process(make_chunk(frames, centre=(7.5, 7.5)))
    assert out.images[0].max() == round(255 / 5.0)  # 1 photon over the floor of 5
    assert out.images[1].min() == 255


def test_grey_is_replicated_and_colour_maps_are_rgb():
    frames = np.tile(np.arange(16, dtype=np.float32), (1, 16, 1))
    grey = Preprocessor(Preprocessing(size=16, crop=16, vmax=15)).process(make_chunk(frames, (7.5, 7.5)))
    assert grey.images.shape == (1, 16, 16, 3) and grey.images.dtype == np.uint8
    assert np.array_equal(grey.images[..., 0], grey.images[..., 2])
    jet = Preprocessor(Preprocessing(size=16, crop=16, vmax=15, colormap="jet")).process(
        make_chunk(frames, (7.5, 7.5)))
    # jet runs from blue (low) to red (high): in RGB order red grows along the ramp
    assert jet.images[0, 0, 0, 2] > jet.images[0, 0, 0, 0]
    assert jet.images[0, 0, -1, 0] > jet.images[0, 0, -1, 2]


def test_settings_round_trip_as_json_and_reject_typos(tmp_path):
    settings = Preprocessing(size=160, crop=480, scale="log", colormap="viridis", centre_px=(500.5, 510.0))
    settings.save(tmp_path / "p.json")
    assert Preprocessing.load(tmp_path / "p.json") == settings
    with pytest.raises(ConfigError, match="did you mean 'colormap'"):
        Preprocessing.from_dict({"colourmap": "grey"})
    with pytest.raises(ConfigError, match="did you mean 'log'"):
        Preprocessing(scale="logg")
    with pytest.raises(ConfigError, match="newer spidarknet"):
        Preprocessing.from_dict({"version": 99})


def test_pattern_extent_finds_the_radius_of_a_disc():
    yy, xx = np.mgrid[0:64, 0:64]
    disc = (np.hypot(xx - 31.5, yy - 31.5) < 10).astype(np.float32) * 5
    photons = np.stack([disc + 0.01, np.full((64, 64), 0.01, np.float32)])
    radius = pattern_extent(photons, (31.5, 31.5))
    assert 8.5 <= radius[0] <= 10.0
    assert radius[1] == 0.0
