"""The darknet-cli backend on short image lists.

``darknet detector valid`` starts loading its first 4 images before it looks at the
list's length: a chunk of 1-3 frames (a short last chunk, or one the prefilter thinned
out) used to crash it with SIGSEGV.  Every chunk size must score as OpenCV does.
"""

import numpy as np
import pytest

from spidarknet.cli import detect
from spidarknet.engine.backends import OpenedDetector
from spidarknet.engine.model import builtin_weights, load_model
from spidarknet.frames.source import FrameSource
from spidarknet.hits import read_hits
from spidarknet.preprocess import Preprocessor

#: darknet-cli lists nothing below darknet's 0.005: compare above it
LISTED = 0.006


@pytest.fixture(scope="module")
def model():
    return load_model(builtin_weights())


@pytest.fixture(scope="module")
def images(model, small_cxi):
    """The 7 frames of small_cxi the built-in model scores highest, preprocessed for it."""
    pre = Preprocessor(model.preprocessing)
    frames = np.concatenate([pre.process(chunk).images
                             for chunk in FrameSource([str(small_cxi)]).chunks(30, roi=pre.roi)])
    with OpenedDetector(model, "opencv") as opencv:
        scores = opencv.detect(frames).scores
    return frames[np.argsort(scores)[::-1][:7]]


@pytest.mark.parametrize("n", range(1, 8))
def test_a_chunk_of_n_frames_scores_as_opencv_does(model, images, n):
    with OpenedDetector(model, "opencv") as opencv:
        ref = opencv.detect(images[:n])
    with OpenedDetector(model, "darknet-cli") as darknet:
        got = darknet.detect(images[:n])
    assert len(got.scores) == n
    assert ref.scores[0] > 0.5  # real work: the best frame is a confident hit
    above = ref.scores > LISTED
    assert np.abs(got.scores[above] - ref.scores[above]).max() < 1e-3
    assert np.all(got.scores[~above] < LISTED)
    assert np.abs(got.boxes[above] - ref.boxes[above]).max() < 1e-3


def test_no_frames_start_no_darknet(model):
    with OpenedDetector(model, "darknet-cli") as darknet:
        darknet.darknet = None  # starting darknet would fail on this
        got = darknet.detect(np.zeros((0, 128, 128, 3), dtype=np.uint8))
    assert got.scores.shape == (0,) and got.boxes.shape == (0, 4)


def test_detect_with_chunks_the_prefilter_thins_out(small_cxi, tmp_path):
    """The user's case: chunks of 3 frames, of which the prefilter leaves 0-3 for darknet."""
    hit_lists = {}
    for backend in ("opencv", "darknet-cli"):
        out = tmp_path / f"{backend}.csv"
        assert detect.main([str(small_cxi), "--out", str(out), "--backend", backend, "--chunk", "3",
                            "--frames", "0:30", "--quiet"]) == 0
        hit_lists[backend] = read_hits(out)
    ref, got = hit_lists["opencv"], hit_lists["darknet-cli"]
    assert ref.keys == got.keys and len(got) == 30
    above = ref.scores > LISTED
    assert above.sum() >= 3
    assert np.abs(got.scores[above] - ref.scores[above]).max() < 1e-3
    assert np.array_equal(ref.hits, got.hits)
