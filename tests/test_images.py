"""Image loading and preprocessing: every input type, EXIF, crop, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffsim.errors import ConfigError, ImageError
from diffsim.images import as_list, content_hash, is_single, to_unit_tensor
from diffsim.preprocess import Resize


def test_path_pil_numpy_tensor_agree(image_files):
    path = image_files[0]
    pil = Image.open(path).convert("RGB")
    arr = np.asarray(pil)
    from_path = to_unit_tensor(path, 32)
    assert torch.equal(from_path, to_unit_tensor(pil, 32))
    assert torch.equal(from_path, to_unit_tensor(arr, 32))
    tensor = torch.from_numpy(arr.astype(np.float32) / 255).permute(2, 0, 1)
    # float Lanczos on the tensor vs uint8 Lanczos on the PIL image: equal up to 8-bit rounding
    assert (to_unit_tensor(tensor, 32) - from_path).abs().max() < 1.5 / 255


def test_preprocess_range_shape_and_resize_ignores_aspect(image_files):
    step = Resize(48, signed=True)  # DiffSim-S's step: [-1, 1] for the VAE
    x = torch.stack([step(str(p), i) for i, p in enumerate(image_files[:2])])
    assert x.shape == (2, 3, 48, 48) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.min() < 0
    import pickle

    assert pickle.loads(pickle.dumps(step)) == step  # picklable: usable in DataLoader workers


def test_center_crop_keeps_aspect(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :10] = 255  # white band on the left, cropped away by a centred square
    Image.fromarray(arr).save(tmp_path / "wide.png")
    assert to_unit_tensor(tmp_path / "wide.png", 20, crop="center").max() == 0
    assert to_unit_tensor(tmp_path / "wide.png", 20).max() > 0


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im.save(tmp_path / "rot.jpg", exif=exif)
    from diffsim.images import load_image

    assert load_image(tmp_path / "rot.jpg").size == (10, 20)


def test_single_and_batch_detection():
    assert is_single("a.png") and is_single(torch.rand(3, 8, 8)) and not is_single(torch.rand(2, 3, 8, 8))
    assert len(as_list(torch.rand(2, 3, 8, 8))) == 2 and len(as_list(["a", "b"])) == 2


def test_content_hash_depends_on_pixels_only():
    x = torch.rand(3, 8, 8)
    assert content_hash(x) == content_hash(x.clone())
    y = x.clone()
    y[0, 0, 0] += 0.01
    assert content_hash(x) != content_hash(y)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="not found: .*nope.png"):
        to_unit_tensor(tmp_path / "nope.png", 32)


def test_truncated_or_non_image_file(tmp_path, image_files):
    data = image_files[0].read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="cut.png"):
        to_unit_tensor(tmp_path / "cut.png", 32)
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="cannot read image .*text.jpg"):
        to_unit_tensor(tmp_path / "text.jpg", 32)
    with pytest.raises(ImageError, match="directory"):
        to_unit_tensor(tmp_path, 32)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.rand(3, 8, 8) * 2 - 1, r"\[0, 1\].*\(x \+ 1\) / 2"),
        (torch.rand(3, 8, 8) * 255, r"divide by 255"),
        (torch.rand(4, 8, 8), r"shape"),
        (torch.rand(1, 2, 3, 8, 8), r"shape"),
        (torch.randint(0, 255, (3, 8, 8)), r"dtype int64: expected float in \[0, 1\], uint8"),
        (torch.full((3, 8, 8), float("nan")), r"NaN"),
    ],
)
def test_bad_tensors(bad, match):
    with pytest.raises(ImageError, match=match):
        to_unit_tensor(bad, 8)


def test_bad_array_and_type():
    with pytest.raises(ImageError, match="shape"):
        to_unit_tensor(np.zeros((8, 8, 5), np.uint8), 8)
    with pytest.raises(ImageError, match="unsupported image type"):
        to_unit_tensor(42, 8)  # type: ignore[arg-type]


def test_bad_size_and_crop():
    from diffsim.bounds import check_crop, check_size

    with pytest.raises(ConfigError, match="multiple of 8"):
        check_size(100)
    with pytest.raises(ConfigError, match="crop"):
        check_crop("left")
