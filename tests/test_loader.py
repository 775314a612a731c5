"""Overlapped input: DataLoader workers give the same pixels and features as in-process preprocessing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from diffsim import DiffSim
from diffsim.errors import ConfigError, ImageError
from diffsim.images import to_unit_tensor
from diffsim.loader import ImageLoader, auto_batch_size, probe_for, search_batch
from diffsim.preprocess import Resize

from .conftest import SIZE


def _collect(loader: ImageLoader) -> tuple[list[int], torch.Tensor]:
    idx, px = [], []
    for i, x in loader:
        assert x.shape[0] == i.shape[0] <= loader.batch_size
        idx += i.tolist()
        px.append(x)
    return idx, torch.cat(px)


def test_worker_pixels_equal_in_process(image_files):
    pil = Image.open(image_files[1])
    sources = [*image_files, pil, np.asarray(pil.convert("RGB")), torch.rand(3, 40, 52)]
    loader = ImageLoader(sources, Resize(SIZE, signed=True), batch_size=3, num_workers=2, device="cpu")
    assert len(loader) == 3
    idx, px = _collect(loader)
    assert idx == list(range(len(sources))) and not loader.failures
    assert torch.equal(px, torch.stack([to_unit_tensor(s, SIZE, "none", i) * 2 - 1 for i, s in enumerate(sources)]))
    center = ImageLoader(sources, Resize(SIZE, crop="center"), batch_size=4, num_workers=0, device="cpu")
    unit = torch.stack([to_unit_tensor(s, SIZE, "center", i) for i, s in enumerate(sources)])
    assert torch.equal(_collect(center)[1], unit)


def test_dataloader_features_equal_embed(tiny_sd_path, image_files):
    metric = DiffSim.from_pretrained(tiny_sd_path, size=SIZE, batch_size=2, cache_bytes=0)
    direct = metric.embed(image_files[:3])
    loader = ImageLoader(image_files[:3], metric.preprocessor, batch_size=2, num_workers=2, device="cpu")
    parts = [(i, metric.embed_pixels(px)) for i, px in loader]
    for key, t in direct.tensors.items():
        streamed = torch.cat([f.tensors[key] for _, f in parts])
        assert torch.equal(streamed, t), key


def test_unreadable_images_are_recorded(image_files, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    sources = [image_files[0], tmp_path / "missing.jpg", broken, image_files[1], torch.full((3, 8, 8), 2.0)]
    loader = ImageLoader(sources, Resize(SIZE), batch_size=2, num_workers=2, device="cpu")
    idx, px = _collect(loader)
    assert idx == [0, 3] and px.shape == (2, 3, SIZE, SIZE)
    assert [(f.index, f.source) for f in loader.failures] == [
        (1, str(tmp_path / "missing.jpg")),
        (2, str(broken)),
        (4, "<Tensor #4>"),
    ]
    assert "not found" in loader.failures[0].reason and "cannot read" in loader.failures[1].reason
    assert "[0, 1]" in loader.failures[2].reason
    strict = ImageLoader(sources, Resize(SIZE), batch_size=2, num_workers=0, device="cpu", strict=True)
    with pytest.raises(ImageError, match="missing.jpg"):
        _collect(strict)


class _Counting(Sequence):
    """A virtual list of many tensor images that counts how many were materialised."""

    def __init__(self, n: int) -> None:
        self.n, self.made = n, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if not isinstance(i, int) or not 0 <= i < self.n:
            raise IndexError(i)
        self.made += 1
        return torch.full((3, 8, 8), (i % 100) / 100)


def test_loader_is_lazy():
    sources = _Counting(100_000)
    it = iter(ImageLoader(sources, Resize(8), batch_size=4, num_workers=0, device="cpu"))
    idx, px = next(it)
    assert idx.tolist() == [0, 1, 2, 3] and sources.made == 4
    assert torch.allclose(px[:, 0, 0, 0], torch.tensor([0.0, 0.01, 0.02, 0.03]))


def test_auto_batch_size_falls_back_on_cpu(tiny_sd_path):
    calls = []
    assert auto_batch_size(calls.append, "cpu", fallback=6) == 6 and not calls
    loader = ImageLoader(["a.png"], Resize(8), batch_size="auto", device="cpu", probe=calls.append, fallback_batch=5)
    assert loader.batch_size == 5 and not calls
    metric = DiffSim.from_pretrained(tiny_sd_path, size=SIZE, device="cpu")
    probe = probe_for(metric)
    probe(2)  # a real forward pass on two blank images
    loader = ImageLoader(["a.png"], metric.preprocessor, batch_size="auto", device="cpu", probe=probe)
    assert loader.batch_size == 8
    with pytest.raises(ConfigError, match="batch_size"):
        ImageLoader(["a.png"], Resize(8), batch_size=0, device="cpu")


@pytest.mark.parametrize(
    "largest, limit, expected", [(37, 256, 37), (1, 256, 1), (300, 256, 256), (0, 64, 0), (64, 64, 64), (5, 7, 5)]
)
def test_batch_search(largest, limit, expected):
    tried = []

    def fits(b: int) -> bool:
        tried.append(b)
        return b <= largest

    assert search_batch(fits, limit) == expected
    assert len(tried) <= 2 * (limit.bit_length() + 1) and all(b <= limit for b in tried)
