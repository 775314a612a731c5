"""Model-kind detection from model_index.json, denoiser configs and single-file tensor names."""

from __future__ import annotations

import json

import pytest
import torch

from diffsim.backbones.detect import detect_kind, kind_from_configs, require_kind
from diffsim.errors import ConfigError, ModelNotFoundError


def test_kind_from_configs():
    assert kind_from_configs({"_class_name": "StableDiffusionXLPipeline"}) == "sdxl"
    assert kind_from_configs({"_class_name": "DiTPipeline"}) == "dit"
    assert kind_from_configs({"_class_name": "StableDiffusionPipeline"}) == "sd"
    assert kind_from_configs(None, {"unet": {"addition_embed_type": "text_time"}}) == "sdxl"
    assert kind_from_configs(None, {"unet": {"addition_embed_type": None}}) == "sd"
    dit = {"_class_name": "Transformer2DModel", "norm_type": "ada_norm_zero"}
    assert kind_from_configs(None, {"unet": None, "transformer": dit}) == "dit"
    assert kind_from_configs(None, {"transformer": {"norm_type": "layer_norm"}}) is None
    assert kind_from_configs(None) is None


def test_folders(tiny_sd_path, tmp_path):
    assert detect_kind(tiny_sd_path) == "sd"
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"addition_embed_type": "text_time"}))
    assert detect_kind(tmp_path) == "sdxl"  # no model_index.json: the U-Net config decides
    other = tmp_path / "flux"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ConfigError, match="FluxPipeline.*expected a Stable Diffusion"):
        require_kind(other, ("sd", "sdxl"), "DiffSim-S")


def test_single_safetensors_file_by_tensor_names(tmp_path):
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES
    from safetensors.torch import save_file

    xl = tmp_path / "xl.safetensors"
    save_file({CHECKPOINT_KEY_NAMES["xl_base"]: torch.zeros(1)}, str(xl))
    v1 = tmp_path / "v1.safetensors"
    save_file({CHECKPOINT_KEY_NAMES["v1"]: torch.zeros(1)}, str(v1))
    assert detect_kind(xl) == "sdxl" and detect_kind(v1) == "sd"
    with pytest.raises(ConfigError, match="Stable Diffusion XL.*diffsim-s-sdxl"):
        require_kind(xl, ("sd",), "DiffSim-C")


def test_uncached_hub_id_offline_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"nobody/no-such-model.*HF_HUB_OFFLINE=1.*model='/path") as info:
        detect_kind("nobody/no-such-model")
    assert "--model PATH" in info.value.for_cli()
