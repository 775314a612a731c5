"""Model loading: the real from_pretrained path on a saved folder, and clear errors otherwise."""

from __future__ import annotations

import shutil

import pytest
import torch

from diffsim import DiffSim, ModelNotFoundError, StableDiffusionBackbone
from diffsim.backbones.loading import classify, load_unet_skeleton


def test_folder_loads_through_from_pretrained(tiny_sd_path):
    bb = StableDiffusionBackbone.from_pretrained(tiny_sd_path, device="cpu", dtype="float32", share=False)
    assert bb.source == str(tiny_sd_path) and bb.latent_factor == 8
    assert bb.parts.vae.decoder is None  # never decodes
    assert type(bb.scheduler).__name__ == "PNDMScheduler"
    assert not any(p.requires_grad for p in bb.unet.parameters())


def test_backbones_are_shared(tiny_sd_path):
    a = StableDiffusionBackbone.from_pretrained(tiny_sd_path, device="cpu", dtype="float32")
    b = StableDiffusionBackbone.from_pretrained(tiny_sd_path, device="cpu", dtype="float32")
    assert a is b


def test_half_precision_scores_are_not_quantised(tiny_sd_path, image_files):
    m = DiffSim.from_pretrained(tiny_sd_path, size=64, dtype="bfloat16", device="cpu")
    assert m.backbone.unet.dtype == torch.bfloat16
    s = m.score(image_files[0], image_files[1:4])
    assert s.dtype == torch.float32 and len(set(s.tolist())) == 3


def test_missing_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist.*diffusers folder"):
        DiffSim.from_pretrained(tmp_path / "nowhere" / "model")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        classify("./weights/sd15.safetensors")


def test_incomplete_folder(tmp_path, tiny_sd_path):
    shutil.copytree(tiny_sd_path / "unet", tmp_path / "unet")
    with pytest.raises(ModelNotFoundError, match=r"missing vae/, text_encoder/, tokenizer/, scheduler/.*found: unet"):
        DiffSim.from_pretrained(tmp_path)


def test_not_a_checkpoint_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelNotFoundError, match="not a checkpoint"):
        DiffSim.from_pretrained(tmp_path / "notes.txt")


def test_corrupt_single_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelNotFoundError, match="single-file checkpoint .*model.safetensors"):
        DiffSim.from_pretrained(tmp_path / "model.safetensors")


def test_hub_id_offline_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match=r"nobody/no-such-model.*HF_HUB_OFFLINE=1.*model='/path") as info:
        DiffSim.from_pretrained("nobody/no-such-model")
    assert "--model" not in str(info.value) and "--model PATH" in info.value.for_cli()  # hints fit where shown


def test_skeleton_reads_config_without_weights(tiny_sd_path):
    unet, factor = load_unet_skeleton(tiny_sd_path)
    assert factor == 8 and next(unet.parameters()).device.type == "meta"
