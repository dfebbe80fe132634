"""Reading CXI files written by the simulator: geometry, mask, ranges, ROI, bad input."""

import shutil

import h5py
import numpy as np
import pytest

from spidarknet.core.errors import ConfigError, InputError
from spidarknet.frames.source import FrameKey, FrameSource, GeometryOverrides, parse_frame_range


def test_geometry_in_si_units_and_centre_from_corner_position(small_cxi):
    source = FrameSource([str(small_cxi)])
    info = source.files[0]
    assert info.dataset == "/entry_1/data_1/data"
    assert info.frame_shape == (1024, 1024) and info.n_frames == 60
    g = info.geometry
    assert g.distance_m == pytest.approx(0.125)
    assert g.pixel_size_m == pytest.approx((75e-6, 75e-6))
    assert g.wavelength_m == pytest.approx(7.293e-10, rel=1e-3)
    assert g.photon_energy_J == pytest.approx(1700 * 1.602176634e-19, rel=1e-6)
    with h5py.File(small_cxi) as f:
        cx = np.nanmean(f["/truth/centre_x_px"][()])
        cy = np.nanmean(f["/truth/centre_y_px"][()])
    assert g.centre_px == pytest.approx((cx, cy), abs=1.0)  # nominal centre; frames jitter around it


def test_mask_from_the_file_excludes_the_gap_and_beamstop(small_cxi):
    info = FrameSource([str(small_cxi)]).files[0]
    valid = info.mask_shared
    with h5py.File(small_cxi) as f:
        mask = f["/entry_1/instrument_1/detector_1/mask_shared"][()]
    assert np.array_equal(valid, mask == 0)
    assert not valid[512].any()          # the gap rows between the halves
    cx, cy = info.geometry.centre_px
    assert not valid[int(cy) - 3, int(cx)]  # beam-stop hole
    assert FrameSource([str(small_cxi)], use_file_mask=False).files[0].mask_shared is None


def test_chunks_stream_the_selected_range_and_region(small_cxi):
    source = FrameSource([str(small_cxi)], frames=parse_frame_range("10:35"))
    assert len(source) == 25
    chunks = list(source.chunks(8, roi=(100, 300, 200, 264)))
    assert [len(c) for c in chunks] == [8, 8, 8, 1]
    assert chunks[0].data.shape == (8, 200, 64)
    assert chunks[0].valid.shape == (200, 64)
    with h5py.File(small_cxi) as f:
        expected = f["/entry_1/data_1/data"][10:18, 100:300, 200:264]
    assert np.array_equal(chunks[0].data, expected)
    assert chunks[-1].keys[0].index == 34


def test_globs_several_files_and_sparse_selection(small_cxi, tmp_path):
    a, b = tmp_path / "run_a.cxi", tmp_path / "run_b.cxi"
    shutil.copy(small_cxi, a)
    shutil.copy(small_cxi, b)
    source = FrameSource([str(tmp_path / "run_*.cxi")], frames=slice(0, 5))
    assert [f.path for f in source.files] == [str(a), str(b)]
    picked = source.select({str(a): np.array([0, 1, 4]), str(b): np.array([3])})
    keys = [(k.file, k.index) for c in picked.chunks(16) for k in c.keys]
    assert keys == [(str(a), 0), (str(a), 1), (str(a), 4), (str(b), 3)]
    assert len(source) == 10 and [len(f.indices) for f in source.files] == [5, 5]  # the caller's is unchanged
    assert picked.spec()["indices"] == {str(a): [0, 1, 4], str(b): [3]}


def test_roi_outside_the_frame_is_an_error(small_cxi):
    source = FrameSource([str(small_cxi)])
    with pytest.raises(InputError, match="outside the 1024x1024 frame"):
        next(source.chunks(4, roi=(2000, 2100, 0, 10)))


def test_overrides_replace_file_geometry(small_cxi):
    info = FrameSource([str(small_cxi)], geometry=GeometryOverrides(centre_px=(500.0, 520.0),
                                                                    distance_m=0.2)).files[0]
    assert info.geometry.centre_px == (500.0, 520.0) and info.geometry.distance_m == 0.2


@pytest.mark.parametrize("text, expected", [("0:10", slice(0, 10)), ("5:", slice(5, None)),
                                            ("::2", slice(None, None, 2)), ("7", slice(7, 8))])
def test_frame_range_syntax(text, expected):
    assert parse_frame_range(text) == expected


@pytest.mark.parametrize("text", ["a:b", "1:2:0", "1:2:3:4"])
def test_bad_frame_range(text):
    with pytest.raises(ConfigError, match="START:STOP"):
        parse_frame_range(text)


def test_frame_range_beyond_the_file(small_cxi):
    with pytest.raises(InputError, match="selects no frame .* which has 60"):
        FrameSource([str(small_cxi)], frames=slice(100, 200))


def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        FrameSource([str(tmp_path / "nope.cxi")])
    with pytest.raises(InputError, match="no file matches"):
        FrameSource([str(tmp_path / "*.cxi")])


def test_not_hdf5_and_truncated_files(small_cxi, tmp_path):
    text = tmp_path / "notes.cxi"
    text.write_text("not an HDF5 file")
    with pytest.raises(InputError, match="not a readable HDF5/CXI file"):
        FrameSource([str(text)])
    cut = tmp_path / "cut.cxi"
    cut.write_bytes(small_cxi.read_bytes()[:200_000])
    with pytest.raises(InputError, match="not a readable HDF5/CXI file|cannot read frames"):
        source = FrameSource([str(cut)])
        list(source.chunks(8))


def test_a_mistyped_dataset_names_the_nearest(small_cxi):
    with pytest.raises(InputError, match=r"no dataset /entry_1/instrument_1/detector_1/dat \(did you mean "
                                         r"/entry_1/instrument_1/detector_1/data\? datasets in the file: "
                                         r"/entry_1/instrument_1/detector_1/"):
        FrameSource([str(small_cxi)], dataset="/entry_1/instrument_1/detector_1/dat")


def test_absent_dataset_lists_what_exists(small_cxi, tmp_path):
    with pytest.raises(InputError, match=r"no dataset /entry_1/nope .*datasets in the file: .*/entry_1"):
        FrameSource([str(small_cxi)], dataset="/entry_1/nope")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["/images"] = np.zeros((2, 8, 8))
    with pytest.raises(InputError, match=r"name the dataset with --dataset .*/images \(2, 8, 8\)"):
        FrameSource([str(other)])


def test_wrong_dimensionality(tmp_path):
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as f:
        f["/entry_1/data_1/data"] = np.zeros((8, 8))
    with pytest.raises(InputError, match="must be a 3-D stack"):
        FrameSource([str(path)])


def test_separate_mask_file_is_combined(small_cxi, tmp_path):
    extra = np.zeros((1024, 1024), dtype=np.uint8)
    extra[:, :10] = 1
    np.save(tmp_path / "m.npy", extra)
    info = FrameSource([str(small_cxi)], mask=str(tmp_path / "m.npy")).files[0]
    assert not info.mask_shared[:, :10].any() and not info.mask_shared[512].any()
    np.save(tmp_path / "bad.npy", np.zeros((10, 10)))
    with pytest.raises(InputError, match="has shape"):
        FrameSource([str(small_cxi)], mask=str(tmp_path / "bad.npy"))


def test_files_with_the_same_mask_share_one_copy(small_cxi, tmp_path):
    for name in ("a.cxi", "b.cxi"):
        shutil.copy(small_cxi, tmp_path / name)
    files = FrameSource([str(tmp_path / "*.cxi")]).files
    assert files[0].mask_shared is files[1].mask_shared
    assert not files[0].mask_shared[512].any()


def test_from_keys_holds_exactly_the_keys_frames_checked_up_front(small_cxi, tmp_path):
    a, b = tmp_path / "a.cxi", tmp_path / "b.cxi"
    shutil.copy(small_cxi, a)
    shutil.copy(small_cxi, b)
    data = "/entry_1/instrument_1/detector_1/data"
    keys = [FrameKey(str(b), "", 7), FrameKey(str(a), "", 3), FrameKey(str(b), "", 2), FrameKey(str(a), data, 5)]
    sources = FrameSource.from_keys(keys)
    assert len(sources) == 2                              # one per dataset as written, first seen first
    assert [f.path for f in sources[0].files] == [str(b), str(a)]
    assert [(k.file, k.index) for k in sources[0].keys()] == [(str(b), 2), (str(b), 7), (str(a), 3)]
    assert [(k.file, k.dataset, k.index) for k in sources[1].keys()] == [(str(a), data, 5)]
    picked = sources[0].select_keys([FrameKey(str(a), "", 3), FrameKey(str(tmp_path / "c.cxi"), "", 1)])
    assert [(k.file, k.index) for k in picked.keys()] == [(str(a), 3)] and len(sources[0]) == 3
    with pytest.raises(InputError, match="has 60 frames .* names frame 60"):
        FrameSource.from_keys([FrameKey(str(a), "", 60)])
    with pytest.raises(InputError, match="gone.cxi named in the hit list does not exist"):
        FrameSource.from_keys([FrameKey(str(a), "", 1), FrameKey(str(tmp_path / "gone.cxi"), "", 1)])
