"""The peers (DreamSim, CSD, DISTS, SSCD) against their reference implementations on the same random weights.

* DreamSim: the ``dreamsim`` package's own ``dreamsim()`` builder on our tiny checkpoint folder (its
  ViT-B size and DINO's hub download replaced by tiny instances of its own classes);
* DISTS: the authors' ``DISTS_pytorch`` and piq's ``DISTS`` on one random VGG16 and alpha/beta;
* CSD: open_clip's ``VisionTransformer`` (OpenAI CLIP key layout) with CSD's style head as projection;
* SSCD: the TorchScript file equals the state dict, and both equal a direct ResNet-50 + GeM computation.

Plus: every peer refuses a missing weight with one line naming what was tried.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from diffsim import create_metric
from diffsim.errors import ImageError, ModelNotFoundError

from .tiny_peers import DIM, PEER_SIZE, make_csd_checkpoint, make_dists_weights, make_dreamsim_folder, make_sscd

CPU = {"device": "cpu", "dtype": "float32"}
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)  # OpenAI CLIP's statistics
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def images(n: int = 4, size: int = PEER_SIZE, seed: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


# ------------------------------------------------------------------------------------------- DreamSim
def _dreamsim_reference(variant: str, tmp_path: Path, monkeypatch) -> tuple:
    """The `dreamsim` package's own model and `preprocess` on a tiny checkpoint folder: (model, preprocess, folder)."""
    import dreamsim  # the parity reference (test extra; never skipped)
    import dreamsim.feature_extraction.load_clip_as_dino as clip_mod
    import dreamsim.feature_extraction.load_open_clip_as_dino as open_clip_mod
    from dreamsim.feature_extraction.vision_transformer import VisionTransformer

    depth = 12  # the package reads the DINO CLS token after block 11
    folder = make_dreamsim_folder(tmp_path / "ds", variant, depth=depth)

    def tiny(patch_size: int = 16, **_: object) -> VisionTransformer:
        return VisionTransformer(
            img_size=[PEER_SIZE],
            patch_size=patch_size,
            embed_dim=DIM,
            depth=depth,
            num_heads=DIM // 64,
            mlp_ratio=4,
            qkv_bias=True,
            norm_layer=functools.partial(nn.LayerNorm, eps=1e-6),
        )

    def hub_load(repo: str, name: str, *args: object, **kwargs: object) -> VisionTransformer:
        assert (repo, name) == ("facebookresearch/dino:main", "dino_vitb16")  # DINO's hub download, here offline
        vit = tiny(16)
        full = torch.load(folder / "dino_vitb16_pretrain.pth", weights_only=True)
        vit.load_state_dict({k.removeprefix("backbone."): v for k, v in full["teacher"].items()})
        return vit

    monkeypatch.setattr(clip_mod, "vit_base", tiny)
    monkeypatch.setattr(open_clip_mod, "vit_base", tiny)
    monkeypatch.setattr(torch.hub, "load", hub_load)
    monkeypatch.setitem(dreamsim.model.dreamsim_args, "img_size", PEER_SIZE)  # its preprocess: 224 -> the tiny size
    ref, preprocess = dreamsim.dreamsim(pretrained=True, device="cpu", cache_dir=str(folder), dreamsim_type=variant)
    return ref, preprocess, folder


@pytest.mark.parametrize("variant", ["ensemble", "clip_vitb32", "open_clip_vitb32", "dino_vitb16"])
def test_dreamsim_matches_the_dreamsim_package(variant, tmp_path, monkeypatch):
    ref, _, folder = _dreamsim_reference(variant, tmp_path, monkeypatch)
    name = "dreamsim" if variant == "ensemble" else "dreamsim-" + variant.replace("_", "-")
    ours = create_metric(name, model=folder, size=PEER_SIZE, **CPU)
    x = images()
    fx = ours.embed_pixels(list(x))
    with torch.no_grad():
        want_embed = ref.embed(x)
        want = ref(x[[0, 0, 1]], x[[1, 2, 3]])
    assert torch.allclose(fx.tensors["embedding"], want_embed, atol=1e-5)
    got = ours.compare(fx[[0, 0, 1]], fx[[1, 2, 3]])
    assert torch.allclose(got, want, atol=1e-5), (got, want)
    assert float(want.abs().min()) > 1e-3  # the distances are not trivially zero


def test_dreamsim_lora_changes_the_embedding(tmp_path):
    """The adapter is merged: a folder whose LoRA B is zero gives other embeddings."""
    from safetensors.torch import load_file, save_file

    a = make_dreamsim_folder(tmp_path / "a", "clip_vitb32")
    b = make_dreamsim_folder(tmp_path / "b", "clip_vitb32")
    f = b / "clip_vitb32_single_lora" / "adapter_model.safetensors"
    save_file({k: (v * 0 if ".lora_B." in k else v) for k, v in load_file(f).items()}, f)
    x = list(images(2))
    ea = create_metric("dreamsim-clip-vitb32", model=a, size=PEER_SIZE, **CPU).embed_pixels(x)
    eb = create_metric("dreamsim-clip-vitb32", model=b, size=PEER_SIZE, **CPU).embed_pixels(x)
    assert not torch.allclose(ea.tensors["embedding"], eb.tensors["embedding"], atol=1e-4)


def test_dreamsim_default_folder_is_fetched_from_the_release(tmp_path, monkeypatch):
    """model=None: the release zip is downloaded into <torch hub dir>/dreamsim and unzipped (a file:// URL
    here); a failed download is one line naming the URL and the folder."""
    import shutil

    import diffsim.metrics.dreamsim as ds

    src = make_dreamsim_folder(tmp_path / "release", "clip_vitb32")
    zipped = shutil.make_archive(str(tmp_path / "dreamsim_clip_vitb32_checkpoint"), "zip", src)
    monkeypatch.setattr(ds, "default_folder", lambda: tmp_path / "hub" / "dreamsim")
    monkeypatch.setattr(ds, "RELEASE", "file://" + str(tmp_path / "dreamsim_{}_checkpoint.zip"))
    x = list(images(2))
    got = create_metric("dreamsim-clip-vitb32", size=PEER_SIZE, **CPU).embed_pixels(x)
    want = create_metric("dreamsim-clip-vitb32", model=src, size=PEER_SIZE, **CPU).embed_pixels(x)
    assert torch.allclose(got.tensors["embedding"], want.tensors["embedding"], atol=1e-6)
    assert (tmp_path / "hub" / "dreamsim" / "clip_vitb32_single_lora").is_dir() and Path(zipped).exists()
    assert not list((tmp_path / "hub" / "dreamsim").glob("*.zip"))  # the zip is removed after unzipping

    monkeypatch.setattr(ds, "default_folder", lambda: tmp_path / "empty" / "dreamsim")
    with pytest.raises(ModelNotFoundError) as info:
        create_metric("dreamsim-dino-vitb16", **CPU)
    text = str(info.value)
    assert "dreamsim_dino_vitb16_checkpoint.zip failed" in text and str(tmp_path / "empty") in text
    assert "\n" not in text


# ---------------------------------------------------------------------------------------------- DISTS
@pytest.fixture(scope="module")
def dists_files(tmp_path_factory) -> tuple[Path, Path]:
    import torchvision

    root = tmp_path_factory.mktemp("dists")
    torch.manual_seed(0)
    vgg = root / "vgg16.pth"
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), vgg)
    return vgg, make_dists_weights(root / "weights.pt")


def _random_vgg(path: Path):
    from torchvision.models import vgg16  # bound now: the references' own name is patched below

    def build(*args: object, **kwargs: object) -> nn.Module:
        net = vgg16(weights=None)
        net.load_state_dict(torch.load(path, weights_only=True))
        return net

    return build


def test_dists_matches_the_authors_dists_pytorch(dists_files, monkeypatch):
    from DISTS_pytorch import DISTS_pt

    vgg, weights = dists_files
    monkeypatch.setattr(DISTS_pt.models, "vgg16", _random_vgg(vgg))  # theirs downloads ImageNet weights
    ref = DISTS_pt.DISTS(load_weights=False)
    w = torch.load(weights, weights_only=True)
    ref.alpha.data, ref.beta.data = w["alpha"], w["beta"]
    ours = create_metric("dists", weights=vgg, dists_weights=weights, size=64, device="cpu")
    x = images(4, 64)
    fx = ours.embed_pixels(list(x))
    got = ours.compare(fx[[0, 0, 1, 2]], fx[[1, 2, 3, 2]])
    with torch.no_grad():
        want = ref(x[[0, 0, 1, 2]], x[[1, 2, 3, 2]], batch_average=False)
    assert torch.allclose(got, want, atol=1e-5), (got, want)
    assert float(got[:3].min()) > 1e-3 and abs(float(got[3])) < 1e-6


def test_dists_matches_piq(dists_files, monkeypatch):
    import piq
    import piq.perceptual

    vgg, weights = dists_files
    w = torch.load(weights, weights_only=True)
    total = w["alpha"].sum() + w["beta"].sum()  # piq's released file holds alpha / beta already divided
    monkeypatch.setattr(piq.perceptual, "vgg16", _random_vgg(vgg))
    monkeypatch.setattr(
        torch.hub, "load_state_dict_from_url", lambda *a, **k: {"alpha": w["alpha"] / total, "beta": w["beta"] / total}
    )
    ref = piq.DISTS(reduction="none")
    ours = create_metric("dists", weights=vgg, dists_weights=weights, size=64, device="cpu")
    x = images(4, 64)
    fx = ours.embed_pixels(list(x))
    with torch.no_grad():
        want = ref(x[[0, 1]], x[[2, 3]])
    assert torch.allclose(ours.compare(fx[[0, 1]], fx[[2, 3]]), want, atol=1e-5)


# ------------------------------------------------------------------------------------------------ CSD
def test_csd_matches_open_clip_vision_tower(tmp_path):
    from open_clip.transformer import QuickGELU, VisionTransformer

    ckpt = make_csd_checkpoint(tmp_path / "checkpoint.pth")
    state = torch.load(ckpt, weights_only=False)["model_state_dict"]
    ours = create_metric("csd", model=ckpt, size=PEER_SIZE, **CPU)
    x = images()
    fx = ours.embed_pixels(list(x))
    for head in ("style", "content"):
        ref = VisionTransformer(PEER_SIZE, 8, DIM, 2, DIM // 64, 4.0, output_dim=32, act_layer=QuickGELU)
        tower = {k.removeprefix("module.backbone."): v for k, v in state.items() if k.startswith("module.backbone.")}
        ref.load_state_dict({**tower, "proj": state[f"module.last_layer_{head}"]}, strict=True)
        with torch.no_grad():
            want = F.normalize(ref.eval()((x - CLIP_MEAN) / CLIP_STD), dim=1)
        assert torch.allclose(fx.tensors[head], want, atol=1e-5)
    # the authors' hub layout (PyTorchModelHubMixin): model.safetensors, keys without "module."
    from safetensors.torch import save_file

    hub = tmp_path / "hub"
    hub.mkdir()
    save_file({k.removeprefix("module."): v.contiguous() for k, v in state.items()}, hub / "model.safetensors")
    again = create_metric("csd", model=hub, size=PEER_SIZE, **CPU).embed_pixels(list(x))
    assert torch.allclose(again.tensors["style"], fx.tensors["style"], atol=1e-6)
    content = ours.with_settings(head="content")
    assert content.backbone is ours.backbone
    assert not torch.allclose(ours.compare(fx[0], fx[1:]), content.compare(fx[0], fx[1:]))


# ----------------------------------------------------------------------------------------------- SSCD
def test_sscd_torchscript_equals_state_dict_and_a_direct_computation(tmp_path):
    import torchvision

    sd, ts = make_sscd(tmp_path)
    a = create_metric("sscd", model=ts, size=64, **CPU)
    b = create_metric("sscd", model=sd, size=64, **CPU)
    x = images(3, 64)
    fa, fb = a.embed_pixels(list(x)), b.embed_pixels(list(x))
    assert torch.allclose(fa.tensors["descriptor"], fb.tensors["descriptor"], atol=1e-5)

    net = torchvision.models.resnet50(weights=None, num_classes=512).eval()
    net.load_state_dict({k.removeprefix("backbone."): v for k, v in torch.load(sd, weights_only=True).items()})
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        h = nn.Sequential(*list(net.children())[:-2])((x - mean) / std)
        gem = h.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)
        want = F.normalize(net.fc(gem), dim=1)
    assert torch.allclose(fa.tensors["descriptor"], want, atol=1e-5)
    assert a.settings.threshold == 0.75 and a.higher_is_better


def test_sscd_default_is_fetched_from_the_release(tmp_path, monkeypatch):
    import diffsim.metrics.sscd as sscd

    _, ts = make_sscd(tmp_path / "release")
    monkeypatch.setattr(sscd, "default_path", lambda: tmp_path / "hub" / "sscd" / sscd.DEFAULT_FILE)
    monkeypatch.setattr(sscd, "RELEASE", "file://" + str(tmp_path / "release") + "/{}")
    m = create_metric("sscd", size=64, **CPU)
    assert (tmp_path / "hub" / "sscd" / sscd.DEFAULT_FILE).read_bytes() == ts.read_bytes()
    x = list(images(2, 64))
    want = create_metric("sscd", model=ts, size=64, **CPU).embed_pixels(x)
    assert torch.allclose(m.embed_pixels(x).tensors["descriptor"], want.tensors["descriptor"], atol=1e-6)

    monkeypatch.setattr(sscd, "default_path", lambda: tmp_path / "none" / "sscd" / sscd.DEFAULT_FILE)
    monkeypatch.setattr(sscd, "RELEASE", "file://" + str(tmp_path / "missing") + "/{}")
    with pytest.raises(ModelNotFoundError) as info:
        create_metric("sscd", **CPU)
    text = str(info.value)
    assert "SSCD weights are not in" in text and "missing/sscd_disc_mixup.torchscript.pt failed" in text
    assert "\n" not in text and not list((tmp_path / "none" / "sscd").glob("*"))  # no partial file left


# ------------------------------------------------------------------------------------- missing weights
@pytest.mark.parametrize(
    ("name", "over", "needle"),
    [
        (
            "dreamsim",
            {"model": "/nonexistent/dreamsim"},
            "DreamSim ensemble folder /nonexistent/dreamsim does not exist",
        ),
        (
            "csd",
            {"model": "/nonexistent/checkpoint.pth"},
            "CSD weights file /nonexistent/checkpoint.pth does not exist",
        ),
        ("sscd", {"model": "/nonexistent/sscd.pt"}, "SSCD weights file /nonexistent/sscd.pt does not exist"),
        ("dists", {"dists_weights": "/nonexistent/w.pt", "weights": None}, "DISTS weights file /nonexistent/w.pt"),
    ],
)
def test_missing_weights_one_line(name, over, needle):
    with pytest.raises(ModelNotFoundError) as info:
        create_metric(name, **over, **CPU)
    text = str(info.value)
    assert needle in text and "\n" not in text


def test_dreamsim_folder_lacking_files_names_them(tmp_path):
    folder = make_dreamsim_folder(tmp_path / "ds", "clip_vitb32")
    (folder / "clip_vitb32_pretrain.pth.tar").unlink()
    with pytest.raises(ModelNotFoundError, match="lacks clip_vitb32_pretrain.pth.tar"):
        create_metric("dreamsim-clip-vitb32", model=folder, **CPU)
    with pytest.raises(ModelNotFoundError, match="looked for sscd_disc_mixup.torchscript.pt"):
        create_metric("sscd", model=tmp_path, **CPU)  # a folder without any SSCD file


@pytest.mark.parametrize(
    ("name", "key"), [("csd", "model"), ("sscd", "model"), ("dreamsim", "model"), ("dists", "dists_weights")]
)
def test_hub_id_missing_offline_names_the_repo(monkeypatch, name, key):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    over = {key: "no-such-user/no-such-repo", **({"weights": None} if name == "dists" else {})}
    with pytest.raises(ModelNotFoundError, match="no-such-user/no-such-repo") as info:
        create_metric(name, **over, **CPU)
    assert "HF_HUB_OFFLINE" in str(info.value) and "\n" not in str(info.value)


def test_cli_refuses_missing_weight_with_exit_2(tmp_path):
    img = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(img)
    r = subprocess.run(
        [sys.executable, "-m", "diffsim", "score", str(img), str(img), "--metric", "sscd", "--model", "/none/s.pt"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "SSCD weights file /none/s.pt does not exist" in r.stderr


# ------------------------------------------------------------------------------- dedup preset, extras
def _gallery(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = torch.Generator().manual_seed(2)
    for i in range(4):
        arr = (torch.rand(48, 48, 3, generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(folder / f"img-{i}.png")
    (folder / "copy-of-0.png").write_bytes((folder / "img-0.png").read_bytes())
    return folder


def test_dedup_uses_the_sscd_threshold_preset(tmp_path, capsys):
    from scipy.sparse.csgraph import connected_components

    from diffsim.cli.main import main
    from diffsim.gallery import GalleryStore, collect
    from diffsim.gallery.build import build_index

    _, ts = make_sscd(tmp_path / "sscd")
    metric = create_metric("sscd", model=ts, size=64, **CPU)
    src = collect(_gallery(tmp_path / "g"))
    store = GalleryStore.create(tmp_path / "store", metric, root=src.root)
    build_index(src, store, metric)
    code = main(["dedup", "--index", str(tmp_path / "store"), "--neighbours", "4", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "threshold 0.75 (sscd's copy-detection preset)" in err
    # the groups are the connected components of the exact cosine >= 0.75 (brute force)
    ids = [f.name for f in sorted((tmp_path / "g").iterdir())]
    s = metric.matrix([str(tmp_path / "g" / i) for i in ids])
    _, comp = connected_components((s >= 0.75).numpy(), directed=False)
    groups = {}
    for i, c in zip(ids, comp, strict=True):
        groups.setdefault(c, []).append(i)
    want = sorted(sorted(g) for g in groups.values() if len(g) > 1)
    got = sorted(sorted(line.split(": ", 1)[1].split("  ")) for line in out.splitlines() if line.startswith("group"))
    assert got == want and any("copy-of-0.png" in g and "img-0.png" in g for g in got)


def test_dedup_without_threshold_needs_a_preset(tmp_path, capsys):
    from diffsim.cli.main import main
    from diffsim.gallery import GalleryStore, collect
    from diffsim.gallery.build import build_index

    metric = create_metric("csd", model=make_csd_checkpoint(tmp_path / "csd.pth"), size=PEER_SIZE, **CPU)
    src = collect(_gallery(tmp_path / "g"))
    store = GalleryStore.create(tmp_path / "store", metric, root=src.root)
    build_index(src, store, metric)
    code = main(["dedup", "--index", str(tmp_path / "store"), "--device", "cpu"])
    _, err = capsys.readouterr()
    assert code == 2 and "--threshold is required: the store's metric csd has no copy-detection preset" in err


def test_dists_weights_name_the_extra(monkeypatch):
    from diffsim.metrics.dists import dists_weights_path

    monkeypatch.setitem(sys.modules, "DISTS_pytorch", None)  # as if not installed
    with pytest.raises(ModelNotFoundError, match=r'pip install "diffsim-metric\[dists\]"'):
        dists_weights_path()


# ------------------------------------------------------------------------------- benchmark and report
def test_peers_bench_and_report_rows(tmp_path, capsys, tiny_peers):
    """`diffsim bench` runs a peer through the generic 2AFC path; `diffsim report` lists it beside others."""
    import json

    from diffsim.cli.main import main

    from . import bench_fixtures as fx

    root = fx.nights(tmp_path)
    runs = []
    for name, flags in (
        ("dreamsim", ["--model", tiny_peers["dreamsim:ensemble"], "--size", str(PEER_SIZE)]),
        ("dists", ["--set", "weights=null", "--set", f"dists_weights={tiny_peers['dists']}", "--size", "32"]),
    ):
        out = tmp_path / name
        code = main(
            [
                "bench",
                "nights",
                "--root",
                str(root),
                "--metric",
                name,
                *flags,
                "--device",
                "cpu",
                "--out",
                str(out),
                "-q",
            ]
        )
        assert code == 0, capsys.readouterr().err
        res = json.loads((out / "results.json").read_text())
        assert res["metric"]["name"] == name and res["metric"]["higher_is_better"] is False
        runs.append(str(out / "results.json"))
    capsys.readouterr()
    assert main(["report", *runs]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| NIGHTS |")]
    assert {r.split("|")[2].strip() for r in rows} == {"dreamsim", "dists"}


# ---------------------------------------------------------------------------------------------- docs
def test_peers_page_commands_and_metrics_exist():
    """Every `diffsim ...` command of docs/peers.md names real commands, flags and metrics."""
    import re
    import shlex

    import click

    from diffsim import list_metrics
    from diffsim.cli.main import cli

    text = (Path(__file__).resolve().parents[1] / "docs" / "peers.md").read_text()
    lines = re.findall(r"`(diffsim [^`]+)`", text)
    lines += [ln.split("  #")[0].strip() for ln in text.splitlines() if ln.startswith("diffsim ")]
    commands = [shlex.split(ln) for ln in lines if ln.split()[1] not in ("report",) or "results.json" in ln]
    assert len(commands) >= 8
    for argv in commands:
        cmd: click.Command | None = cli.commands.get(argv[1])
        args = argv[1:]
        while isinstance(cmd, click.Group):
            args = args[1:]
            cmd = cmd.commands.get(args[0])
        assert cmd is not None, argv
        flags = {o for p in cmd.params for o in p.opts + p.secondary_opts}
        for a in args[1:]:
            if a.startswith("-"):
                assert a in flags, f"{a} is not an option of {argv[:3]}"
        for i, a in enumerate(args[:-1]):
            if a == "--metric":
                assert args[i + 1] in list_metrics(), argv
    used = set(re.findall(r"create_metric\(\"([\w.-]+)\"", text)) | set(
        re.findall(r"`(dreamsim[\w-]*|csd|dists|sscd)`", text)
    )
    assert {"dreamsim", "csd", "dists", "sscd"} <= used and used <= set(list_metrics())


# ------------------------------------------------------------------ from image files, as each package reads them
def _picture(path: Path, width: int, height: int, seed: int) -> str:
    """A smooth random 8-bit RGB picture of ``width x height`` written as PNG."""
    import numpy as np
    from PIL import Image

    low = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(low).resize((width, height), Image.BICUBIC).save(path)
    return str(path)


def _pictures(folder: Path, sizes: list[tuple[int, int]]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    return [_picture(folder / f"{i}.png", w, h, seed=i) for i, (w, h) in enumerate(sizes)]


def _rgb(path: str):
    from PIL import Image

    return Image.open(path).convert("RGB")


#: square, and non-square with a long side that rounds and truncates differently (47 / 31 * 32 = 48.5)
FILE_SIZES = [(40, 40), (47, 31), (31, 47), (64, 64)]


def test_dreamsim_from_files_matches_the_package(tmp_path, monkeypatch):
    """The package's ``preprocess`` (bicubic squash) on the same files: one distance to 1e-5."""
    ref, preprocess, folder = _dreamsim_reference("ensemble", tmp_path, monkeypatch)
    files = _pictures(tmp_path / "img", FILE_SIZES)
    ours = create_metric("dreamsim", model=folder, size=PEER_SIZE, **CPU)
    x = torch.cat([preprocess(_rgb(f)) for f in files])
    pairs = [(0, 1), (1, 2), (2, 3), (0, 3)]
    with torch.no_grad():
        want = ref(x[[a for a, _ in pairs]], x[[b for _, b in pairs]])
    got = torch.tensor([ours.score(files[a], files[b]) for a, b in pairs])
    assert torch.allclose(got, want, atol=1e-5), (got, want)
    assert float(want.min()) > 1e-3


def test_csd_from_files_matches_torchvision_resize_and_crop(tmp_path):
    """CSD's own transform (torchvision ``Resize(size, bicubic)``, ``CenterCrop``, CLIP statistics) on files."""
    from open_clip.transformer import QuickGELU, VisionTransformer
    from torchvision import transforms

    ckpt = make_csd_checkpoint(tmp_path / "checkpoint.pth")
    state = torch.load(ckpt, weights_only=False)["model_state_dict"]
    ref = VisionTransformer(PEER_SIZE, 8, DIM, 2, DIM // 64, 4.0, output_dim=32, act_layer=QuickGELU)
    tower = {k.removeprefix("module.backbone."): v for k, v in state.items() if k.startswith("module.backbone.")}
    ref.load_state_dict({**tower, "proj": state["module.last_layer_style"]}, strict=True)
    t = transforms.Compose(
        [
            transforms.Resize(PEER_SIZE, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(PEER_SIZE),
            transforms.ToTensor(),
            transforms.Normalize(CLIP_MEAN.flatten().tolist(), CLIP_STD.flatten().tolist()),
        ]
    )
    files = _pictures(tmp_path / "img", FILE_SIZES)
    with torch.no_grad():
        e = F.normalize(ref.eval()(torch.stack([t(_rgb(f)) for f in files])), dim=1)
    ours = create_metric("csd", model=ckpt, size=PEER_SIZE, **CPU)
    want = e @ e.T
    got = ours.matrix(files)
    assert torch.allclose(got, want, atol=1e-5), (got, want)


def test_dists_from_files_matches_the_authors_prepare_image(dists_files, monkeypatch, tmp_path):
    """The authors' ``prepare_image(resize=True)`` (shorter side to 256, aspect kept) on files of one size."""
    from DISTS_pytorch import DISTS_pt

    vgg, weights = dists_files
    monkeypatch.setattr(DISTS_pt.models, "vgg16", _random_vgg(vgg))
    ref = DISTS_pt.DISTS(load_weights=False)
    w = torch.load(weights, weights_only=True)
    ref.alpha.data, ref.beta.data = w["alpha"], w["beta"]
    ours = create_metric("dists", weights=vgg, dists_weights=weights, device="cpu")
    for sizes in ([(300, 300)] * 3, [(301, 270)] * 3):  # square, and non-square (301 x 270 -> 285 x 256)
        files = _pictures(tmp_path / f"{sizes[0][0]}", sizes)
        x = [DISTS_pt.prepare_image(_rgb(f), resize=True) for f in files]
        with torch.no_grad():
            want = torch.stack([ref(x[0], x[i], batch_average=False).reshape(-1)[0] for i in (1, 2)])
        got = torch.tensor([ours.score(files[0], files[i]) for i in (1, 2)])
        assert torch.allclose(got, want, atol=1e-5), (sizes, got, want)


def test_dists_pairs_of_two_sizes_need_a_size(dists_files, tmp_path):
    vgg, weights = dists_files
    files = _pictures(tmp_path / "img", [(40, 40), (48, 40)])
    ours = create_metric("dists", weights=vgg, dists_weights=weights, device="cpu")
    with pytest.raises(ImageError, match=r"different sizes.*--set size=N"):
        ours.score(files[0], files[1])
    assert ours.with_settings(size=32).score(files[0], files[1]) > 0  # squashed: any sizes compare


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_from_files_matches_the_lpips_package(net, tmp_path):
    """``lpips.im2tensor`` of the file's RGB pixels (``lpips.load_image`` reads them with cv2, not installed here)
    at the native resolution, the default of lpips-vgg / lpips-alex."""
    import lpips
    import numpy as np

    from diffsim.backbones.torchvision_nets import TorchvisionBackbone
    from diffsim.metrics.lpips import LPIPS, lpips_weights_path

    ref = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    mods = [m for s in ("slice1", "slice2", "slice3", "slice4", "slice5") for m in getattr(ref.net, s)]
    state = torch.load(lpips_weights_path(net), map_location="cpu", weights_only=True)
    lin = [state[f"lin{i}.model.1.weight"].reshape(-1).float() for i in range(5)]
    feats = nn.Sequential(*mods).eval()
    backbone = TorchvisionBackbone(feats, f"ref-{net}", torch.device("cpu"), torch.float32, {"lin": lin})
    ours = LPIPS(LPIPS.Settings(net=net), backbone=backbone)
    for sizes in ([(48, 48)] * 3, [(72, 40)] * 3):
        files = _pictures(tmp_path / f"{sizes[0][0]}", sizes)
        x = [lpips.im2tensor(np.asarray(_rgb(f))) for f in files]
        with torch.no_grad():
            want = torch.stack([ref(x[0], x[i]).flatten()[0] for i in (1, 2)])
        got = torch.tensor([ours.score(files[0], files[i]) for i in (1, 2)])
        assert torch.allclose(got, want, atol=1e-5), (sizes, got, want)
