"""Settings declare their role once (field metadata): load part, feature key, rebuild from settings_dict."""

from __future__ import annotations

import shutil

import pytest
import torch

from diffsim import create_metric, list_metrics, metric_info
from diffsim.settings import COMPARE_ONLY, FEATURE, PER_CALL, RESOLVED, RUNTIME

from .conftest import SIZE
from .test_every_metric import paths, tiny_overrides  # noqa: F401  (the module fixture)
from .tiny_sd import build_tiny_pipeline


@pytest.mark.parametrize("name", list_metrics())
def test_shared_settings_keep_their_declared_roles(name):
    """A re-declared field keeps the role its name implies (a plain default would silently make it a feature
    setting). One role per field holds by construction (one metadata value, checked by ``setting``)."""
    klass = metric_info(name).metric_class.Settings
    names = set(klass.names())
    for field in ("model", "revision", "dtype", "variant", "single_file_config", "vae", "ip_adapter", "weights"):
        if field in names:  # re-declared defaults keep the load mark (a plain default would drop it)
            assert field in klass.load_names(), f"{klass.__name__}.{field} must be a load setting"
    for field in ("batch_size", "cache_dir", "cache_bytes", "device"):
        if field in names:
            assert klass.role_of(field) == RUNTIME, f"{klass.__name__}.{field}"
    if "similarity" in names:
        assert klass.role_of("similarity") == COMPARE_ONLY
    if "prompt" in names:
        assert klass.role_of("prompt") == PER_CALL
    if "layer" in names and name != "gram":
        assert klass.role_of("layer") in (RESOLVED, FEATURE)


def test_feature_dict_keeps_feature_and_per_call_settings_only(paths):  # noqa: F811
    m = create_metric("diffsim-s", **tiny_overrides("diffsim-s", paths))
    fd = m.settings.feature_dict()
    assert "prompt" in fd and "seed" in fd and "size" in fd
    for gone in ("similarity", "batch_size", "cache_dir", "device", "layer", "step", "timestep", "compile"):
        assert gone not in fd


@pytest.mark.parametrize("name", list_metrics())
def test_settings_dict_rebuilds_the_metric(name, paths):  # noqa: F811
    torch.manual_seed(0)  # random-weight torchvision nets (LPIPS, Gram) draw their weights
    m = create_metric(name, **tiny_overrides(name, paths))
    cfg = m.config
    assert "higher_is_better" in cfg  # the config carries derived values: settings_dict does not
    torch.manual_seed(0)
    again = create_metric(m.name, **m.settings_dict())
    assert type(again) is type(m) and again.settings == m.settings and again.name == m.name
    g = torch.Generator().manual_seed(5)
    x = torch.rand(3, 3, SIZE, SIZE, generator=g)
    if m.votes:
        assert torch.equal(
            m.decide(m.embed(x[:1]), m.embed(x[1:2]), m.embed(x[2:])),
            again.decide(again.embed(x[:1]), again.embed(x[1:2]), again.embed(x[2:])),
        )
        return
    assert torch.allclose(m.matrix(x), again.matrix(x), atol=1e-6)


@pytest.fixture(scope="module")
def variant_folder(tiny_sd_path, tmp_path_factory):
    """The tiny SD folder plus an ``alt`` weights variant with other (seed 1) weights in every component."""
    root = tmp_path_factory.mktemp("variant")
    folder = shutil.copytree(tiny_sd_path, root / "model")
    other = build_tiny_pipeline(root / "other", seed=1)
    for sub, stem in (
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("text_encoder", "model"),
    ):
        shutil.copy(other / sub / f"{stem}.safetensors", folder / sub / f"{stem}.alt.safetensors")
    return folder


def test_with_settings_variant_loads_the_variant_weights(variant_folder, image_files):
    base = create_metric("diffsim-s", model=str(variant_folder), size=SIZE, device="cpu", dtype="float32")
    alt = base.with_settings(variant="alt")
    fresh = create_metric(
        "diffsim-s", model=str(variant_folder), size=SIZE, device="cpu", dtype="float32", variant="alt", cache_bytes=0
    )
    s_base = base.score(image_files[0], image_files[1])
    s_alt, s_fresh = alt.score(image_files[0], image_files[1]), fresh.score(image_files[0], image_files[1])
    assert alt.backbone is not base.backbone
    assert abs(s_alt - s_fresh) < 1e-6  # the variant's weights, as a fresh metric loads them
    assert abs(s_alt - s_base) > 1e-4  # not the old weights' (or the old cache entries') score
    assert alt.with_settings(variant=None).backbone is base.backbone  # back to the shared default weights
