"""One picture saved as 8-bit, 16-bit and float TIFF is one picture: same pixels after resizing, score ~1.

Pillow's 8-bit resize clips to 0..255 between its horizontal and vertical passes; the high-bit path
must clip at the same point, or Lanczos / bicubic overshoot at sharp edges moves pixels by up to ~0.04
and a sensitive model scores a picture against its own 16-bit copy ~0.97.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffsim.images import to_unit_resized, to_unit_tensor

from .conftest import SIZE


def _edges() -> np.ndarray:
    """A grey picture with hard edges (black/white steps, thin lines, salt noise): the worst case for overshoot."""
    rng = np.random.default_rng(0)
    g = np.zeros((97, 131), np.uint8)
    g[:, 40:] = 255
    g[30:60, 70:100] = 0
    g[::7] = 128
    return np.where(rng.random(g.shape) < 0.05, 255 - g, g).astype(np.uint8)


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("twins")
    g = _edges()
    files = {"8-bit": folder / "a8.tif", "16-bit": folder / "a16.tif", "float": folder / "af.tif"}
    Image.fromarray(g, "L").save(files["8-bit"])
    Image.fromarray(g.astype(np.uint16) * 257).save(files["16-bit"])
    Image.fromarray(g.astype(np.float32) / 255.0, "F").save(files["float"])
    assert Image.open(files["16-bit"]).mode == "I;16" and Image.open(files["float"]).mode == "F"
    return files


@pytest.mark.parametrize("depth", ["16-bit", "float"])
@pytest.mark.parametrize("crop", ["none", "center"])
def test_lanczos_twins_within_one_level(twins: dict[str, Path], depth: str, crop: str) -> None:
    a = to_unit_tensor(twins["8-bit"], SIZE, crop)
    b = to_unit_tensor(twins[depth], SIZE, crop)
    assert float((a - b).abs().max()) <= 1 / 255
    assert float(b.min()) >= 0.0 and float(b.max()) <= 1.0


@pytest.mark.parametrize("depth", ["16-bit", "float"])
def test_bicubic_crop_twins_within_one_level(twins: dict[str, Path], depth: str) -> None:
    a = to_unit_resized(twins["8-bit"], 72, 64)
    b = to_unit_resized(twins[depth], 72, 64)
    assert float((a - b).abs().max()) <= 1 / 255


def test_tensor_input_matches_its_8bit_file(twins: dict[str, Path]) -> None:
    """A float tensor of the picture is resized like the 16-bit file (one high-bit path)."""
    g = torch.from_numpy(_edges().astype(np.float32) / 255.0).expand(3, -1, -1)
    a = to_unit_tensor(twins["8-bit"], SIZE)
    assert float((a - to_unit_tensor(g, SIZE)).abs().max()) <= 1 / 255


def test_twins_score_one_on_a_sharp_model(sharp_metric, twins: dict[str, Path], image_files: list[Path]) -> None:
    ref = twins["8-bit"]
    for depth in ("16-bit", "float"):
        assert float(sharp_metric.score(ref, twins[depth])) >= 0.999, depth
    # the model does see differences: another picture scores clearly lower
    assert float(sharp_metric.score(ref, image_files[0])) < 0.99
