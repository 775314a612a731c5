"""Gram baseline on a random torchvision VGG19: reference Gram by hand, properties, the authors' row variant."""

from __future__ import annotations

import pytest
import torch

from diffsim import LayerError, create_metric
from diffsim.metrics.gram import vgg_layer_names

from .zoo_props import check_properties

S = 32


@pytest.fixture(scope="module")
def metric():
    torch.manual_seed(0)
    return create_metric("gram", weights=None, size=S, device="cpu")


@pytest.fixture()
def imgs():
    return torch.rand(3, 3, S, S, generator=torch.Generator().manual_seed(4))


def test_layer_table(metric):
    t = vgg_layer_names(metric.backbone.features)
    assert t["conv5_1"] == 28 and t["conv1_1"] == 0 and t["relu4_1"] == 20


def test_properties(metric, imgs):
    check_properties(metric, imgs)


def _gram(metric, img, rows):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (img[None] - mean) / std
    with torch.no_grad():
        for i in range(29):  # up to conv5_1 (pre-ReLU)
            x = metric.backbone.features[i](x)
    f = x[0].reshape(x.shape[1], -1).double()
    g = f @ f.T
    return g[-1] if rows == "last" else g.flatten()


@pytest.mark.parametrize("rows", ["all", "last"])
def test_reference(metric, imgs, rows):

    m = metric.with_settings(rows=rows, size=S)
    got = float(m.compare(m.embed(imgs[0]), m.embed(imgs[1]))[0])
    ga, gb = _gram(m, imgs[0], rows), _gram(m, imgs[1], rows)
    want = float(ga @ gb / (ga.norm() * gb.norm()))
    assert abs(got - want) < 1e-5


def test_bad_layer(metric):

    with pytest.raises(LayerError, match="conv5_1"):
        metric.with_settings(layer="conv9_9")
