"""Regenerate every picture of the documentation: one command.

    python docs/make_figures.py                  # map.png, matrix.png, retrieval.png, app.png in docs/img/
    python docs/make_figures.py --no-screenshot  # without the web app screenshot (needs Chromium)

No real model can be downloaded where this project is built, so the figures come from the tests' tiny
Stable Diffusion pipeline (random weights, real diffusers classes; tests/tiny_sd.py) with a deterministic
VAE and peaked self-attention (tests/tiny_sharp.py). Every figure says so in its own text: they show what
`diffsim map`, `diffsim matrix`, `diffsim retrieve --grid` and `diffsim demo` draw, not learned similarity.
Run those commands with the default SD 1.5 model for that. Inputs: the example images in examples/
(procedural, CC0) and a few edits of them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "docs")]

from tests.tiny_sd import build_tiny_pipeline  # noqa: E402
from tests.tiny_sharp import sharpen_pipeline  # noqa: E402

from diffsim import DiffSim  # noqa: E402
from diffsim.gallery.grid import ResultRow, retrieval_grid  # noqa: E402
from diffsim.viz import overlay_figure, pair_maps, save, save_matrix, score_matrix  # noqa: E402

SIZE = 256  # working resolution: up0 is 8 x 8 tokens, up1 16 x 16, up2 32 x 32
NOTE = "tiny random-weight model (docs/make_figures.py): shows the figure, not learned similarity"
EX = ROOT / "examples"


def _open(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def edits(folder: Path) -> dict[str, Path]:
    """The example images and edits of some of them, saved to ``folder``: name -> path."""
    day, dusk = _open(EX / "house_day.png"), _open(EX / "house_dusk.png")
    boat, sunset = _open(EX / "images" / "boat_day.png"), _open(EX / "images" / "boat_sunset.png")
    images = {
        "house_day.png": day,
        "house_dusk.png": dusk,
        "house_day_mirrored.png": ImageOps.mirror(day),
        "house_day_blurred.png": day.filter(ImageFilter.GaussianBlur(4)),
        "house_dusk_greyscale.png": ImageOps.grayscale(dusk).convert("RGB"),
        "boat_day.png": boat,
        "boat_sunset.png": sunset,
        "boat_day_cropped.png": boat.crop((30, 30, 230, 230)).resize(boat.size),
    }
    for p in sorted((EX / "images").glob("*.png")):
        images.setdefault(p.name, _open(p))
    out = {}
    for name, im in images.items():
        im.save(folder / name)
        out[name] = folder / name
    return out


def labelled(path: Path, text: str) -> None:
    """Add a line of text above a PNG (for figures drawn without a title of their own)."""
    with Image.open(path) as im:
        body = im.convert("RGB")
    band = 28
    out = Image.new("RGB", (body.width, body.height + band), "white")
    out.paste(body, (0, band))
    ImageDraw.Draw(out).text((8, 6), text, fill=(60, 60, 60), font=ImageFont.load_default(size=14))
    out.save(path)


def retrieval(metric, images: dict[str, Path], queries: list[str], out: Path, k: int = 5) -> Path:
    """A retrieval grid: each query against every other image, top ``k`` (what `retrieve --grid` draws)."""
    rows = []
    for q in queries:
        gallery = [n for n in images if n != q]
        scores = metric.matrix([images[q]], [images[n] for n in gallery])[0].tolist()
        order = sorted(range(len(gallery)), key=lambda i: -scores[i])[:k]
        hits = [(str(images[gallery[i]]), gallery[i], float(scores[i])) for i in order]
        rows.append(ResultRow(images[q], q, "diffsim-s (up0)", hits))
    retrieval_grid(rows, out, thumb=150)
    labelled(out, "Retrieval grid, " + NOTE)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the documentation's pictures in docs/img/.")
    parser.add_argument("--no-screenshot", action="store_true", help="skip docs/img/app.png (needs Chromium)")
    args = parser.parse_args()
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "img").mkdir()
        images = edits(tmp / "img")
        paths = list(images.values())
        model = sharpen_pipeline(build_tiny_pipeline(tmp / "tiny"), tmp / "tiny-sharp", paths, size=SIZE)
        metric = DiffSim.from_pretrained(model, size=SIZE, device="cpu", dtype="float32", layer="up1")
        a, b = images["house_day.png"], images["house_dusk.png"]
        save(overlay_figure(a, b, pair_maps(metric, a, b), note=NOTE), out / "map.png")
        up0 = metric.with_settings(layer="up0")
        chosen = [n for n in images if n.startswith(("house_", "boat_day"))][:6]
        sm = score_matrix(up0, [images[n] for n in chosen])
        save_matrix(sm, out / "matrix.png", title=f"diffsim-s (up0), {len(chosen)} × {len(chosen)}\n{NOTE}")
        retrieval(up0, images, ["house_day_blurred.png", "boat_day_cropped.png"], out / "retrieval.png")
        written = ["map.png", "matrix.png", "retrieval.png"]
        if not args.no_screenshot:
            from make_screenshot import screenshot

            screenshot(metric, out / "app.png", title="diffsim · tiny random-weight model (docs/make_figures.py)")
            written.append("app.png")
    print("wrote " + ", ".join(str(out / n) for n in written))


if __name__ == "__main__":
    main()
