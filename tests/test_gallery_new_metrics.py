"""Gallery builds with DINOv3 AAS (a similarity) and IntroStyle (a distance) on their tiny models: the store
holds what the metric embeds, and search ranks by the exact scores in the metric's polarity."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from diffsim import create_metric
from diffsim.gallery import GalleryStore, collect
from diffsim.gallery.build import build_index
from diffsim.gallery.search import Gallery

from .tiny_vit import VIT_SIZE


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pics")
    g = torch.Generator().manual_seed(11)
    low = torch.rand(5, 3, 6, 6, generator=g)
    imgs = torch.nn.functional.interpolate(low, size=(96, 96), mode="bicubic", align_corners=False).clamp(0, 1)
    paths = []
    for i, x in enumerate(imgs):
        p = folder / f"img-{i}.png"
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(p)
        paths.append(p)
    return paths


@pytest.mark.parametrize(
    "name,key,over",
    [
        ("dinov3-aas", "tiny_dinov3_path", {"size": VIT_SIZE}),
        ("introstyle", "tiny_sd_path", {"size": 64, "ensemble": 1}),
    ],
)
def test_gallery_build_and_search(request, tmp_path, pictures, name, key, over):
    model = str(request.getfixturevalue(key))
    metric = create_metric(name, model=model, device="cpu", dtype="float32", **over)
    store = GalleryStore.create(tmp_path / "store", metric)
    build_index(collect(pictures), store, metric, shard_size=2)
    assert len(store.load().names) == len(pictures)
    query = str(pictures[1])
    hits = Gallery(store, metric).search([query], k=len(pictures))[0]
    exact = metric.matrix([query], [str(p) for p in pictures])[0].tolist()
    ranked = sorted(exact, reverse=metric.higher_is_better)
    assert [h.score for h in hits] == pytest.approx(ranked, abs=1e-5)
    assert hits[0].path == str(pictures[1].resolve())  # the query itself ranks first either way
