"""Regenerate docs/img/style_loss.png: examples/style_loss.py on the tests' sharpened tiny model.

No real model can be downloaded where this project is built, so the figure comes from the tiny random-weight
Stable Diffusion pipeline (tests/tiny_sd.py + tests/tiny_sharp.py). It shows what the example writes and
that the loss goes down, not a learned style transfer: run the example with SD 1.5 for that.

    python docs/make_loss_figure.py          # writes docs/img/style_loss.png
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.tiny_sd import build_tiny_pipeline  # noqa: E402
from tests.tiny_sharp import sharpen_pipeline  # noqa: E402

SIZE = 128


def main() -> None:
    spec = importlib.util.spec_from_file_location("style_loss", ROOT / "examples" / "style_loss.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    refs = [ROOT / "examples" / "house_dusk.png", ROOT / "examples" / "house_day.png"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = sharpen_pipeline(build_tiny_pipeline(tmp / "tiny"), tmp / "sharp", refs, size=SIZE)
        r = example.run(refs[0], refs[1], tmp / "out", model=str(model), layer="up1", step=500, size=SIZE,
                        steps=40, lr=0.05, device="cpu", dtype="float32")
        shutil.copy(tmp / "out" / "style_loss.png", ROOT / "docs" / "img" / "style_loss.png")
    print(f"style loss {r['style_loss_before']:.4f} -> {r['style_loss_after']:.4f}; wrote docs/img/style_loss.png")


if __name__ == "__main__":
    main()
