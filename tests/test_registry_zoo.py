"""Registry and `diffsim list`: every paper metric registered with its metadata, errors, CLI output."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from diffsim import ConfigError, create_metric, list_metrics, metric_info
from diffsim.cli.main import cli, main

PAPER_TABLES = [
    "lpips-vgg-512",
    "gram",
    "clip-i",
    "dinov2",
    "ffa",
    "clip-aas",
    "dinov2-aas",
    "diffsim-s",
    "ensemble",
    "diffsim-feat",
    "clip-feat",
    "dinov2-feat",
]


def test_every_table_metric_is_registered():
    names = list_metrics()
    for n in PAPER_TABLES:
        assert n in names
        info = metric_info(n)
        assert info.backbone and info.paper and info.measures and info.description
    assert not metric_info("lpips").higher_is_better and metric_info("clip-aas").higher_is_better
    assert metric_info("lpips").name == "lpips-vgg"  # an alias, not a second entry
    assert metric_info("diffsim-s-style").defaults["step"] == 900
    assert list_metrics("dinov2*") == ["dinov2", "dinov2-aas", "dinov2-feat"]


def test_unknown_name_suggests():
    with pytest.raises(ConfigError, match="Did you mean.*clip-aas"):
        create_metric("clip-as")
    with pytest.raises(ConfigError, match="unknown metric"):
        metric_info("nothing-like-it")


def test_bad_override_is_clear(tiny_clip_path):
    with pytest.raises(ConfigError, match=r"unknown setting 'no_such_option'.*valid settings: .*scale"):
        create_metric("clip-i", model=tiny_clip_path, device="cpu", no_such_option=1)
    with pytest.raises(ConfigError, match="did you mean batch_size"):
        create_metric("clip-i", model=tiny_clip_path, device="cpu", batchsize=2)


def test_cli_list_table_and_json():
    r = CliRunner().invoke(cli, ["list"])
    assert r.exit_code == 0, r.output
    for n in ("clip-aas", "lpips-alex", "diffsim-s-style", "lower=similar"):
        assert n in r.output
    r = CliRunner().invoke(cli, ["list", "--json", "lpips*"])
    rows = json.loads(r.output)
    assert {x["name"] for x in rows} == {"lpips-alex", "lpips-vgg", "lpips-vgg-512"}
    assert [x["aliases"] for x in rows if x["name"] == "lpips-vgg"] == [["lpips"]]
    assert all(x["higher_is_better"] is False for x in rows)
    assert main(["list", "nomatch*"]) == 0
