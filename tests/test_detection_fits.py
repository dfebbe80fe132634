"""The sphere fits of the screened frames, made by the detection workers as they score
(issue #19 item 2): the same answers as fitting the hit list's frames afterwards."""

import numpy as np
import pytest

from spidarknet.cli import detect
from spidarknet.detection.fits import ScreenedFits, _compressed
from spidarknet.detection.parallel import detect_parallel, shared_backgrounds
from spidarknet.engine.model import builtin_weights, load_model
from spidarknet.frames.source import FrameSource, GeometryOverrides
from spidarknet.frames.options import FrameOptions
from spidarknet.hits import read_hits
from spidarknet.jobs.detect import DetectSettings, shard_job
from spidarknet.selection.decide import decide
from spidarknet.simulate import MEASURED_LIKE_SETTINGS, simulate_file
from spidarknet.sizing import SizingSettings, estimate_sizes, file_background


@pytest.mark.parametrize("compression, measured", [(None, False), ("lzf", False), ("lzf", True)])
def test_workers_fit_the_screened_frames_as_a_separate_fit_would(tmp_path, compression, measured):
    """Uncompressed frames: the screened ones read again with the fit's region; compressed
    frames: every chunk read once with the fit's region joined to the network's crop.  A
    measured-like file (stray light): each process finds the same background shape."""
    path = tmp_path / "frames.cxi"
    simulate_file(path, 24, seed=11, compression=compression,
                  **({"settings": MEASURED_LIKE_SETTINGS, "half_detector": True} if measured else {}))
    model = load_model(str(builtin_weights()))
    screen = float(model.validation["screening_threshold"])
    source = FrameSource([str(path)])
    assert _compressed(source.files[0]) == (compression is not None)
    shape = file_background(source, source.files[0], SizingSettings())
    assert (shape.shape is not None) == measured and not shape.row_stripes
    if measured:  # the same file with another beam centre has its own shape, about that centre
        cx, cy = source.files[0].geometry.centre_px
        moved = FrameSource([str(path)], geometry=GeometryOverrides(centre_px=(cx + 6.0, cy)))
        assert file_background(moved, moved.files[0], SizingSettings()) is not shape
        assert file_background(source, source.files[0], SizingSettings()) is shape
        # found once in the parent where workers share the file, and sent to them
        key = (source.files[0].path, source.files[0].dataset)
        found = shared_backgrounds(source, [[key[0]], [key[0]]], SizingSettings())
        assert list(found) == [key] and found[key] is shape
        assert shared_backgrounds(source, [[key[0]], []], SizingSettings()) == {}
    settings = DetectSettings(FrameOptions([str(path)]), out="unused.csv", chunk=8, weights=str(builtin_weights()))
    fits = ScreenedFits()
    model.threshold = screen
    job = shard_job(settings, model, "opencv", fit=fits.settings)
    hits, times = detect_parallel(source, job, 2, fits=fits)
    hits.threshold = screen
    screened = [k for k, h in zip(hits.keys, hits.hits) if h]
    assert len(screened) >= 3 and times.fit > 0
    by_key = fits.by_key()
    assert sorted(by_key) == sorted((k.file, k.index) for k in screened)
    afterwards = estimate_sizes(source.select_keys(screened), jobs=1)
    for later in afterwards:
        now = by_key[(later.key.file, later.key.index)]
        assert now.reason == later.reason
        np.testing.assert_equal([now.diameter_nm, now.diameter_err_nm, now.misfit, now.second_particle_z],
                                [later.diameter_nm, later.diameter_err_nm, later.misfit, later.second_particle_z])


def test_detect_size_range_with_the_workers_fits_equals_the_fits_made_afterwards(small_cxi, tmp_path):
    out = tmp_path / "hits.csv"
    assert detect.main([str(small_cxi), "--out", str(out), "--size-range", "60", "75", "--jobs", "2",
                        "--chunk", "16", "--quiet"]) == 0
    written = read_hits(out)
    again = read_hits(out)
    again.selected = None
    decide(again, FrameSource([str(small_cxi)]), size_range=(60.0, 75.0), jobs=1)
    assert list(written.hits) == list(again.hits) and written.n_hits >= 1
    for name in ("diameter_nm", "diameter_err_nm", "misfit", "second_particle_z", "signal_photons"):
        np.testing.assert_allclose(written.columns[name], again.columns[name], rtol=1e-4, equal_nan=True)
    assert list(written.columns["reason"]) == list(again.columns["reason"])


def test_detect_icosahedron_refines_the_fits_near_the_windows_edges(small_cxi, tmp_path):
    """With a window the icosahedron is on by default and reaches the workers' fits and the
    fits made afterwards: frame 3's sphere (61.2 nm, within 3 nm below the window's edge) is
    refined by an icosahedron, frame 2's (68.4 nm) is not; the hit list records it.
    ``--no-icosahedron`` keeps the sphere's answer."""
    out, off = tmp_path / "hits.csv", tmp_path / "off.csv"
    assert detect.main([str(small_cxi), "--out", str(out), "--size-range", "62", "75",
                        "--frames", "2:4", "--jobs", "2", "--chunk", "1", "--quiet"]) == 0
    assert detect.main([str(small_cxi), "--out", str(off), "--size-range", "62", "75", "--no-icosahedron",
                        "--frames", "3:4", "--jobs", "1", "--quiet"]) == 0
    written = read_hits(out)
    assert written.meta["icosahedron"] is True and written.meta["jobs"] == 2
    assert "icosahedron" not in read_hits(off).meta
    results = {}
    for on in (False, True):
        again = read_hits(out)
        again.selected = None
        decide(again, FrameSource([str(small_cxi)], frames=slice(2, 4)), size_range=(62.0, 75.0), jobs=1,
               icosahedron=on)
        results[on] = again.columns["diameter_nm"]
    np.testing.assert_allclose(written.columns["diameter_nm"], results[True], rtol=1e-4)
    np.testing.assert_allclose(read_hits(off).columns["diameter_nm"], results[False][1:], rtol=1e-4)
    assert [k.index for k in written.keys] == [2, 3]
    assert results[False][0] == results[True][0] and abs(results[False][1] - results[True][1]) > 0.02
