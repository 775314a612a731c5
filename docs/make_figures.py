"""Regenerate docs/img/map.png and docs/img/matrix.png from examples/ with a tiny random-weight model.

No real model can be downloaded where this project is built, so the figures come from the tests' tiny
Stable Diffusion pipeline (random weights, real diffusers classes; tests/tiny_sd.py) with a deterministic
VAE and peaked self-attention (tests/tiny_sharp.py). They show what `diffsim map` and `diffsim matrix`
draw and how, not learned similarity: run the same commands with the default SD 1.5 model for that.

    python docs/make_figures.py          # writes docs/img/map.png, docs/img/matrix.png
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageFilter, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from diffsim import DiffSim  # noqa: E402
from diffsim.viz import overlay_figure, pair_maps, save, save_matrix, score_matrix  # noqa: E402
from tests.tiny_sd import build_tiny_pipeline  # noqa: E402
from tests.tiny_sharp import sharpen_pipeline  # noqa: E402

SIZE = 256  # working resolution: up0 is 8 x 8 tokens, up1 16 x 16, up2 32 x 32
NOTE = "tiny random-weight model (docs/make_figures.py): shows the figure, not learned similarity"


def variants(folder: Path) -> list[Path]:
    """The two example images and four edits of them, saved to ``folder``."""
    day = Image.open(ROOT / "examples" / "house_day.png").convert("RGB")
    dusk = Image.open(ROOT / "examples" / "house_dusk.png").convert("RGB")
    images = {
        "house_day.png": day,
        "house_dusk.png": dusk,
        "day_mirrored.png": ImageOps.mirror(day),
        "day_blurred.png": day.filter(ImageFilter.GaussianBlur(4)),
        "day_shifted.png": day.transform(day.size, Image.AFFINE, (1, 0, 24, 0, 1, 0), fillcolor=(120, 180, 230)),
        "dusk_grey.png": ImageOps.grayscale(dusk).convert("RGB"),
    }
    paths = []
    for name, im in images.items():
        im.save(folder / name)
        paths.append(folder / name)
    return paths


def main() -> None:
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = variants(tmp)
        model = sharpen_pipeline(build_tiny_pipeline(tmp / "tiny"), tmp / "tiny-sharp", images, size=SIZE)
        metric = DiffSim.from_pretrained(model, size=SIZE, device="cpu", dtype="float32", layer="up1")
        a, b = images[0], images[1]
        maps = pair_maps(metric, a, b)
        save(overlay_figure(a, b, maps, note=NOTE), out / "map.png")
        sm = score_matrix(metric.with_settings(layer="up0"), images)
        save_matrix(sm, out / "matrix.png", title=f"diffsim-s (up0), {len(images)} × {len(images)}\n{NOTE}")
    print(f"wrote {out / 'map.png'} and {out / 'matrix.png'}")


if __name__ == "__main__":
    main()
