"""DiffSim-C's backbone: tiny SD 1.5 + a tiny IP-Adapter Plus in the h94 layout, via load_ip_adapter."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from diffsim import aas, create_metric
from diffsim.aas import QKV
from diffsim.backbones.ip_adapter import IPAdapterBackbone
from diffsim.backbones.protocol import TextCondition
from diffsim.cache import config_key
from diffsim.errors import ConfigError, LayerError, ModelNotFoundError
from diffsim.images import content_hash
from diffsim.loader import ImageLoader, probe_for
from diffsim.preprocess import Resize, split_views

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


@pytest.fixture(scope="module")
def photos(tmp_path_factory, image_files):
    """Non-square photo files: a wide PNG (160 x 64), a tall JPEG (64 x 144), and two of the shared
    fixtures (80 x 72 PNG, 104 x 72 JPEG)."""
    folder = tmp_path_factory.mktemp("odd-photos")
    rng = np.random.default_rng(11)
    out = []
    for name, (w, h) in (("wide.png", (160, 64)), ("tall.jpg", (64, 144))):
        low = rng.uniform(0, 255, (5, 5, 3)).astype(np.uint8)
        Image.fromarray(low).resize((w, h), Image.BICUBIC).save(folder / name)
        out.append(folder / name)
    return [*out, image_files[0], image_files[3]]


PHOTO_PAIRS = [(0, 1), (0, 2), (1, 3), (2, 3)]  # wide-tall, wide-80x72, tall-104x72, 80x72-104x72


def _reference(metric, path, original: bool = True):
    """Float64 Q/K/V of one file: the VAE gets the squashed square; the CLIP processor the ORIGINAL file
    (as the authors and diffusers' ``ip_adapter_image``), or with ``original=False`` the squashed square."""
    im = ImageOps.exif_transpose(Image.open(path)) if original else None
    return ip_qkv(metric.backbone.pipe, load_pixels(str(path), SIZE), ATTN2, 400, "a photo", metric.seed, 0.5, im)


def test_clip_sees_the_original_files_as_the_reference(metric, photos):
    """Default ``clip_input="original"``: scores of non-square photos agree with a reference that reads the
    original files with transformers' CLIPImageProcessor; the squashed input misses it by far more."""
    assert metric.settings.clip_input == "original"
    square = metric.with_settings(clip_input="square")
    worst = 0.0
    for i, j in PHOTO_PAIRS:
        want = pair_score(_reference(metric, photos[i]), _reference(metric, photos[j]))
        got = metric.score(photos[i], photos[j])
        assert got == pytest.approx(want, abs=5e-6), (photos[i].name, photos[j].name)
        worst = max(worst, abs(square.score(photos[i], photos[j]) - want))
    assert worst > 1e-3  # the test can tell the two inputs apart


def test_square_clip_input_keeps_the_old_numbers(metric, photos):
    """``clip_input="square"``: the CLIP processor sees the VAE's squashed square (the earlier behaviour);
    same loaded model, other feature-cache key."""
    square = metric.with_settings(clip_input="square")
    assert square.backbone is metric.backbone
    assert config_key(square.feature_config()) != config_key(metric.feature_config())
    for i, j in PHOTO_PAIRS:
        want = pair_score(_reference(metric, photos[i], False), _reference(metric, photos[j], False))
        assert square.score(photos[i], photos[j]) == pytest.approx(want, abs=5e-6)
    with pytest.raises(ConfigError, match="clip_input must be one of original, square; got 'stretched'"):
        metric.with_settings(clip_input="stretched")


# the diffsim-c fingerprints of tests/golden/fingerprints.json before clip_input existed (CLIP saw the square)
SQUARE_FINGERPRINTS = [1.0, 0.828300952911377, 0.8103371858596802, 0.7485616207122803, 0.7801171541213989]


def test_square_clip_input_reproduces_the_earlier_fingerprints(tiny_sd_path, ip_path):
    from .golden.compute import PAIRS, SCORE_ATOL, SCORE_RTOL, fixture_images

    m = create_metric(
        "diffsim-c",
        model=str(tiny_sd_path),
        ip_adapter=str(ip_path),
        size=SIZE,
        device="cpu",
        dtype="float32",
        clip_input="square",
    )
    images = fixture_images()
    got = [float(m.score(images[i], images[j])) for i, j in PAIRS]
    assert got == pytest.approx(SQUARE_FINGERPRINTS, rel=SCORE_RTOL, abs=SCORE_ATOL)


def test_tensor_inputs_are_their_own_original(metric):
    """A tensor is the original image: the CLIP processor gets it whole (rounded to 8 bits, as a file)."""
    g = torch.Generator().manual_seed(5)
    low = torch.rand(2, 3, 5, 5, generator=g)
    x = torch.nn.functional.interpolate(low[:1], size=(SIZE, 2 * SIZE), mode="bicubic").clamp(0, 1)[0]
    y = torch.nn.functional.interpolate(low[1:], size=(3 * SIZE // 2, SIZE), mode="bicubic").clamp(0, 1)[0]
    vae = Resize(SIZE, signed=True)  # the VAE's square (checked elsewhere); the CLIP side is under test here
    pipe = metric.backbone.pipe
    qx, qy = (ip_qkv(pipe, vae(t)[None], ATTN2, 400, "a photo", metric.seed, 0.5, t) for t in (x, y))
    assert metric.score(x, y) == pytest.approx(pair_score(qx, qy), abs=5e-6)
    square = metric.with_settings(clip_input="square")
    assert abs(square.score(x, y) - pair_score(qx, qy)) > 1e-3
    z = torch.nn.functional.interpolate(low[:1], size=(SIZE, SIZE), mode="bicubic").clamp(0, 1)[0]
    k = f"{ATTN2}/k"  # already square at the working size: both inputs give the processor the same image
    assert torch.allclose(metric.embed(z).tensors[k], square.embed(z).tensors[k], atol=1e-6)


def test_original_aspect_enters_the_cache_key(metric):
    """Two images that squash to the same VAE pixels but differ in aspect get different keys and features."""
    rng = np.random.default_rng(7)
    wide = Image.fromarray(rng.uniform(0, 255, (4, 8, 3)).astype(np.uint8)).resize((2 * SIZE, SIZE), Image.BICUBIC)
    squashed = wide.resize((SIZE, SIZE), Image.LANCZOS)  # what the VAE's Resize makes of ``wide``
    step, side = metric.preprocessor, metric.backbone.clip_side
    pw, ps = step(wide, 0), step(squashed, 0)
    (sq_w, view_w), (sq_s, view_s) = split_views(pw[None], side), split_views(ps[None], side)
    assert torch.equal(sq_w, sq_s) and not torch.allclose(view_w, view_s, atol=1e-3)
    assert content_hash(pw) != content_hash(ps)
    k = f"{ATTN2}/k"
    fw = metric.embed(wide)
    fs = metric.embed(squashed)  # a key without the original would serve ``wide``'s features here
    assert not torch.allclose(fw.tensors[k], fs.tensors[k], atol=1e-4)
    assert torch.allclose(fs.tensors[k], metric.forward(ps[None]).tensors[k])
    square = metric.with_settings(clip_input="square")  # the squashed input cannot tell them apart
    assert torch.equal(square.preprocessor(wide, 0), square.preprocessor(squashed, 0))
    assert torch.equal(square.embed(wide).tensors[k], square.embed(squashed).tensors[k])


def test_packed_views_travel_through_worker_processes(metric, photos):
    """The packing step pickles into DataLoader workers; embed_pixels of its batches equals embed."""
    step = pickle.loads(pickle.dumps(metric.preprocessor))
    got = []
    for _, pixels in ImageLoader(photos, step, batch_size=2, num_workers=1):
        got.append(metric.embed_pixels(pixels).tensors[f"{ATTN2}/k"])
    want = metric.embed(photos).tensors[f"{ATTN2}/k"]
    assert torch.allclose(torch.cat(got), want, atol=1e-6)
    probe_for(metric)(1)  # the batch-size probe builds blank packed views
    with pytest.raises(ConfigError, match="do not hold a square image and a 32 x 32 view"):
        split_views(torch.zeros(1, 3, 32 * 32 + 5), 32)


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
