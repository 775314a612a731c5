"""Screenshot of the web app (docs/img/app.png) taken through headless Chromium.

Serves ``diffsim.app`` on a free localhost port, opens it in headless Chromium (Selenium), clicks the first
example of the Pair tab, presses Compare, waits for the score and the map, and saves the whole page.
``docs/make_figures.py`` calls it with its tiny random-weight model; on its own it takes any local
diffusers folder:

    python docs/make_screenshot.py --model /models/sd15 [--out docs/img/app.png]

Needs the ``demo`` extra, selenium, and ``chromium`` + ``chromedriver`` on PATH (Debian:
``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

WIDTH, TALL = 1280, 2800
# the page's content height: gradio scrolls inside its own container, so the document's height is the window's
BOTTOM = (
    "return Math.ceil(Math.max(...Array.from(document.querySelectorAll('#pair-map, #pair-status'))"
    ".map(e => e.getBoundingClientRect().bottom + window.scrollY)))"
)


def chromium() -> tuple[str, str] | None:
    """(browser, driver) executables, or None where Chromium is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def screenshot(metric: Any, out: Path, title: str = "diffsim") -> Path:
    """Serve the app for ``metric``, load the first Pair example, compare, and save the page as ``out``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from diffsim.app import Engine, launch

    found = chromium()
    if found is None:
        raise SystemExit("no chromium + chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    port = _free_port()
    demo = launch(Engine(metric), "127.0.0.1", port, block=False, quiet=True, title=title)
    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.add_argument(f"--window-size={WIDTH},1400")
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=found[1]))
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 60)
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#pair-examples tr.tr-body"))).click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#pair-a img, #pair-b img")) == 2)
        time.sleep(1.0)  # the example's files finish loading into the inputs
        driver.find_element(By.ID, "pair-run").click()
        wait.until(lambda d: "score" in d.find_element(By.ID, "pair-status").text)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pair-map img"))
        time.sleep(1.5)  # let the map image and the layout settle
        driver.set_window_size(WIDTH, TALL)  # room for the whole page, then cut at the content's bottom
        time.sleep(1.5)
        bottom = int(driver.execute_script(BOTTOM)) + 24
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
        with Image.open(out) as shot:
            page = shot.convert("RGB")
        page.crop((0, 0, page.width, min(bottom, page.height))).save(out, optimize=True)
    finally:
        driver.quit()
        demo.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a local diffusers folder (or hub id in the HF cache)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "app.png")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    from diffsim import DiffSim

    metric = DiffSim.from_pretrained(args.model, size=args.size)
    print(f"wrote {screenshot(metric, args.out)}")


if __name__ == "__main__":
    main()
