"""The darknet cfg reader/writer and the network templates."""

import pytest

from spidarknet.core.errors import ConfigError
from spidarknet.engine.cfg import DarknetCfg, configure_network, load_template
from spidarknet.engine.weights import grid_size


def test_parse_follows_darknets_blank_and_comment_rules():
    text = "# comment\n[net]\n width = 64 \nheight=64\n; other comment\n\n[convolutional]\nfilters = 30\n[region]\nclasses=1\n"
    cfg = DarknetCfg.parse(text)
    assert cfg.input_size == (64, 64, 3)
    assert [s.name for s in cfg.layers] == ["convolutional", "region"]
    assert cfg.layers[0].get_int("filters") == 30
    assert cfg.classes == 1


def test_round_trip_keeps_every_section_and_option():
    cfg = load_template("yolov2-spi")
    again = DarknetCfg.parse(cfg.dumps())
    assert [(s.name, s.options) for s in again.sections] == [(s.name, s.options) for s in cfg.sections]


@pytest.mark.parametrize("text, words", [
    ("[convolutional]\nfilters=1\n", "first section must be [net]"),
    ("width=3\n[net]\n", "before the first"),
    ("[net]\nwidth\n[region]\n", "expected key=value"),
    ("[net\nwidth=1\n", "malformed section"),
    ("[net]\nwidth=1\n", "no layers"),
])
def test_malformed_cfg_is_a_config_error(text, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        DarknetCfg.parse(text)


def test_seed_yolov2_matches_the_talks_layer_table():
    cfg = load_template("yolov2-spi")
    names = [s.name for s in cfg.layers]
    assert len(names) == 31  # layers 0..29 of the table plus the [region] head
    assert names.count("convolutional") == 22 and names.count("maxpool") == 5
    assert cfg.layers[25].name == "route" and cfg.layers[25].get("layers") == "16"
    assert cfg.layers[26].name == "reorg"
    assert cfg.layers[27].get("layers") == "26,24"
    assert cfg.layers[29].get_int("filters") == 30
    assert cfg.input_size == (416, 416, 3)
    assert grid_size(cfg) == 13


def test_configure_sets_size_head_and_scales_width_and_anchors():
    template = load_template("yolov2-tiny-spi")
    cfg = configure_network(template, size=256, classes=2, batch=8, max_batches=200, width_scale=0.25)
    assert cfg.input_size == (256, 256, 3)
    region_index, region = cfg.detection_layer()
    assert region.get("random") == "0" and region.get_int("classes") == 2
    assert cfg.layers[region_index - 1].get_int("filters") == 5 * (4 + 1 + 2)
    first = cfg.layers_named("convolutional")[0][1]
    assert first.get_int("filters") == 8  # 16 * 0.25 -> at least 8
    assert cfg.net.get("steps") == "160,180"
    t_anchors = template.detection_layer()[1].get_floats("anchors")
    assert region.get_floats("anchors")[0] == pytest.approx(t_anchors[0] * 2, rel=1e-3)
    # the template itself is untouched
    assert template.input_size == (128, 128, 3)


@pytest.mark.parametrize("kwargs, words", [
    ({"size": 100}, "multiple of 32"),
    ({"size": 128, "batch": 10, "subdivisions": 4}, "multiple of subdivisions"),
    ({"size": 128, "width_scale": 0}, "width-scale"),
    ({"size": 128, "jitter": 0.7}, "jitter"),
])
def test_configure_rejects_bad_values(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        configure_network(load_template("yolov2-tiny-spi"), **kwargs)


def test_jitter_is_set_on_the_detection_layer_only_when_given():
    template = load_template("yolov2-tiny-spi")
    kept = configure_network(template, size=128).detection_layer()[1].get_float("jitter")
    assert kept == template.detection_layer()[1].get_float("jitter")
    assert configure_network(template, size=128, jitter=0.0).detection_layer()[1].get_float("jitter") == 0.0


def test_unknown_template_suggests_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'yolov2-tiny-spi'"):
        load_template("yolov2-tiny-sp")
