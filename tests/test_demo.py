"""`diffsim demo` as users meet it: the app served on localhost, driven through gradio_client and a browser."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import time
from pathlib import Path

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
    score, over_a, over_b, status = client.predict(
        handle_file(str(a)), handle_file(str(b)), "up1", 500, api_name="/pair"
    )
    assert score == pytest.approx(expected(sharp_metric, "up1", 500).score(a, b), abs=2e-6)
    with Image.open(a) as ia, Image.open(over_a) as oa, Image.open(over_b) as ob:
        assert oa.size == ia.size and ob.size == (88, 72)  # each overlay at its image's own size
    assert "**up1** (4×4 tokens)" in status and "higher = more similar" in status


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
        [handle_file(str(c)) for c in cands] + [handle_file(str(truncated))],
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
    assert out[:3] == (None, None, None) and out[3] == "**Error:** image A: no image uploaded"
    out = client.predict(handle_file(str(image_files[0])), handle_file(str(truncated)), "up0", 500, api_name="/pair")
    assert out[3].startswith("**Error:** image B: cannot read image") and "truncated" in out[3]
    out = client.predict(handle_file(str(image_files[0])), None, None, "up0", 500, api_name="/twoafc")
    assert out[2] == "**Error:** candidate A: no image uploaded"
    out = client.predict(handle_file(str(image_files[0])), [], "up0", 500, api_name="/rank")
    assert out[1] == "**Error:** candidates: no images uploaded"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(AppError, match="Invalid file type"):  # gradio refuses non-image files itself
        client.predict(handle_file(str(text)), handle_file(str(image_files[0])), "up0", 500, api_name="/pair")


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


def test_browser_uploads_two_images_and_reads_the_score(served, sharp_metric, image_files):
    found = _chromium()
    if found is None:
        pytest.skip("no Chromium + chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    engine, url, _ = served
    assert (engine.default_layer, engine.default_step) == ("up1", 500)
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
        start = time.perf_counter()
        driver.get(url)
        wait = WebDriverWait(driver, 40)
        a, b = image_files[0], image_files[3]
        for elem, path in (("pair-a", a), ("pair-b", b)):
            box = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"#{elem} input[type=file]")))
            box.send_keys(str(Path(path).resolve()))
            try:
                wait.until(lambda d, e=elem, n=Path(path).stem: n in d.find_element(By.ID, e).text)
            except TimeoutException:
                driver.save_screenshot("/tmp/pic_fail.png")
                raise AssertionError(f"upload of {path} not shown: {driver.find_element(By.ID, elem).text!r}") from None
        status = ""
        while "score" not in status and time.perf_counter() - start < 50:  # an upload may still be in flight
            driver.find_element(By.ID, "pair-run").click()
            with contextlib.suppress(TimeoutException):
                WebDriverWait(driver, 8).until(lambda d: d.find_element(By.ID, "pair-status").text.strip())
            status = driver.find_element(By.ID, "pair-status").text
        assert "score" in status, f"no score in the page; status: {status!r}"
        shown = float(driver.find_element(By.CSS_SELECTOR, "#pair-score input").get_attribute("value"))
        want = expected(sharp_metric, "up1", 500).score(a, b)  # the page starts at the metric's layer and step
        assert shown == pytest.approx(want, abs=2e-6)
        assert f"Layer up1 (4×4 tokens), step 500: score {shown:.6f}" in status
        assert time.perf_counter() - start < 60
    finally:
        driver.quit()
