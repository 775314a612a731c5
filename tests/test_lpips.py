"""LPIPS: parity with the official ``lpips`` package on the same random backbone, properties, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from diffsim import ConfigError, ModelNotFoundError, create_metric
from diffsim.backbones.torchvision_nets import TorchvisionBackbone
from diffsim.metrics.lpips import LPIPS, lpips_weights_path

from .zoo_props import check_properties

S = 32


@pytest.fixture(scope="module", params=["vgg", "alex"])
def metric(request):
    pytest.importorskip("scipy")  # the lpips package imports it
    return create_metric(f"lpips-{request.param}", weights=None, size=S, device="cpu")


@pytest.fixture()
def imgs():
    return torch.rand(3, 3, S, S, generator=torch.Generator().manual_seed(3))


def test_properties(metric, imgs):
    check_properties(metric, imgs)
    assert not metric.higher_is_better
    d = metric.decide(metric.embed(imgs[0]), metric.embed(imgs[0]), metric.embed(imgs[1]))
    assert d.tolist() == [1]  # the identical candidate is closer (lower distance)


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_parity_with_official_lpips(net, imgs):
    lpips = pytest.importorskip("lpips")
    ref = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    # the official model's backbone slices, in order, are torchvision's features stack
    mods = [m for s in ("slice1", "slice2", "slice3", "slice4", "slice5") for m in getattr(ref.net, s)]
    feats = nn.Sequential(*mods).eval()
    state = torch.load(lpips_weights_path(net), map_location="cpu", weights_only=True)
    lin = [state[f"lin{i}.model.1.weight"].reshape(-1).float() for i in range(5)]
    backbone = TorchvisionBackbone(feats, f"official-lpips-{net}", torch.device("cpu"), torch.float32, {"lin": lin})
    ours = LPIPS(LPIPS.Settings(net=net, size=S), backbone=backbone)
    with torch.no_grad():
        want = ref(imgs[0:2] * 2 - 1, imgs[1:3] * 2 - 1).flatten()
    got = ours.compare(ours.embed(imgs[0:2]), ours.embed(imgs[1:3]))
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6), (got, want)


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="net must be"):
        create_metric("lpips", net="squeeze", weights=None)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        create_metric("lpips", weights=tmp_path / "vgg.pth", device="cpu")
    with pytest.raises(ModelNotFoundError, match="linear weights"):
        create_metric("lpips", weights=None, lin_weights=tmp_path / "x.pth", device="cpu")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision

    def fail(*a, **k):
        raise RuntimeError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", lambda self, *a, **k: fail())
    with pytest.raises(ModelNotFoundError, match="vgg16.*TORCH_HOME"):
        create_metric("lpips", device="cpu")
