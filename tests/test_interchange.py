"""export-hits (CrystFEL/OM event list, CXI score sidecars) and export-emc (Dragonfly input).

The photons file is read back with a reader written here from Dragonfly's own definition of
the format, and, where the ``dragonfly-spi`` package is installed, with Dragonfly's reader.
"""

import csv
import importlib.util
import json
import os
import re

import h5py
import numpy as np
import pytest

from spidarknet.cli import export_emc, export_hits
from spidarknet.frames.source import FrameKey
from spidarknet.hits import HitList, read_hits
from spidarknet.hits import write_selected

DET = "/entry_1/instrument_1/detector_1"
SRC = "/entry_1/instrument_1/source_1"
ADU = 31.5
DRAGONFLY_INSTALL = (
    "Dragonfly's own reader is not installed; to run this check: apt-get install libgsl-dev "
    "libhdf5-dev libopenmpi-dev pkg-config && CFLAGS=\"$(pkg-config --cflags hdf5-serial) "
    "$(pkg-config --cflags ompi)\" LDFLAGS=-L/usr/lib/x86_64-linux-gnu/hdf5/serial "
    "pip install dragonfly-spi  (set SPIDARKNET_REQUIRE_DRAGONFLY=1 to make its absence a failure)")


def hit_list(path, keys, scores, flags=None, threshold=0.5):
    """Write a hit list CSV (+ JSON); ``flags`` overrides the hit column as 'select' does."""
    hits = HitList(keys, np.asarray(scores), np.zeros((len(keys), 4)), threshold)
    if flags is None:
        hits.write_csv(path)
    else:
        write_selected(hits, np.asarray(flags, dtype=bool), path)
    return hits


def keys_of(path, indices, dataset="/entry_1/data_1/data"):
    return [FrameKey(str(path), dataset, int(i)) for i in indices]


@pytest.fixture(scope="module")
def scored(small_cxi, tmp_path_factory):
    """Frames 0-39 of small_cxi scored (40-59 left out), hits where score >= 0.5."""
    root = tmp_path_factory.mktemp("interchange")
    scores = (np.arange(40) * 0.37) % 1.0
    path = root / "hits.csv"
    hits = hit_list(path, keys_of(small_cxi, range(40)), scores)
    return path, hits


# -- event list ------------------------------------------------------------------------------------

def test_lst_is_a_crystfel_event_list_of_the_selected_frames(scored, small_cxi, tmp_path):
    path, hits = scored
    out = tmp_path / "hits.lst"
    assert export_hits.main([str(path), "--lst", str(out), "-q"]) == 0
    lines = out.read_text().splitlines()
    expected = [i for i, s in enumerate(hits.scores) if s >= 0.5]
    assert 0 < len(expected) < 40
    parsed = [re.fullmatch(r"(\S+) //(\d+)", line) for line in lines]
    assert all(parsed), lines[:3]
    assert [int(m.group(2)) for m in parsed] == expected
    assert {m.group(1) for m in parsed} == {os.path.abspath(small_cxi)}
    assert os.path.isabs(parsed[0].group(1))


def test_lst_follows_the_hit_column_not_just_the_threshold(small_cxi, tmp_path):
    # 'select' narrows a hit list below score >= threshold: its hit column rules
    flags = np.zeros(10, dtype=bool)
    flags[[2, 7]] = True
    path = tmp_path / "narrow.csv"
    hit_list(path, keys_of(small_cxi, range(10)), np.ones(10), flags=flags)
    out = tmp_path / "narrow.lst"
    assert export_hits.main([str(path), "--lst", str(out), "-q"]) == 0
    assert out.read_text() == f"{os.path.abspath(small_cxi)} //2\n{os.path.abspath(small_cxi)} //7\n"


def test_a_missing_frame_file_is_named_and_nothing_written(small_cxi, tmp_path, capsys):
    gone = tmp_path / "moved_away.cxi"
    path = tmp_path / "hits.csv"
    hit_list(path, keys_of(small_cxi, range(3)) + keys_of(gone, range(2)), [0.9, 0.1, 0.9, 0.9, 0.9])
    out = tmp_path / "hits.lst"
    assert export_hits.main([str(path), "--lst", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and str(gone) in err[0] and "does not exist" in err[0]
    assert not out.exists()
    assert export_emc.main([str(path), "--out", str(tmp_path / "emc"), "-q"]) == 1
    assert str(gone) in capsys.readouterr().err
    assert not (tmp_path / "emc").exists()


def test_a_frame_beyond_the_end_and_an_existing_output_are_refused(small_cxi, tmp_path, capsys):
    path = tmp_path / "hits.csv"
    hit_list(path, keys_of(small_cxi, [1, 60]), [0.9, 0.9])
    assert export_hits.main([str(path), "--cxi-scores", str(tmp_path / "sc"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "frame 60" in err and "60 frames" in err and not (tmp_path / "sc").exists()
    ok = tmp_path / "ok.csv"
    hit_list(ok, keys_of(small_cxi, [1]), [0.9])
    out = tmp_path / "x.lst"
    out.write_text("keep me")
    assert export_hits.main([str(ok), "--lst", str(out), "-q"]) == 1
    assert "--force" in capsys.readouterr().err and out.read_text() == "keep me"
    assert export_hits.main([str(ok), "--lst", str(out), "-q", "--force"]) == 0
    assert out.read_text().endswith(" //1\n")
    assert export_hits.main([str(ok), "-q"]) == 1          # nothing asked for
    assert "--lst" in capsys.readouterr().err


# -- CXI sidecars ----------------------------------------------------------------------------------

def test_cxi_sidecar_layout_and_values(scored, small_cxi, tmp_path):
    path, hits = scored
    before = os.stat(small_cxi)
    out = tmp_path / "scores"
    assert export_hits.main([str(path), "--cxi-scores", str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["small-scores.cxi"]
    with h5py.File(out / "small-scores.cxi", "r") as f:
        assert f["cxi_version"][()] == 150
        score = f[f"{DET}/score"]
        tags = f[f"{DET}/tags"]
        assert score.shape == (60,) and score.dtype == np.float32
        assert tags.shape == (60,) and tags.dtype == np.uint8
        assert [h.decode() if isinstance(h, bytes) else h for h in score.attrs["headings"]] == ["spidarknet_score"]
        assert [h.decode() if isinstance(h, bytes) else h for h in tags.attrs["headings"]] == ["single_hit"]
        np.testing.assert_array_equal(score[:40], hits.scores)
        assert np.all(np.isnan(score[40:]))
        np.testing.assert_array_equal(tags[:40], (hits.scores >= 0.5).astype(np.uint8))
        assert not tags[40:].any()
        np.testing.assert_array_equal(f["spidarknet/scored"][()], np.r_[np.ones(40), np.zeros(20)])
        link = f.get(f"{DET}/data", getlink=True)
        assert isinstance(link, h5py.ExternalLink)
        assert link.filename == os.path.abspath(small_cxi) and link.path == "/entry_1/data_1/data"
        assert f.attrs.get("cxi_version") is None and f["spidarknet"].attrs["source_file"] == link.filename
        with h5py.File(small_cxi, "r") as raw:
            np.testing.assert_array_equal(f["/entry_1/data_1/data"][7], raw["/entry_1/data_1/data"][7])
    after = os.stat(small_cxi)
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)


def test_one_sidecar_per_input_file_even_with_the_same_name(small_cxi, tmp_path):
    from spidarknet.simulate import simulate_file
    other = tmp_path / "elsewhere" / "small.cxi"
    other.parent.mkdir()
    simulate_file(other, 3, seed=5)
    path = tmp_path / "hits.csv"
    hit_list(path, keys_of(small_cxi, [0, 1]) + keys_of(other, [2]), [0.9, 0.2, 0.7])
    out = tmp_path / "sc"
    assert export_hits.main([str(path), "--cxi-scores", str(out), "--lst", str(tmp_path / "a.lst"), "-q"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["small-2-scores.cxi", "small-scores.cxi"]
    with h5py.File(out / "small-2-scores.cxi", "r") as f:
        assert f["spidarknet"].attrs["source_file"] == str(other)
        assert f[f"{DET}/tags"][()].tolist() == [0, 0, 1]
    assert (tmp_path / "a.lst").read_text().splitlines() == [f"{small_cxi} //0", f"{other} //2"]


# -- EMC -------------------------------------------------------------------------------------------

def read_emc_independently(path):
    """Sparse photons.emc as Dragonfly defines it: duaneloh/Dragonfly src/dataset.c
    (parse_dataset) and dragonfly-spi emcfile.pyx (EMCReader._parse_binaryheader /
    _read_binaryframe): a 1024-byte header of int32 (num_data, num_pix, type 0 = sparse),
    then int32 ones[num_data], multi[num_data], place_ones[sum ones], place_multi[sum multi],
    count_multi[sum multi].  Returns (header, dense frames (num_data, num_pix))."""
    header, rows = emc_rows(path)
    return header, np.array(list(rows), dtype=np.int64).reshape(int(header[0]), int(header[1]))


def emc_rows(path):
    """(header, iterator of the dense frames, one at a time) of photons.emc, read as
    :func:`read_emc_independently` describes: for files too large to hold densely."""
    blob = open(path, "rb").read()
    header = np.frombuffer(blob[:1024], dtype="<i4")
    num_data, num_pix = int(header[0]), int(header[1])
    body = np.frombuffer(blob[1024:], dtype="<i4")
    ones, multi = body[:num_data], body[num_data:2 * num_data]
    n1, nm = int(ones.sum()), int(multi.sum())
    rest = body[2 * num_data:]
    assert rest.size == n1 + 2 * nm, "file length disagrees with its counts"
    place_ones, place_multi, count_multi = rest[:n1], rest[n1:n1 + nm], rest[n1 + nm:]

    def rows():
        o = m = 0
        for d in range(num_data):
            frame = np.zeros(num_pix, dtype=np.int64)
            frame[place_ones[o:o + ones[d]]] += 1
            frame[place_multi[m:m + multi[d]]] += count_multi[m:m + multi[d]]
            assert np.all(count_multi[m:m + multi[d]] > 1)
            o += ones[d]
            m += multi[d]
            yield frame
    return header, rows()


@pytest.fixture(scope="module")
def adu_file(small_cxi, tmp_path_factory):
    """Frames 0-9 of small_cxi as float32 ADU (31.5 per photon, ±0.4 photon of noise), with a
    few negative and NaN pixels; geometry and mask copied.  Returns (path, photons, usable)."""
    path = tmp_path_factory.mktemp("adu") / "adu.cxi"
    rng = np.random.default_rng(4)
    with h5py.File(small_cxi, "r") as src, h5py.File(path, "w") as f:
        photons = src["/entry_1/data_1/data"][:10].astype(np.int64)
        usable = src[f"{DET}/mask_shared"][()] == 0
        adu = (photons + rng.uniform(-0.4, 0.4, photons.shape)) * ADU
        adu[:, 5, 5] = -3 * ADU                      # negative: no photons
        adu[:, 6, 6] = np.nan                        # broken readout: no photons
        photons[:, 5, 5] = photons[:, 6, 6] = 0
        f["cxi_version"] = 150
        f.create_dataset(f"{DET}/data", data=adu.astype(np.float32), chunks=(1, 1024, 1024))
        for name in ("distance", "x_pixel_size", "y_pixel_size", "corner_position", "mask_shared"):
            f[f"{DET}/{name}"] = src[f"{DET}/{name}"][()]
        f[f"{SRC}/wavelength"] = src[f"{SRC}/wavelength"][()]
        f["/entry_1/data_1/data"] = h5py.SoftLink(f"{DET}/data")
    return path, photons, usable


@pytest.fixture(scope="module")
def exported_emc(adu_file, tmp_path_factory):
    path, photons, usable = adu_file
    root = tmp_path_factory.mktemp("emc")
    scores = np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.95, 0.3, 0.6, 0.05, 0.55])
    hits_csv = root / "hits.csv"
    hit_list(hits_csv, keys_of(path, range(10)), scores)
    out = root / "emc"
    assert export_emc.main([str(hits_csv), "--out", str(out), "--adu-per-photon", str(ADU), "-q"]) == 0
    return out, hits_csv, scores >= 0.5


def test_emc_round_trip_with_an_independent_reader(exported_emc, adu_file):
    out, _, selected = exported_emc
    _, photons, usable = adu_file
    header, frames = read_emc_independently(out / "photons.emc")
    assert header[0] == selected.sum() == 6 and header[1] == 1024 * 1024 and header[2] == 0
    assert not header[3:].any()
    expected = np.where(usable, photons, 0)[selected].reshape(6, -1)
    np.testing.assert_array_equal(frames, expected)
    assert frames.sum() > 1000 and (frames > 1).any()     # both single and multi-photon pixels
    meta = json.loads((out / "export.json").read_text())
    assert meta["frames_in_photons_emc"] == 6 and meta["frames_in_hit_list"] == 10
    assert meta["mean_photons_per_frame"] == pytest.approx(frames.sum() / 6)


def test_emc_detector_file_geometry_and_mask(exported_emc, adu_file, small_cxi):
    out, _, _ = exported_emc
    _, _, usable = adu_file
    with h5py.File(small_cxi, "r") as src:
        distance = src[f"{DET}/distance"][()]
        pixel = src[f"{DET}/x_pixel_size"][()]
        corner = src[f"{DET}/corner_position"][()]
    cx, cy = -corner[0] / pixel - 0.5, -corner[1] / pixel - 0.5
    with h5py.File(out / "detector.h5", "r") as f:
        q = np.stack([f["qx"][()], f["qy"][()], f["qz"][()]], axis=1)
        corr, mask = f["corr"][()], f["mask"][()]
        detd, radius = f["detd"][()], f["ewald_rad"][()]
    assert q.shape == (1024 * 1024, 3) and mask.dtype == np.uint8
    assert detd == pytest.approx(distance / pixel) and radius == pytest.approx(detd)
    np.testing.assert_array_equal(mask, np.where(usable.ravel(), 0, 2))
    # |q| = R * 2 sin(theta / 2) with tan(theta) = r / distance, for a few pixels
    for row, col in [(0, 0), (100, 900), (700, 300), (1023, 511)]:
        r = np.hypot((col - cx) * pixel, (row - cy) * pixel)
        theta = np.arctan2(r, distance)
        t = row * 1024 + col
        assert np.linalg.norm(q[t]) == pytest.approx(radius * 2 * np.sin(theta / 2), rel=1e-9)
        assert np.sign(q[t, 0]) == np.sign(col - cx) and np.sign(q[t, 1]) == np.sign(row - cy)
    assert q[:, 2].max() <= 0
    # x-polarised: at equal distance from the beam, less signal along x than along y
    along_x = 512 * 1024 + 900
    along_y = 900 * 1024 + 512
    assert corr[along_x] < corr[along_y]


def test_emc_blacklist_and_frame_table(exported_emc):
    out, _, selected = exported_emc
    blacklist = (out / "blacklist.dat").read_text().split("\n")
    assert blacklist[-1] == "" and blacklist[:-1] == ["0" if s else "1" for s in selected]
    rows = list(csv.DictReader(open(out / "frames.csv")))
    assert [int(r["index"]) for r in rows] == list(range(10))
    assert [int(r["emc_row"]) for r in rows] == [int(k) for k in np.where(selected, np.cumsum(selected) - 1, -1)]


def test_emc_all_frames_lines_up_with_the_blacklist(exported_emc, adu_file, tmp_path):
    _, hits_csv, selected = exported_emc
    _, photons, usable = adu_file
    out = tmp_path / "all"
    assert export_emc.main([str(hits_csv), "--out", str(out), "--adu-per-photon", str(ADU),
                            "--all-frames", "-q"]) == 0
    header, frames = read_emc_independently(out / "photons.emc")
    assert header[0] == 10
    np.testing.assert_array_equal(frames, np.where(usable, photons, 0).reshape(10, -1))
    blacklist = [int(v) for v in (out / "blacklist.dat").read_text().split()]
    assert blacklist == [0 if s else 1 for s in selected]
    assert json.loads((out / "export.json").read_text())["dragonfly_config"]["blacklist_file"] == "blacklist.dat"


def test_emc_bad_inputs(small_cxi, tmp_path, capsys):
    nothing = tmp_path / "none.csv"
    hit_list(nothing, keys_of(small_cxi, range(3)), [0.1, 0.2, 0.3])
    assert export_emc.main([str(nothing), "--out", str(tmp_path / "e1"), "-q"]) == 1
    assert "selects none" in capsys.readouterr().err and not (tmp_path / "e1").exists()
    bare = tmp_path / "bare.cxi"                       # frames without any geometry
    with h5py.File(bare, "w") as f:
        f["/entry_1/data_1/data"] = np.ones((2, 8, 8), dtype=np.uint16)
    bare_hits = tmp_path / "bare.csv"
    hit_list(bare_hits, keys_of(bare, range(2)), [0.9, 0.9])
    assert export_emc.main([str(bare_hits), "--out", str(tmp_path / "e2"), "-q"]) == 1
    assert "--distance" in capsys.readouterr().err and not (tmp_path / "e2").exists()
    assert export_emc.main([str(bare_hits), "--out", str(tmp_path / "e3"), "-q", "--distance", "0.1",
                            "--pixel-size", "75e-6"]) == 0
    _, frames = read_emc_independently(tmp_path / "e3" / "photons.emc")
    assert frames.shape == (2, 64) and np.all(frames == 1)
    assert export_emc.main([str(bare_hits), "--out", str(tmp_path / "e4"), "-q",
                            "--adu-per-photon", "-2"]) == 1
    assert "positive" in capsys.readouterr().err


def test_emc_with_dragonfly_own_reader(exported_emc, adu_file):
    if importlib.util.find_spec("dragonfly") is None:
        if os.environ.get("SPIDARKNET_REQUIRE_DRAGONFLY"):
            pytest.fail(DRAGONFLY_INSTALL)
        pytest.skip(DRAGONFLY_INSTALL)
    import dragonfly
    from dragonfly.emcfile import EMCReader
    out, _, selected = exported_emc
    _, photons, usable = adu_file
    det = dragonfly.Detector(str(out / "detector.h5"))
    assert det.num_pix == 1024 * 1024
    np.testing.assert_array_equal(det.mask, usable.ravel())
    reader = EMCReader(str(out / "photons.emc"), det)
    assert reader.num_frames == selected.sum()
    expected = np.where(usable, photons, 0)[selected]
    for row in range(reader.num_frames):
        np.testing.assert_array_equal(reader.get_frame(row, raw=True), expected[row].ravel())
    # Dragonfly's assembled view puts x (our column) first: the frame, transposed
    np.testing.assert_array_equal(np.asarray(reader.get_frame(0).data), expected[0].T)


# -- a real detect output, end to end ---------------------------------------------------------------

def test_a_real_hit_list_through_evaluate_report_export_hits_and_export_emc(heldout_hits, heldout_cxi,
                                                                             tmp_path, capsys):
    """The trained session model's hit list of the held-out file, handed on by each command's
    main(argv): every output agrees with the hit list's selection."""
    from spidarknet.cli import evaluate, report
    hits = read_hits(heldout_hits)
    selected = hits.hits
    chosen = [k for k, s in zip(hits.keys, selected) if s]
    n = len(chosen)
    with h5py.File(heldout_cxi, "r") as f:
        label = f["/truth/label"][()].astype(bool)[[k.index for k in hits.keys]]
        usable = f[f"{DET}/mask_shared"][()] == 0
    assert len(hits) == 120 and 0 < n < len(hits) and n == hits.n_hits
    tp = int(np.sum(selected & label))
    # evaluate: the selected count and the confusion at the hit list's own threshold
    assert evaluate.main([str(heldout_hits), "--truth-dataset", "/truth/label", "--out",
                          str(tmp_path / "e.json")]) == 0
    ev = json.loads((tmp_path / "e.json").read_text())
    at = ev["at_threshold"]
    assert ev["frames"] == len(hits) and at["selected"] == at["tp"] + at["fp"] == n
    assert at["tp"] == tp and at["fn"] == int(label.sum()) - tp and ev["positives"] == int(label.sum())
    # report: the same counts on its summary line and in report.json
    capsys.readouterr()
    assert report.main(["--hits", str(heldout_hits), "--truth-dataset", "/truth/label", "--out",
                        str(tmp_path / "report"), "--tiles", "4", "--max-profiles", "8"]) == 0
    assert f"{n} of {len(hits)} frames selected" in capsys.readouterr().out
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["frames"] == len(hits) and summary["selected"] == n
    assert summary["threshold"] == pytest.approx(hits.threshold)
    assert summary["truth"]["at_threshold"]["tp"] == tp and summary["truth"]["at_threshold"]["selected"] == n
    assert (tmp_path / "report" / "index.html").is_file()
    # export-hits: the event list names exactly the selected frames, in order
    assert export_hits.main([str(heldout_hits), "--lst", str(tmp_path / "hits.lst"), "-q"]) == 0
    assert (tmp_path / "hits.lst").read_text().splitlines() == [
        f"{os.path.abspath(k.file)} //{k.index}" for k in chosen]
    # export-emc: one photons.emc row per selected frame, that frame's photons on its usable pixels
    emc = tmp_path / "emc"
    assert export_emc.main([str(heldout_hits), "--out", str(emc), "-q"]) == 0
    header, rows = emc_rows(emc / "photons.emc")
    assert header[0] == n and header[1] == usable.size
    with h5py.File(heldout_cxi, "r") as f:
        data = f["/entry_1/data_1/data"]
        got = 0
        for key, row in zip(chosen, rows):
            np.testing.assert_array_equal(row, np.where(usable, data[key.index], 0).ravel(),
                                          err_msg=f"photons.emc row {got} is not frame {key.index}")
            got += 1
    assert got == n
    table = list(csv.DictReader(open(emc / "frames.csv")))
    assert [int(r["index"]) for r in table] == [k.index for k in hits.keys]
    assert [int(r["emc_row"]) for r in table] == [int(v) for v in np.where(selected, np.cumsum(selected) - 1, -1)]
    meta = json.loads((emc / "export.json").read_text())
    assert meta["frames_in_photons_emc"] == n and meta["frames_in_hit_list"] == len(hits)
