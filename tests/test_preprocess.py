"""The preprocessing pipeline on frames with known content."""

import json

import numpy as np
import pytest

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.frames.source import FileInfo, FrameChunk, Geometry
from spidarknet.preprocess import Preprocessing, Preprocessor, detector_reach_q_inv_nm, pattern_extent, q_at_px

#: the pnCCD of the 2018 PR772 run: 1.7 keV (λ 0.7293 nm), 125 mm, 75 µm
PNCCD = dict(distance_m=0.125, pixel_size_m=(75e-6, 75e-6), wavelength_m=7.293188e-10)


def make_chunk(data, centre=(31.5, 31.5), valid=None, origin=(0, 0), **geometry):
    data = np.asarray(data)
    info = FileInfo(path="/x.cxi", dataset="/d", n_frames=len(data), frame_shape=data.shape[1:],
                    dtype=data.dtype, geometry=Geometry(centre_px=centre, **geometry))
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
    lin = Preprocessor(Preprocessing(size=8, crop=8, adu_per_photon=8.0, vmax=100.0, scale="linear")).process(
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
    out = Preprocessor(Preprocessing(size=16, crop=16, scale="linear")).process(make_chunk(frames, centre=(7.5, 7.5)))
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


def test_the_crop_in_q_or_in_pixels_one_of_them():
    with pytest.raises(ConfigError, match="not both"):
        Preprocessing(q_max_inv_nm=0.66)  # crop keeps its pixel default: say crop=None
    with pytest.raises(ConfigError, match="give the crop"):
        Preprocessing(crop=None)
    with pytest.raises(ConfigError, match="positive number"):
        Preprocessing(crop=None, q_max_inv_nm=-1.0)
    with pytest.raises(ConfigError, match="for_file"):
        Preprocessing(crop=None, q_max_inv_nm=0.66).bin_factor


def test_pixel_settings_are_written_as_before_and_old_files_load_unchanged(tmp_path):
    old = {"size": 128, "crop": 256, "adu_per_photon": None, "centre_px": None, "scale": "linear",
           "vmax": None, "vmax_percentile": 99.5, "vmax_floor": 5.0, "colormap": "grey", "version": 1}
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = Preprocessing.load(tmp_path / "old.json")
    assert loaded == Preprocessing(scale="linear") and loaded.q_max_inv_nm is None and loaded.to_dict() == old
    # a pixel model needs no geometry and crops what it always cropped, whatever the pixels
    chunk = make_chunk(np.zeros((1, 1024, 1024), np.uint16), centre=(511.5, 511.5))
    assert loaded.for_file(chunk.info) is loaded and loaded.crop_box(chunk.info) == (384, 640, 384, 640)
    q = Preprocessing(crop=None, q_max_inv_nm=0.5, size=64)
    q.save(tmp_path / "q.json")
    values = json.loads((tmp_path / "q.json").read_text())
    assert values["version"] == 2 and values["q_max_inv_nm"] == 0.5 and values["crop"] is None
    assert Preprocessing.load(tmp_path / "q.json") == q


def test_the_crop_in_q_follows_each_files_distance_and_pixels():
    q = Preprocessing(crop=None, q_max_inv_nm=0.66, size=128, vmax=10)
    for pixel, distance, crop in ((75e-6, 0.125, 256), (150e-6, 0.125, 128), (300e-6, 0.125, 64),
                                  (75e-6, 0.1875, 384), (75e-6, 0.25, 512)):
        shape = (1024 * 75e-6 // pixel,) * 2
        chunk = make_chunk(np.zeros((1, *map(int, shape)), np.uint16), centre=(shape[0] / 2 - 0.5,) * 2,
                           distance_m=distance, pixel_size_m=(pixel, pixel), wavelength_m=PNCCD["wavelength_m"])
        s = q.for_file(chunk.info)
        assert s.crop == crop and s.q_max_inv_nm is None and s.size == 128
        assert q_at_px(chunk.info.geometry, crop / 2) * 1e-9 == pytest.approx(0.66, rel=2e-3)
    # a shorter wavelength scatters the same q at smaller angles: a smaller crop
    chunk = make_chunk(np.zeros((1, 1024, 1024), np.uint16), centre=(511.5, 511.5),
                       **dict(PNCCD, wavelength_m=PNCCD["wavelength_m"] / 2))
    assert q.for_file(chunk.info).crop == 128


def test_files_of_several_geometries_in_one_preprocessor():
    """Each file gets its own crop.  A crop of fewer pixels than bins shares each pixel's
    photons among its bins at random, as finer pixels would have counted them: every pixel
    keeps its photons, bins hold whole photons, and the same frame always gives the same image."""
    rng = np.random.default_rng(3)
    pre = Preprocessor(Preprocessing(crop=None, q_max_inv_nm=0.66, size=128, vmax=10))
    fine = rng.poisson(1.0, size=(2, 512, 512)).astype(np.uint16)
    coarse = fine.reshape(2, 256, 2, 256, 2).sum(axis=(2, 4))
    a = pre.process(make_chunk(fine, centre=(255.5, 255.5), **PNCCD))
    b = pre.process(make_chunk(coarse, centre=(127.5, 127.5), **dict(PNCCD, pixel_size_m=(150e-6, 150e-6))))
    assert (a.settings.crop, b.settings.crop) == (256, 128)
    assert np.array_equal(a.photons, b.photons)  # 2x2 pixels per bin either way
    c = pre.process(make_chunk(coarse[:, 64:192, 64:192].reshape(2, 64, 2, 64, 2).sum(axis=(2, 4)),
                               centre=(31.5, 31.5), **dict(PNCCD, pixel_size_m=(300e-6, 300e-6))))
    assert c.settings.crop == 64 and c.photons.sum() == pytest.approx(a.photons.sum(), rel=1e-5)

    def blocks(p):
        return p.reshape(2, 64, 2, 64, 2).sum(axis=(2, 4))
    assert np.array_equal(blocks(c.photons), blocks(a.photons))
    assert np.array_equal(c.photons, np.round(c.photons)) and not np.array_equal(c.photons, a.photons)
    again = pre.process(make_chunk(coarse[1:, 64:192, 64:192].reshape(1, 64, 2, 64, 2).sum(axis=(2, 4)),
                                   centre=(31.5, 31.5), **dict(PNCCD, pixel_size_m=(300e-6, 300e-6))))
    assert np.array_equal(again.photons[0], c.photons[1])  # seeded by the frame, not by its chunk


def test_shared_photons_keep_fractions_evenly():
    from spidarknet.preprocess import share_photons
    out = share_photons(np.array([[[2.5, 0.0], [1.0, 0.25]]], dtype=np.float32), 2)
    assert out.shape == (1, 4, 4)
    assert np.allclose(out.reshape(1, 2, 2, 2, 2).sum(axis=(2, 4)), [[[2.5, 0.0], [1.0, 0.25]]])
    assert set(np.unique(out[0, :2, :2] - 0.125)) <= {0.0, 1.0, 2.0} and np.all(out[0, 2:, 2:] == 0.0625)


def test_files_that_cannot_give_the_images_are_refused_with_the_numbers():
    q = Preprocessing(crop=None, q_max_inv_nm=0.66, size=128)

    def info(shape=(1024, 1024), **geometry):
        return make_chunk(np.zeros((1, *shape), np.uint8), centre=(shape[1] / 2 - 0.5, shape[0] / 2 - 0.5),
                          **geometry).info
    with pytest.raises(InputError, match=r"lacks the detector distance.*wavelength.*--crop PIXELS"):
        q.for_file(info())
    with pytest.raises(InputError, match=r"600 µm pixels at 125 mm.*4\.00 times.*at most 64\)"):
        q.for_file(info((128, 128), **dict(PNCCD, pixel_size_m=(600e-6, 600e-6))))
    q.for_file(info((256, 256), **dict(PNCCD, pixel_size_m=(300e-6, 300e-6))))  # 2 times: the limit
    # a detector that ends before the q is padded there, not refused: what it lacks counts as masked
    far = info(**dict(PNCCD, distance_m=0.75))
    assert q.for_file(far).crop > 1024 and detector_reach_q_inv_nm(far) == pytest.approx(0.441, abs=0.001)
    assert detector_reach_q_inv_nm(info(**PNCCD)) > 0.66
    with pytest.raises(InputError, match="square pixels"):
        q.for_file(info(**dict(PNCCD, pixel_size_m=(75e-6, 150e-6))))
    with pytest.raises(InputError, match="never reaches a flat detector"):
        Preprocessing(crop=None, q_max_inv_nm=15.0).for_file(info(**PNCCD))
    # a beam near one edge is fine while the far side reaches the q (patterns are centrosymmetric)
    chunk = make_chunk(np.zeros((1, 1024, 1024), np.uint8), centre=(100.0, 900.0), **PNCCD)
    assert q.for_file(chunk.info).crop == 256
