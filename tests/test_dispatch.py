"""Kind dispatch as data: diffsim.load / create_metric("auto") build the registered metric for a model's kind."""

from __future__ import annotations

import pytest

import diffsim
from diffsim import ConfigError, create_metric
from diffsim.backbones.kinds import kinds
from diffsim.metrics.diffsim_c import DiffSimC
from diffsim.metrics.diffsim_dit import DiffSimDiT
from diffsim.metrics.diffsim_s import DiffSim
from diffsim.metrics.diffsim_sdxl import DiffSimXL
from diffsim.registry import list_metrics

from .conftest import SIZE

CPU = {"device": "cpu", "dtype": "float32"}


def test_every_kind_names_a_registered_metric():
    named = {k.metric for k in kinds() if k.metric}
    assert {"diffsim-s", "diffsim-s-sdxl", "diffsim-dit", "diffsim-c"} <= named <= set(list_metrics())


def test_load_picks_the_metric_for_each_kind(tiny_sd_path, tiny_sdxl_path, tiny_dit_path, tiny_ip_adapter_path):
    sd = diffsim.load(tiny_sd_path, size=SIZE, **CPU)
    assert type(sd) is DiffSim and sd.name == "diffsim-s"
    xl = diffsim.load(tiny_sdxl_path, size=SIZE, **CPU)
    assert type(xl) is DiffSimXL and xl.name == "diffsim-s-sdxl"
    dit = create_metric("auto", model=tiny_dit_path, layer="block1", **CPU)
    assert type(dit) is DiffSimDiT and dit.name == "diffsim-dit"
    c = diffsim.load(tiny_sd_path, ip_adapter=str(tiny_ip_adapter_path), size=SIZE, **CPU)
    assert type(c) is DiffSimC and c.name == "diffsim-c"


def test_auto_needs_a_usable_model(tmp_path):
    with pytest.raises(ConfigError, match="needs model="):
        create_metric("auto")
    (tmp_path / "model_index.json").write_text('{"_class_name": "KandinskyPipeline"}')
    with pytest.raises(ConfigError, match="KandinskyPipeline"):
        diffsim.load(tmp_path)
