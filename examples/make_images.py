"""Draw the example images in examples/images/ (procedural scenes, made for this project; CC0).

Pairs share a scene and differ in light, season or colour (``boat_day`` / ``boat_sunset``), so the web app's
examples and the docs figures have images that should score close and images that should not.

    python examples/make_images.py        # rewrites examples/images/*.png (256 x 256, a few kB each)
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 256
OUT = Path(__file__).resolve().parent / "images"


def _sky(top: tuple[int, int, int], bottom: tuple[int, int, int], horizon: int) -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE))
    d = ImageDraw.Draw(im)
    for y in range(horizon):
        t = y / max(horizon - 1, 1)
        d.line([(0, y), (SIZE, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    return im


def boat(sky_top, sky_bottom, sea, sun, sail) -> Image.Image:
    im = _sky(sky_top, sky_bottom, 170)
    d = ImageDraw.Draw(im)
    d.ellipse((150, 60, 200, 110), fill=sun)
    d.rectangle((0, 160, SIZE, SIZE), fill=sea)
    for y in range(172, SIZE, 14):  # waves
        d.arc((10 + (y % 28), y, 60 + (y % 28), y + 10), 200, 340, fill=tuple(min(255, c + 40) for c in sea), width=2)
        d.arc((140 - (y % 28), y, 190 - (y % 28), y + 10), 200, 340, fill=tuple(min(255, c + 40) for c in sea), width=2)
    d.polygon([(70, 165), (170, 165), (150, 188), (90, 188)], fill=(110, 60, 30))  # hull
    d.line([(120, 80), (120, 165)], fill=(60, 40, 20), width=4)  # mast
    d.polygon([(123, 84), (123, 160), (170, 160)], fill=sail)
    d.polygon([(117, 95), (117, 160), (82, 160)], fill=tuple(max(0, c - 30) for c in sail))
    return im


def tree(sky, ground, crown, fruit=None) -> Image.Image:
    im = _sky(sky, tuple(min(255, c + 40) for c in sky), 190)
    d = ImageDraw.Draw(im)
    d.ellipse((-60, 170, 320, 330), fill=ground)  # hill
    d.rectangle((116, 120, 140, 200), fill=(95, 60, 35))  # trunk
    for box in ((70, 50, 150, 130), (105, 35, 185, 115), (90, 80, 180, 150), (60, 85, 130, 145)):
        d.ellipse(box, fill=crown)
    for x, y in fruit or ():
        d.ellipse((x, y, x + 10, y + 10), fill=(200, 30, 30))
    return im


def house(sky, ground, wall, roof, snow=False) -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), sky)
    d = ImageDraw.Draw(im)
    d.rectangle((0, 190, SIZE, SIZE), fill=ground)
    d.rectangle((60, 120, 170, 200), fill=wall)
    d.polygon([(50, 125), (115, 60), (180, 125)], fill=roof)
    d.rectangle((100, 150, 130, 200), fill=(90, 55, 30))  # door
    d.rectangle((70, 135, 92, 157), fill=(200, 225, 245))  # window
    if snow:
        d.polygon([(50, 125), (115, 60), (180, 125), (170, 117), (115, 72), (60, 117)], fill=(250, 250, 250))
        for i in range(60):  # flakes at fixed pseudo-random places
            x, y = (i * 97) % SIZE, (i * 53) % 180
            d.ellipse((x, y, x + 3, y + 3), fill=(255, 255, 255))
    return im


SCENES = {
    "boat_day.png": lambda: boat((90, 160, 230), (180, 215, 245), (40, 100, 170), (255, 220, 60), (245, 245, 235)),
    "boat_sunset.png": lambda: boat((60, 40, 110), (250, 140, 70), (70, 60, 110), (255, 120, 40), (235, 200, 170)),
    "tree_summer.png": lambda: tree((120, 180, 235), (70, 150, 60), (40, 120, 40), [(95, 70), (140, 60), (120, 110)]),
    "tree_autumn.png": lambda: tree((170, 190, 210), (150, 130, 60), (210, 120, 30)),
    "house_snow.png": lambda: house((175, 185, 200), (240, 242, 248), (225, 195, 150), (150, 40, 40), snow=True),
    "house_spring.png": lambda: house((140, 200, 240), (60, 140, 60), (120, 150, 210), (60, 60, 70)),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, draw in SCENES.items():
        draw().filter(ImageFilter.SMOOTH).save(OUT / name, optimize=True)
    print(f"wrote {len(SCENES)} images to {OUT}")


if __name__ == "__main__":
    main()
