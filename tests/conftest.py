"""Shared fixtures: a tiny random-weight SD 1.5-layout pipeline, saved once per session, and images."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from .tiny_builders import build_tiny, tiny_backbones

SIZE = 64  # image size used with the tiny pipeline (latent 8 x 8)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_backbone(key)``: the tiny model of a row of ``tests/tiny_builders.py``, built once per session."""
    root = tmp_path_factory.mktemp("tiny-backbones")
    built: dict[str, str] = {}

    def get(key: str) -> Path:
        if key not in built:
            row = next(r for r in tiny_backbones().values() if r.key == key)
            built[key] = str(build_tiny(row, root, 0, built))
        return Path(built[key])

    return get


@pytest.fixture(scope="session")
def tiny_sd_path(tiny_backbone: Callable[[str], Path]) -> Path:
    """A diffusers folder with the SD 1.5 block layout and random weights."""
    return tiny_backbone("sd")


@pytest.fixture(scope="session")
def tiny_sd2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pipeline with the SD 2.x differences (tests/tiny_sd.py ``variant="sd2"``, seed 1)."""
    from .tiny_sd import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd2") / "model", seed=1, variant="sd2")


@pytest.fixture(scope="session")
def tiny_metric(tiny_sd_path: Path):
    """DiffSim-S on the tiny pipeline, loaded through the real from_pretrained path (float32, CPU)."""
    from diffsim import DiffSim

    return DiffSim.from_pretrained(tiny_sd_path, size=SIZE, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Five distinct smooth RGB images of different sizes, saved as PNG/JPEG."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        low = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        im = Image.fromarray(low).resize((80 + 8 * i, 72), Image.BICUBIC)
        p = folder / (f"img{i}.png" if i % 2 == 0 else f"img{i}.jpg")
        im.save(p)
        paths.append(p)
    return paths


@pytest.fixture()
def rand_images() -> torch.Tensor:
    """Three random float images in [0, 1], (3, 3, SIZE, SIZE)."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, SIZE, SIZE, generator=g)


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIPModel folder (vision: 3 layers, 4 heads, 32 px, patch 8)."""
    from .tiny_vit import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "model")


@pytest.fixture(scope="session")
def tiny_dinov2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Dinov2Model folder (3 layers, 4 heads, 32 px, patch 8)."""
    from .tiny_vit import build_tiny_dinov2

    return build_tiny_dinov2(tmp_path_factory.mktemp("tiny-dinov2") / "model")


@pytest.fixture(scope="session")
def tiny_dinov3_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random DINOv3ViTModel folder (3 layers, 4 heads, 2 registers, RoPE, 32 px, patch 8)."""
    from .tiny_vit import build_tiny_dinov3

    return build_tiny_dinov3(tmp_path_factory.mktemp("tiny-dinov3") / "model")


@pytest.fixture(scope="session")
def sharp_sd_path(tiny_sd_path: Path, image_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline with latents that carry the image and peaked attention (scores spread out)."""
    from .tiny_sharp import sharpen_pipeline

    return sharpen_pipeline(tiny_sd_path, tmp_path_factory.mktemp("tiny-sharp") / "model", image_files, SIZE)


@pytest.fixture(scope="session")
def sharp_metric(sharp_sd_path: Path):
    """DiffSim-S on the sharpened tiny pipeline at up1 (4 x 4 tokens at 64 px)."""
    from diffsim import DiffSim

    return DiffSim.from_pretrained(sharp_sd_path, layer="up1", size=SIZE, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_sdxl_path(tiny_backbone: Callable[[str], Path]) -> Path:
    """A tiny random StableDiffusionXLPipeline folder (text_time U-Net, two text encoders, Euler)."""
    return tiny_backbone("sdxl")


@pytest.fixture(scope="session")
def tiny_dit_path(tiny_backbone: Callable[[str], Path]) -> Path:
    """A tiny random DiTPipeline folder in the hub layout (3 blocks, 1000 classes, native 64 px)."""
    return tiny_backbone("dit")


@pytest.fixture(scope="session")
def tiny_ip_adapter_path(tiny_backbone: Callable[[str], Path]) -> Path:
    """A tiny random IP-Adapter Plus for the tiny SD pipeline, in the h94/IP-Adapter layout."""
    return tiny_backbone("ip")


@pytest.fixture(scope="session")
def tiny_peers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny random DreamSim / CSD / SSCD / DISTS checkpoints in their released layouts (tests/tiny_peers.py)."""
    from .tiny_peers import make_peers

    return make_peers(tmp_path_factory.mktemp("tiny-peers"))


@pytest.fixture(scope="session")
def tiny_backbone_paths(tiny_backbone: Callable[[str], Path]) -> dict[str, str]:
    """The tiny model of every row of ``tests/tiny_builders.py`` by key."""
    return {row.key: str(tiny_backbone(row.key)) for row in tiny_backbones().values()}


@pytest.fixture(scope="session")
def tiny_model_paths(
    tiny_backbone_paths, tiny_clip_path, tiny_dinov2_path, tiny_dinov3_path, tiny_peers
) -> dict[str, str]:
    """Every tiny model by key (the backbones, the ViTs, the peers), as
    ``tests/test_every_metric.py::tiny_overrides`` reads them."""
    return {
        **tiny_peers,
        **tiny_backbone_paths,
        "clip": str(tiny_clip_path),
        "dino": str(tiny_dinov2_path),
        "dino3": str(tiny_dinov3_path),
    }


# ------------------------------------------------------------------ CI notices skips
#: skips CI accepts: what a CPU machine cannot run at all (the reason must say so)
CI_ALLOWED_SKIPS = ("CUDA", "cuda", "GPU", "MPS")


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_skip_on_ci(report: pytest.CollectReport | pytest.TestReport) -> None:
    """Under ``CI=true`` a skip (a missing extra, Chromium, Ray...) fails the run, except the allowed ones."""
    if not (_on_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if any(word in reason for word in CI_ALLOWED_SKIPS):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, which must run every test: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    outcome = yield
    _fail_skip_on_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # noqa: ANN201
    outcome = yield  # a module-level importorskip skips the whole module at collection
    _fail_skip_on_ci(outcome.get_result())
