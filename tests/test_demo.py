"""`diffsim demo` as users meet it: the app served on localhost, driven through gradio_client and a browser."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffsim import ImageError
from diffsim.app import Engine

gr = pytest.importorskip("gradio")
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.*")  # gradio's own pandas deprecations
pytest.importorskip("matplotlib")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(sharp_metric):
    from diffsim.app import launch

    engine = Engine(sharp_metric)
    port = free_port()
    demo = launch(engine, "127.0.0.1", port, block=False, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        yield engine, url, Client(url, verbose=False)
    finally:
        demo.close()


@pytest.fixture()
def truncated(image_files, tmp_path) -> Path:
    p = tmp_path / "broken.png"
    p.write_bytes(Path(image_files[0]).read_bytes()[:200])
    return p


def expected(metric, layer, step):
    return metric.with_settings(layer=layer, step=step)


def test_api_names(served):
    _, _, client = served
    assert {"/pair", "/rank", "/twoafc"} <= set(
        client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    )


def test_pair_tab(served, sharp_metric, image_files):
    _, _, client = served
    a, b = image_files[0], image_files[1]
    score, figure, status = client.predict(handle_file(str(a)), handle_file(str(b)), "up1", 500, api_name="/pair")
    assert score == pytest.approx(expected(sharp_metric, "up1", 500).score(a, b), abs=2e-6)
    assert "**up1** (4×4 tokens)" in status and "higher = more similar" in status
    with Image.open(figure) as fig:
        assert fig.size == (1000, 540)  # the `diffsim map` figure: both images, one colour bar, the score
        assert_colour_bar(fig.convert("RGB"))


def assert_colour_bar(fig: Image.Image) -> None:
    """The figure's colour bar runs through the map's colour map: red-brown at the top, blue at the bottom."""
    from matplotlib import colormaps

    from diffsim.viz.maps import CMAP

    x = round(0.884 * fig.width)  # the middle of the colour bar's axes (viz.maps.overlay_figure)
    top, bottom = round((1 - 0.77) * fig.height), round((1 - 0.11) * fig.height)
    column = np.asarray(fig)[top : bottom + 1, x].astype(float)
    cmap = colormaps[CMAP]
    for row, value in ((column[0], 0.99), (column[-1], 0.01)):  # drawn at alpha 0.5 over white, as on the maps
        want = 0.5 * np.asarray(cmap(value)[:3]) * 255 + 0.5 * 255
        assert np.abs(row - want).max() < 20, (row, want)
    assert len({tuple(c) for c in column.astype(int)}) > 50  # a gradient, not a flat patch


def test_layer_and_step_changes_reuse_latents(served, sharp_metric, image_files):
    _, _, client = served
    backbone = sharp_metric.backbone
    a, b = image_files[2], image_files[4]
    before, calls_before = backbone.images_encoded, backbone.passes
    settings = [("up0", 500), ("up1", 300), ("up2", 800), ("mid", 100), ("up0", 500)]
    scores = [
        client.predict(handle_file(str(a)), handle_file(str(b)), layer, step, api_name="/pair")[0]
        for layer, step in settings
    ]
    assert backbone.images_encoded - before == 2  # each image went through the VAE once, for every setting
    assert backbone.passes - calls_before == 4  # one U-Net pass per new (layer, step); the repeat is cached
    for (layer, step), score in zip(settings, scores, strict=False):
        assert score == pytest.approx(expected(sharp_metric, layer, step).score(a, b), abs=2e-6), (layer, step)


def test_rank_tab(served, sharp_metric, image_files, truncated):
    _, _, client = served
    ref, cands = image_files[0], image_files[1:5]
    gallery, table = client.predict(
        handle_file(str(ref)),
        [{"image": handle_file(str(c)), "caption": None} for c in [*cands, truncated]],
        "up1",
        500,
        api_name="/rank",
    )
    scores = expected(sharp_metric, "up1", 500).score(ref, cands).tolist()
    order = sorted(range(4), key=lambda i: -scores[i])
    assert [g["caption"].split(" · ")[2] for g in gallery] == [Path(cands[i]).name for i in order]
    assert [float(g["caption"].split(" · ")[1]) for g in gallery] == pytest.approx([scores[i] for i in order], abs=1e-4)
    assert [g["caption"].split(" · ")[0] for g in gallery] == ["#1", "#2", "#3", "#4"]
    assert "**Skipped:** candidate 5: cannot read image" in table and "broken.png" in table


def test_twoafc_tab(served, sharp_metric, image_files):
    _, _, client = served
    ref, a, b = image_files[0], image_files[1], image_files[3]
    sa, sb, verdict = client.predict(
        handle_file(str(ref)), handle_file(str(a)), handle_file(str(b)), "up1", 500, api_name="/twoafc"
    )
    m = expected(sharp_metric, "up1", 500)
    fr, fa, fb = (m.embed(x) for x in (ref, a, b))
    ea, eb = float(m.compare(fr, fa)), float(m.compare(fr, fb))
    assert (sa, sb) == pytest.approx((ea, eb), abs=2e-6)
    closer = "A" if int(m.decide(fr, fa, fb)) == 1 else "B"
    found = re.match(r"\*\*Candidate ([AB])\*\* is closer to the reference, by ([0-9.]+) ", verdict)
    assert found and found[1] == closer and float(found[2]) == pytest.approx(abs(ea - eb), abs=4e-6)


def test_bad_uploads_are_explained_in_the_page(served, image_files, truncated, tmp_path):
    _, _, client = served
    out = client.predict(None, handle_file(str(image_files[0])), "up0", 500, api_name="/pair")
    assert out[:2] == (None, None) and out[2] == "**Error:** image A: no image uploaded"
    out = client.predict(handle_file(str(image_files[0])), handle_file(str(truncated)), "up0", 500, api_name="/pair")
    assert out[2].startswith("**Error:** image B: cannot read image") and "truncated" in out[2]
    assert "\n" not in out[2]
    out = client.predict(handle_file(str(image_files[0])), None, None, "up0", 500, api_name="/twoafc")
    assert out[2] == "**Error:** candidate A: no image uploaded"
    out = client.predict(handle_file(str(image_files[0])), [], "up0", 500, api_name="/rank")
    assert out[1] == "**Error:** candidates: no images uploaded"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(
        AppError, match=r"^Image A: cannot read notes.txt: not an image file \(UnidentifiedImageError\)$"
    ):
        client.predict(handle_file(str(text)), handle_file(str(image_files[0])), "up0", 500, api_name="/pair")
    cands = [{"image": handle_file(str(text)), "caption": None}]
    with pytest.raises(AppError, match="Invalid file type"):  # the candidates' gallery refuses non-images itself
        client.predict(handle_file(str(image_files[0])), cands, "up0", 500, api_name="/rank")


def test_engine_errors(sharp_metric, tiny_clip_path):
    from diffsim import ConfigError, create_metric

    engine = Engine(sharp_metric)
    with pytest.raises(ConfigError, match="step must be between 0 and 1000"):
        engine.settings("up0", 1001)
    with pytest.raises(ImageError, match="reference: no image uploaded"):
        engine.rank(None, ["x.png"])
    clip = create_metric("clip-i", model=tiny_clip_path, device="cpu", dtype="float32", size=32)
    with pytest.raises(ConfigError, match="needs a DiffSim-S metric"):
        Engine(clip)
    assert torch.is_tensor(engine.pair(*_two(sharp_metric)).map_a)


def _two(metric):
    g = torch.Generator().manual_seed(3)
    return torch.rand(3, 64, 64, generator=g), torch.rand(3, 64, 64, generator=g)


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture()
def browser():
    """Headless Chromium through Selenium (skips with the install command where Chromium is missing)."""
    found = _chromium()
    if found is None:
        pytest.skip("no Chromium + chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1600",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=found[1]))
    try:
        yield driver
    finally:
        driver.quit()


def _preview(driver, elem: str) -> str:
    """The src of the preview image shown in an image input ('' while there is none)."""
    from selenium.webdriver.common.by import By

    imgs = driver.find_elements(By.CSS_SELECTOR, f"#{elem} img")
    return imgs[0].get_attribute("src") or "" if imgs else ""


def _compare_and_read(driver, start: float) -> tuple[float, str]:
    """Click Compare until the status shows a score (an upload may still be in flight); the score and status."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    status = ""
    while "score" not in status and time.perf_counter() - start < 50:
        driver.find_element(By.ID, "pair-run").click()
        with contextlib.suppress(TimeoutException):
            WebDriverWait(driver, 8).until(lambda d: "score" in d.find_element(By.ID, "pair-status").text)
        status = driver.find_element(By.ID, "pair-status").text
    assert "score" in status, f"no score in the page; status: {status!r}"
    return float(driver.find_element(By.CSS_SELECTOR, "#pair-score input").get_attribute("value")), status


def test_browser_uploads_two_images_and_reads_the_score(served, sharp_metric, image_files, browser):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    engine, url, _ = served
    assert (engine.default_layer, engine.default_step) == ("up1", 500)
    start = time.perf_counter()
    browser.get(url)
    wait = WebDriverWait(browser, 40)
    a, b = image_files[0], image_files[3]
    for elem, path in (("pair-a", a), ("pair-b", b)):
        box = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"#{elem} input[type=file]")))
        box.send_keys(str(Path(path).resolve()))
        try:  # the upload is previewed in the input
            wait.until(lambda d, e=elem, n=Path(path).name: n in _preview(d, e))
        except TimeoutException:
            raise AssertionError(f"no preview of {path}: {_preview(browser, elem)!r}") from None
    shown, status = _compare_and_read(browser, start)
    want = expected(sharp_metric, "up1", 500).score(a, b)  # the page starts at the metric's layer and step
    assert shown == pytest.approx(want, abs=2e-6)
    assert f"Layer up1 (4×4 tokens), step 500: score {shown:.6f}" in status
    assert wait.until(lambda d: _preview(d, "pair-map"))  # the map figure is shown
    assert time.perf_counter() - start < 60


def test_browser_example_click_loads_and_scores(served, sharp_metric, browser):
    """Clicking the first example row fills both inputs (with previews); Compare scores those files."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from diffsim.app.examples import example_sets, find_images, repository_examples

    _, url, _ = served
    first = example_sets(find_images(repository_examples())).pairs[0]
    start = time.perf_counter()
    browser.get(url)
    wait = WebDriverWait(browser, 40)
    row = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#pair-examples tr.tr-body")))
    row.click()
    for elem, path in zip(("pair-a", "pair-b"), first, strict=True):
        wait.until(lambda d, e=elem, n=Path(path).name: n in _preview(d, e))
    shown, _ = _compare_and_read(browser, start)
    assert shown == pytest.approx(expected(sharp_metric, "up1", 500).score(*first), abs=2e-6)
    for tab, examples in (("Rank", "rank-examples"), ("2AFC", "afc-examples")):  # every tab has its examples
        browser.find_element(By.XPATH, f"//button[@role='tab' and normalize-space()='{tab}']").click()
        wait.until(lambda d, x=examples: d.find_elements(By.CSS_SELECTOR, f"#{x} tr.tr-body img"))


def test_examples_in_every_tab(served):
    """The repository's example images are clickable rows under every tab, grouped by scene."""
    from diffsim.app.examples import example_sets, find_images, repository_examples

    engine, _, _ = served
    files = find_images(repository_examples())
    names = {Path(f).name for f in files}
    assert {"house_day.png", "house_dusk.png", "boat_day.png", "boat_sunset.png"} <= names
    sets = example_sets(files)
    assert [Path(p).name for p in sets.pairs[0]] == ["house_day.png", "house_dusk.png"]
    for ref, a, b in sets.twoafc:  # the same scene against another one
        assert Path(ref).stem.split("_")[0] == Path(a).stem.split("_")[0] != Path(b).stem.split("_")[0]
    ref, cands = sets.rankings[0]
    assert ref not in cands and len(cands) == len(files) - 1
    from diffsim.app import build_demo

    config = build_demo(engine).get_config_file()
    datasets = {c["props"]["elem_id"]: c["props"] for c in config["components"] if c["type"] == "dataset"}
    assert set(datasets) == {"pair-examples", "rank-examples", "afc-examples"}
    inputs = {c["props"].get("elem_id"): c["type"] for c in config["components"]}
    assert inputs["pair-a"] == inputs["afc-ref"] == "image" and inputs["rank-cands"] == "gallery"  # previews
    assert not [c for c in build_demo(engine, examples=None).get_config_file()["components"] if c["type"] == "dataset"]
    assert example_sets([files[0]]).pairs == [] and example_sets([]).rankings == []


def test_progress_says_when_the_model_loads(sharp_sd_path, image_files, tmp_path):
    """A lazily loaded model: the first computation announces the load, later ones the embedding."""
    from diffsim import DiffSim
    from diffsim.app.ui import LOADING, Handlers

    model = shutil.copytree(sharp_sd_path, tmp_path / "sharp")  # a new path: not loaded in this process yet
    metric = DiffSim.from_pretrained(model, layer="up1", size=64, device="cpu", dtype="float32")
    assert metric.backbone.weights_loaded is False
    seen: list[str] = []
    handlers = Handlers(Engine(metric))
    a, b = image_files[0], image_files[1]
    score, figure, _ = handlers.pair(a, b, "up1", 500, lambda *_, desc="": seen.append(desc))
    assert seen[0] == LOADING and metric.backbone.weights_loaded is True
    assert score == pytest.approx(metric.score(a, b), abs=2e-6) and figure.size == (1000, 540)
    seen.clear()
    handlers.pair(a, b, "up1", 300, lambda *_, desc="": seen.append(desc))
    assert seen[0] == "Embedding the two images" and LOADING not in seen
