"""DiffSim-C's backbone: tiny SD 1.5 + a tiny IP-Adapter Plus in the h94 layout, via load_ip_adapter."""

from __future__ import annotations

import pytest
import torch

from diffsim import aas, create_metric
from diffsim.aas import QKV
from diffsim.backbones.ip_adapter import IPAdapterBackbone
from diffsim.backbones.protocol import TextCondition
from diffsim.errors import ConfigError, LayerError, ModelNotFoundError

from .conftest import SIZE
from .reference_backbones import ip_qkv, pair_score
from .reference_impl import load_pixels


@pytest.fixture(scope="module")
def ip_path(tiny_ip_adapter_path):
    return tiny_ip_adapter_path


@pytest.fixture(scope="module")
def ipb(tiny_sd_path, ip_path):
    return IPAdapterBackbone.from_pretrained(tiny_sd_path, ip_adapter=ip_path, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def pixels(image_files):
    return torch.cat([load_pixels(str(p), SIZE) for p in image_files[:4]])


def _one(f: QKV, i: int) -> QKV:
    return QKV(f.q[i : i + 1], f.k[i : i + 1], f.v[i : i + 1])


def test_loaded_with_diffusers_load_ip_adapter(ipb):
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    procs = [p for n, p in ipb.unet.attn_processors.items() if n.endswith("attn2.processor")]
    assert procs and all(isinstance(p, IPAdapterAttnProcessor2_0) for p in procs)
    assert type(ipb.unet.encoder_hid_proj.image_projection_layers[0]).__name__ == "IPAdapterPlusImageProjection"


def test_features_are_q_and_ip_keys(ipb, pixels):
    path = ipb.resolve(["up0.cross"], kind="cross")[0]
    f = ipb.extract(pixels, [path], 500, "a photo", 0)[path]
    assert f.q.shape[:3] == f.k.shape[:3] == (4, 2, 2) and f.k.shape[-2] == 16  # 16 IP tokens per image
    assert torch.equal(f.k[0, 0], f.k[1, 0])  # unconditional branch: the zero image's tokens, shared
    assert not torch.allclose(f.k[0, 1], f.k[1, 1])  # conditional branch: each image's own tokens
    m = aas.score_matrix(f, f, "cosine")
    assert torch.allclose(m.diagonal(), torch.ones(4), atol=1e-6) and torch.allclose(m, m.T, atol=1e-6)
    off = m[~torch.eye(4, dtype=torch.bool)]
    assert off.max() < 0.999 and off.max() - off.min() > 5e-3


def test_batch_equals_single(ipb, pixels):
    path = ipb.resolve(["down1.cross"], kind="cross")
    f = ipb.extract(pixels, path, 500, "a photo", 0)[path[0]]
    for i in range(4):
        g = ipb.extract(pixels[i : i + 1], path, 500, "a photo", 0)[path[0]]
        for x, y in ((f.q[i], g.q[0]), (f.k[i], g.k[0]), (f.v[i], g.v[0])):
            assert torch.allclose(x, y, atol=5e-5 * float(x.abs().max()))


@pytest.mark.parametrize("layer, t, scale", [("up0.cross", 500, 0.5), ("down0.cross", 250, 1.0)])
def test_parity_with_float64_reference(ipb, pixels, layer, t, scale):
    path = ipb.resolve([layer], kind="cross")[0]
    f = ipb.extract(pixels[:2], [path], t, TextCondition("a photo", ip_scale=scale), 3)[path]
    got = float(aas.score(_one(f, 0), _one(f, 1), "cosine"))
    qa = ip_qkv(ipb.pipe, pixels[:1], path, t, "a photo", 3, scale)
    qb = ip_qkv(ipb.pipe, pixels[1:2], path, t, "a photo", 3, scale)
    assert got == pytest.approx(pair_score(qa, qb), abs=2e-5)
    for mine, ref in zip((f.q[0], f.k[0], f.v[0]), qa, strict=True):
        assert torch.allclose(mine.double(), ref, atol=1e-4 * float(ref.abs().max()))


def test_scale_changes_the_features_upstream(ipb, pixels):
    path = ipb.resolve(["up0.cross"], kind="cross")
    a = ipb.extract(pixels[:1], path, 500, TextCondition("", ip_scale=0.5), 0)[path[0]]
    b = ipb.extract(pixels[:1], path, 500, TextCondition("", ip_scale=0.0), 0)[path[0]]
    assert not torch.allclose(a.q, b.q, atol=1e-4)  # earlier attn2 layers mix in the image tokens
    with pytest.raises(ConfigError, match="scale"):
        ipb.set_scale(-1)


def test_self_attention_layer_is_refused(ipb):
    with pytest.raises(LayerError, match="needs an attn2"):
        ipb.resolve(["up0"], kind="cross")


def test_bad_ip_folder_and_wrong_model_kind(tiny_sd_path, tmp_path):
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelNotFoundError, match="h94/IP-Adapter layout.*ip-adapter-plus_sd15.safetensors"):
        IPAdapterBackbone.from_pretrained(tiny_sd_path, ip_adapter=tmp_path, device="cpu")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        IPAdapterBackbone.from_pretrained(tiny_sd_path, ip_adapter=tmp_path / "nope", device="cpu")


def test_sdxl_model_is_refused(tiny_sdxl_path, ip_path):
    with pytest.raises(ConfigError, match="is a Stable Diffusion XL pipeline.*expected a Stable Diffusion 1.x/2.x"):
        create_metric("diffsim-c", model=tiny_sdxl_path, ip_adapter=ip_path, device="cpu")


# ---------------------------------------------------------------------------------------- the metric
ATTN2 = "up_blocks.1.attentions.2.transformer_blocks.0.attn2"


@pytest.fixture(scope="module")
def metric(tiny_sd_path, ip_path):
    return create_metric(
        "diffsim-c",
        model=tiny_sd_path,
        ip_adapter=ip_path,
        layer=ATTN2,
        timestep=400,
        scale=0.5,
        prompt="a photo",
        size=SIZE,
        device="cpu",
        dtype="float32",
        batch_size=2,
    )


def test_metric_parity_with_float64_reference(metric, image_files):
    pipe = metric.backbone.pipe
    a, b = (load_pixels(str(p), SIZE) for p in (image_files[0], image_files[3]))
    qa = ip_qkv(pipe, a, ATTN2, 400, "a photo", metric.seed, 0.5)
    qb = ip_qkv(pipe, b, ATTN2, 400, "a photo", metric.seed, 0.5)
    assert metric.score(image_files[0], image_files[3]) == pytest.approx(pair_score(qa, qb), abs=2e-5)


def test_metric_settings(metric, image_files, tiny_sd_path, ip_path):
    assert metric.name == "diffsim-c" and metric.config["scale"] == 0.5 and metric.layers == [ATTN2]
    assert create_metric("diffsim-c", model=tiny_sd_path, ip_adapter=ip_path, size=SIZE, device="cpu").layers == [
        ATTN2
    ]  # default: up0.cross, the authors' effective layer
    half, full = metric, metric.with_settings(scale=1.0)
    assert full.backbone is half.backbone  # the scale is applied per pass: one loaded model
    assert full.score(image_files[0], image_files[1]) != pytest.approx(
        half.score(image_files[0], image_files[1]), abs=1e-6
    )
    with pytest.raises(ConfigError, match="mask_keys does not apply"):
        metric.with_settings(mask_keys=True)
    with pytest.raises(LayerError, match="needs an attn2"):
        metric.with_settings(layer="up0")
    with pytest.raises(ConfigError, match="scale"):
        metric.with_settings(scale=-0.5)


def test_masks_weight_the_query_tokens(metric, image_files):
    import numpy as np

    keep_left = np.zeros((SIZE, SIZE), dtype=bool)
    keep_left[:, : SIZE // 2] = True
    plain = metric.score(image_files[0], image_files[1])
    masked = metric.score(image_files[0], image_files[1], masks=[keep_left, keep_left])
    assert masked != pytest.approx(plain, abs=1e-6) and -1 <= masked <= 1
