"""The HTML report, rendered in real headless Chromium: it loads and every figure shows."""

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from xml.etree import ElementTree

import h5py
import numpy as np
import pytest
from PIL import Image

from spidarknet.cli import report as report_cmd
from spidarknet.frames.source import FrameKey
from spidarknet.hits import HitList

DATA = "/entry_1/data_1/data"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHECK_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (im) { return !im.complete || im.naturalWidth === 0; });
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-broken", broken.map(function (im) { return im.getAttribute("src"); }).join(" "));
  document.body.setAttribute("data-width", String(document.documentElement.scrollWidth));
  document.body.setAttribute("data-client", String(document.documentElement.clientWidth));
});
</script>
"""


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium; its absence is a failure that says how to install it."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is needed to render the report: install the Debian package 'chromium' "
                "(apt-get install -y chromium)", pytrace=False)


def _browser_args(chromium, profile):
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}"]


def render_checked(chromium, report_dir, tmp_path) -> dict:
    """Load a copy of index.html with a script that records which images failed to load."""
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    probe = report_dir / "_probe.html"
    probe.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    try:
        done = subprocess.run(_browser_args(chromium, tmp_path / "profile")
                              + ["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                              capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    assert done.returncode == 0, done.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", done.stdout)
    assert body, f"no <body> in the DOM Chromium dumped: {done.stdout[:500]!r}"
    attributes = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))
    assert "images" in attributes, "the check script did not run: " + body.group(0)
    return attributes


@pytest.fixture(scope="module")
def report_inputs(small_cxi, tmp_path_factory):
    """A hit list from the truth plus noise, with boxes around each pattern, and a size table."""
    root = tmp_path_factory.mktemp("report")
    with h5py.File(small_cxi) as f:
        labels = f["truth/label"][()].astype(bool)
        extent = np.maximum(f["truth/extent_px"][()], 24.0)
        cx, cy = f["truth/centre_x_px"][()], f["truth/centre_y_px"][()]
    rng = np.random.default_rng(8)
    scores = np.clip(0.5 * labels + rng.normal(0.25, 0.17, len(labels)), 0, 1)
    boxes = np.stack([cx - extent, cy - extent, 2 * extent, 2 * extent], axis=1)
    keys = [FrameKey(str(small_cxi), DATA, i) for i in range(len(labels))]
    hits = HitList(keys, scores, boxes, 0.5, {"backend": "opencv"})
    hits.write_csv(root / "hits.csv")
    return root, hits, labels


@pytest.mark.slow
def test_report_with_truth_renders_in_chromium(report_inputs, chromium, tmp_path, capsys):
    root, hits, labels = report_inputs
    out = tmp_path / "report"
    assert report_cmd.main(["--hits", str(root / "hits.csv"), "--truth-dataset", "/truth/label",
                            "--out", str(out), "--tiles", "6"]) == 0
    assert "wrote" in capsys.readouterr().out
    page = (out / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    expected = {"pr_curve.png", "roc_curve.png", "scores.png", "montage_top.png", "montage_borderline.png",
                "montage_negatives.png", "montage_missed.png", "profiles.png", "sizes.png"}
    assert expected <= set(sources)
    for name in sources:
        with Image.open(out / name) as im:
            assert im.size[0] >= 200 and im.size[1] >= 100
            assert np.asarray(im.convert("L")).std() > 5          # not a blank picture
    summary = json.loads((out / "report.json").read_text())
    selected = hits.scores >= 0.5
    assert summary["selected"] == selected.sum()
    assert summary["truth"]["at_threshold"]["tp"] == int(np.sum(selected & labels))
    assert summary["sizes"]["fitted"] >= 0.6 * int(np.sum(selected & labels))
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]   # no staging left behind
    checked = render_checked(chromium, out, tmp_path)
    assert int(checked["images"]) == len(sources)
    assert checked["broken"] == "", f"images that did not load: {checked['broken']}"
    assert int(checked["width"]) <= int(checked["client"])   # nothing forces a horizontal scroll
    shot = tmp_path / "shot.png"
    done = subprocess.run(_browser_args(chromium, tmp_path / "profile2")
                          + ["--window-size=1280,2400", f"--screenshot={shot}", (out / "index.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    with Image.open(shot) as im:
        grey = np.asarray(im.convert("L"))
    assert grey.std() > 20                           # text and figures, not an empty page


@pytest.mark.slow
def test_report_without_truth_and_with_a_size_table(report_inputs, small_cxi, chromium, tmp_path):
    root, hits, _ = report_inputs
    sizes = tmp_path / "sizes.csv"
    from spidarknet.cli import size as size_cmd
    assert size_cmd.main([str(small_cxi), "--hits", str(root / "hits.csv"), "--out", str(sizes), "--quiet"]) == 0
    out = tmp_path / "plain"
    assert report_cmd.main(["--hits", str(root / "hits.csv"), "--sizes", str(sizes), "--out", str(out),
                            "--tiles", "4"]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "pr_curve.png" not in page and "montage_negatives.png" not in page
    assert "scores.png" in page and "profiles.png" in page and "sizes.png" in page
    summary = json.loads((out / "report.json").read_text())
    assert summary["sizes"]["source"] == str(sizes) and "truth" not in summary
    checked = render_checked(chromium, out, tmp_path)
    assert checked["broken"] == "" and int(checked["images"]) >= 5


def test_report_bad_input_leaves_nothing_behind(report_inputs, small_cxi, tmp_path, capsys):
    root, hits, _ = report_inputs
    out = tmp_path / "rep"
    out.mkdir()
    (out / "keep.txt").write_text("earlier report")
    assert report_cmd.main(["--hits", str(root / "hits.csv"), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "earlier report"
    # a hit list naming a frame file that is gone
    gone = tmp_path / "gone.cxi"
    shutil.copy(small_cxi, gone)
    HitList([FrameKey(str(gone), DATA, i) for i in range(5)], np.linspace(0.2, 0.9, 5), np.zeros((5, 4)),
            0.5).write_csv(tmp_path / "gone.csv")
    os.remove(gone)
    new = tmp_path / "new"
    assert report_cmd.main(["--hits", str(tmp_path / "gone.csv"), "--out", str(new)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and err.count("\n") == 1
    assert not new.exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    assert report_cmd.main(["--hits", str(root / "hits.csv"), "--truth-dataset", "/truth/nothing",
                            "--out", str(new)]) == 1
    assert "no truth dataset" in capsys.readouterr().err
    assert not new.exists()


def test_report_by_kind_and_photon_count_of_a_real_hit_list(heldout_hits, heldout_cxi, chromium, tmp_path,
                                                            capsys):
    """detect with the trained model, then a report with --by /truth/kind: the table, its
    chart and the photon-count table are on the page and the chart loads."""
    out = tmp_path / "by"
    assert report_cmd.main(["--hits", str(heldout_hits), "--truth-dataset", "/truth/label", "--by", "/truth/kind",
                            "--out", str(out), "--tiles", "4", "--max-profiles", "20"]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    with h5py.File(heldout_cxi) as f:
        kind = f["truth/kind"][()]
    assert "<h2>By /truth/kind</h2>" in page and '<table class="by">' in page
    table = page[page.index('<table class="by">'):]
    table = table[:table.index("</table>")]
    for name in np.unique(kind):
        assert f"<td>{name.decode()}</td><td class=\"n\">{int(np.sum(kind == name))}</td>" in table
    assert '<img src="by_truth_kind.png"' in page
    with Image.open(out / "by_truth_kind.png") as im:
        assert im.size[0] >= 400 and np.asarray(im.convert("L")).std() > 5
    assert "<h2>By photon count</h2>" in page and '<table class="photons">' in page
    summary = json.loads((out / "report.json").read_text())
    by_kind = summary["truth"]["by"]["/truth/kind"]["categories"]
    assert sum(c["frames"] for c in by_kind) == summary["frames"]
    assert sum(c["selected"] for c in by_kind) == summary["selected"]
    assert sum(b["frames"] for b in summary["truth"]["photon_bins"]["bins"]) == summary["frames"]
    checked = render_checked(chromium, out, tmp_path)
    assert checked["broken"] == "", f"images that did not load: {checked['broken']}"
    # --by without the truth, or naming nothing that exists: one clear error, no folder
    capsys.readouterr()
    assert report_cmd.main(["--hits", str(heldout_hits), "--by", "/truth/kind", "--out", str(tmp_path / "x")]) == 1
    assert "needs the truth" in capsys.readouterr().err
    assert report_cmd.main(["--hits", str(heldout_hits), "--truth-dataset", "/truth/label", "--by", "/truth/knd",
                            "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --by /truth/knd") and "/truth/kind" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


VOID_ELEMENTS = {"meta", "img", "br", "hr", "link", "input", "source", "wbr"}


class _PageChecker(HTMLParser):
    """Every element closed in order, and the files that <img src> and <a href> name."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.open, self.errors, self.images, self.links = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "a":
            self.links.append(attrs["href"])
        if tag not in VOID_ELEMENTS:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()


def test_report_figures_are_png_and_svg_and_the_page_is_well_formed(report_inputs, tmp_path):
    """Each plot is written as PNG (shown) and SVG (for restyling, text kept as text) and the
    page links it; the page's elements nest, and every image and link it names exists, at
    the size the page states."""
    root, _, _ = report_inputs
    out = tmp_path / "report"
    assert report_cmd.main(["--hits", str(root / "hits.csv"), "--truth-dataset", "/truth/label",
                            "--by", "/truth/kind", "--out", str(out), "--tiles", "3", "--max-profiles", "8",
                            "--quiet"]) == 0
    plots = {"pr_curve", "roc_curve", "scores", "profiles", "sizes", "by_truth_kind"}
    for name in plots:
        with Image.open(out / f"{name}.png") as im:
            assert im.format == "PNG" and im.size[0] >= 400
        svg = ElementTree.parse(out / f"{name}.svg").getroot()
        assert svg.tag == "{http://www.w3.org/2000/svg}svg"
        assert any(e.tag.endswith("text") for e in svg.iter()), f"{name}.svg keeps no text"
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    checker = _PageChecker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.open == [], (checker.errors, checker.open)
    assert {im["src"] for im in checker.images} >= {f"{name}.png" for name in plots}
    for im in checker.images:
        with Image.open(out / im["src"]) as shown:
            assert shown.size == (int(im["width"]), int(im["height"])), im["src"]
        assert im["alt"]
    assert set(checker.links) == {f"{name}.svg" for name in plots}
    assert all((out / link).is_file() for link in checker.links)


def _vertical_lines(fig) -> list:
    """The axes' vertical lines (axvline) as (x, label, line style, zorder)."""
    ax = fig.axes[0]
    out = []
    for line in ax.get_lines():
        x = np.asarray(line.get_xdata(), dtype=float)
        if len(x) == 2 and x[0] == x[1]:
            out.append((float(x[0]), line.get_label(), line.get_linestyle(), line.get_zorder()))
    return out


def test_score_histogram_keeps_the_threshold_visible_beside_max_f1():
    """The card's threshold is not hidden under the max-F1 line: where they coincide one line
    names both; apart, both are drawn in different styles above the bars."""
    from spidarknet.report import page, plot
    edges = np.linspace(0.0, 1.0, 41)
    series = [("all frames: 30", np.arange(40) % 3 + 1, plot.BLUE)]
    same = page._threshold_lines(0.42, 0.42 + 1e-4, edges[1] - edges[0])
    lines = _vertical_lines(plot.score_histogram(edges, series, same))
    assert len(lines) == 1
    assert "threshold 0.420" in lines[0][1] and "max F1 0.420" in lines[0][1]
    apart = page._threshold_lines(0.42, 0.61, edges[1] - edges[0])
    lines = _vertical_lines(plot.score_histogram(edges, series, apart))
    assert sorted(x for x, *_ in lines) == [0.42, 0.61]
    assert len({style for _, _, style, _ in lines}) == 2
    assert all(z > 2 for *_, z in lines)                    # above the histogram's bars
    assert [label for _, label, _, _ in _vertical_lines(plot.score_histogram(
        edges, series, page._threshold_lines(float("nan"), 0.5, 0.025)))] == ["max F1 0.500"]


def test_size_histogram_draws_the_median_its_legend_names():
    from spidarknet.report import plot
    diameters = np.array([58.0, 61.0, 62.5, 63.0, 66.0, 70.0, 71.0])
    fig = plot.size_histogram(diameters, np.arange(55.0, 76.0, 2.0), (60.0, 75.0))
    lines = _vertical_lines(fig)
    assert [(x, label) for x, label, *_ in lines] == [(63.0, "median 63.0 nm")]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "median 63.0 nm" in legend


def test_report_states_each_panels_tile_size_once(report_inputs, tmp_path):
    """The page names no tile size that a panel's own note contradicts: the general note
    gives none, each panel its own (the boxes of report_inputs make some panels larger)."""
    root, _, _ = report_inputs
    out = tmp_path / "report"
    assert report_cmd.main(["--hits", str(root / "hits.csv"), "--truth-dataset", "/truth/label",
                            "--out", str(out), "--tiles", "3", "--max-profiles", "4", "--quiet"]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    frames = page[page.index("<h2>Frames</h2>"):page.index("<h2>Radial profiles")]
    sections = frames.split("<h3>")
    assert not re.search(r"\d+ × \d+", sections[0])         # the general note
    sides = []
    for section in sections[1:]:
        stated = re.findall(r"Tiles: (\d+) × (\d+) pixels", section)
        assert len(stated) == 1 and stated[0][0] == stated[0][1], section[:300]
        sides.append(int(stated[0][0]))
    assert len(sides) == 4 and min(sides) >= 256
    assert any(side > 256 for side in sides)                # a panel grown to fit its boxes says so
