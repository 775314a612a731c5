"""Dataset loaders on generated folders in the real layouts: counts, quirks, determinism, bad layouts."""

from __future__ import annotations

import shutil

import pytest

from diffsim.datasets import list_datasets, load_dataset
from diffsim.errors import DatasetError, DiffSimError

from . import bench_fixtures as fx
from .pixel_metric import PixelMetric


def pixel_accuracy(ts, invert: bool = False) -> float:
    """Fraction of triplets where 8x8-pixel MSE puts the positive closer (the GT lives in the pixels)."""
    m = PixelMetric(invert=invert)
    root = ts.root
    ok = 0
    for t in ts.triplets:
        f = m.embed([f"{root}/{t.anchor}", f"{root}/{t.positive}", f"{root}/{t.negative}"])
        ok += float(m.compare(f[0], f[1])) > float(m.compare(f[0], f[2]))
    return ok / len(ts.triplets)


def ids(ts):
    return [(t.id, t.anchor, t.positive, t.negative, t.prompt) for t in ts.triplets]


def test_registry_names():
    assert list_datasets() == ["nights", "dreambench", "cute", "ipbench", "tid2013", "sref", "instantstyle", "tiktok"]
    with pytest.raises(DatasetError, match="Did you mean nights"):
        load_dataset("night", ".")


def test_nights_paper_vs_script(tmp_path):
    root = fx.nights(tmp_path)
    paper = load_dataset("nights", root)
    # test split = ids 2,5,8,11; id 11 has votes=5 and is filtered out
    assert sorted(int(t.id) for t in paper.triplets) == [2, 5, 8]
    assert paper.options == {"split": "test", "min_votes": 6}
    script = load_dataset("nights", root, protocol="script")
    assert sorted(int(t.id) for t in script.triplets) == [1, 4, 7, 10]
    assert script.options == {"split": "val", "min_votes": 0}
    assert {t.prompt for t in paper.triplets} == {"An image of a abbey"}
    assert {t.prompt for t in script.triplets} == {"An image of a golden retriever"}
    assert pixel_accuracy(paper) == 1.0 and pixel_accuracy(script) == 1.0
    assert pixel_accuracy(script, invert=True) == 0.0
    assert {t.meta["closer"] for t in script.triplets} == {"left", "right"}
    assert len(load_dataset("nights", root, options={"split": "train", "min_votes": 0}).triplets) == 4


def test_nights_missing_column(tmp_path):
    root = fx.nights(tmp_path)
    text = (root / "data.csv").read_text().replace("left_vote", "lv")
    (root / "data.csv").write_text(text)
    with pytest.raises(DatasetError, match="left_vote"):
        load_dataset("nights", root)


@pytest.mark.parametrize("flat", [False, True])
def test_tid2013_case_and_layouts(tmp_path, flat):
    root = fx.tid2013(tmp_path, flat=flat)
    script = load_dataset("tid2013", root, protocol="script")
    assert len(script.triplets) == 12  # 3 refs x 4 types, levels 2 vs 3
    assert {tuple(t.meta["levels"]) for t in script.triplets} == {(2, 3)}
    assert any(t.anchor.endswith("i25.bmp") for t in script.triplets)
    paper = load_dataset("tid2013", root, seed=1)
    assert len(paper.triplets) == 12
    levels = {tuple(t.meta["levels"]) for t in paper.triplets}
    assert len(levels) > 1 and all(a < b for a, b in levels)
    assert pixel_accuracy(paper) == 1.0 and pixel_accuracy(paper, invert=True) == 0.0
    # a level-1 upper-case .BMP name is used when drawn
    one = load_dataset("tid2013", root, protocol="script", options={"levels": "1,5"})
    assert any(t.positive.endswith("I01_11_1.BMP") for t in one.triplets)


def test_cute(tmp_path):
    root = fx.cute(tmp_path)
    ts = load_dataset("cute", root, seed=3)
    assert len(ts.triplets) == 10 * 6  # rounds x instances
    assert {t.prompt for t in ts.triplets} == {"The photo of a apple", "The photo of a mug"}
    for t in ts.triplets:  # same condition folder for all three, A and B from one instance
        a, p, n = (x.split("/") for x in (t.anchor, t.positive, t.negative))
        assert a[2] == p[2] == n[2] and a[1] == p[1] != n[1] and a[0] == p[0] == n[0] and a != p
    assert any(t.anchor.endswith(".JPG") or t.positive.endswith(".JPG") for t in ts.triplets)
    assert pixel_accuracy(ts) == 1.0


def test_cute_condition_not_shared(tmp_path):
    root = fx.cute(tmp_path, cats=("apple",), n_inst=2, conds=("lighting_1",))
    shutil.rmtree(root / "apple" / "apple_2" / "lighting_1")
    fx.write_image(root / "apple" / "apple_2" / "pose" / "00.jpg", (0, 0, 0))
    fx.write_image(root / "apple" / "apple_2" / "pose" / "01.jpg", (0, 0, 0))
    ts = load_dataset("cute", root)
    # apple_1 has no partner under lighting_1, apple_2 none under pose: nothing to compare, no crash
    assert ts.triplets == [] and len(ts.notes) == 2


def test_dreambench_explicit_method_mapping(tmp_path):
    root = fx.dreambench(tmp_path)
    ts = load_dataset("dreambench", root, seed=0)
    assert len(ts.triplets) == 3 * 2 * 5  # methods x collections x max_pairs; emu2 has no ratings
    assert {t.meta["method"] for t in ts.triplets} == {"blip_diffusion", "dreambooth_sd", "dreambooth_lora_sdxl"}
    assert any("emu2" in n for n in ts.notes)
    assert all(not t.positive.endswith("8_0.jpg") and not t.negative.endswith("8_0.jpg") for t in ts.triplets)
    assert all(t.meta["ratings"][0] - t.meta["ratings"][1] >= 2 for t in ts.triplets)
    assert pixel_accuracy(ts) == 1.0  # lora scored against its own ratings (no substring matching)
    # --root may be samples/ itself (ratings beside it) and raw_data is used when merged_data is absent
    root2 = fx.dreambench(tmp_path / "b", raw_only_method="blip_diffusion")
    ts2 = load_dataset("dreambench", root2 / "samples", seed=0)
    assert len(ts2.triplets) == 30 and pixel_accuracy(ts2) == 1.0
    loose = load_dataset("dreambench", root, options={"max_pairs": 100, "min_gap": 1})
    assert len(loose.triplets) > 30


def test_ipbench_paper_and_script(tmp_path):
    root = fx.ipbench(tmp_path)
    script = load_dataset("ipbench", root, protocol="script")
    assert len(script.triplets) == 15
    assert all(t.anchor.startswith("../IPA-bench/") and t.anchor.endswith(".JPG") for t in script.triplets)
    assert [t.meta["weights"] for t in script.triplets[:5]] == [
        [1.0, 0.6],
        [0.8, 0.4],
        [0.6, 0.3],
        [0.4, 0.35],
        [0.3, 0.2],
    ]
    paper = load_dataset("ipbench", root, seed=5)
    assert len(paper.triplets) == 15 and all(a > b for a, b in (t.meta["weights"] for t in paper.triplets))
    assert pixel_accuracy(paper) == 1.0 and pixel_accuracy(script) == 1.0
    with pytest.raises(DatasetError, match="original_root"):
        load_dataset("ipbench", root, options={"original_root": str(tmp_path / "nope")})


@pytest.mark.parametrize("name,folder,ext", [("sref", "Sref", ".png"), ("instantstyle", "stylesim-test", ".JPG")])
def test_style_benches(tmp_path, name, folder, ext):
    root = fx.style_bench(tmp_path, folder, ext=ext)
    ts = load_dataset(name, root, seed=2334, options={"n": 200})
    assert len(ts.triplets) == 200
    for t in ts.triplets:
        assert t.anchor != t.positive and t.anchor.split("/")[0] == t.positive.split("/")[0] != t.negative.split("/")[0]
    assert pixel_accuracy(ts) == 1.0
    assert len(load_dataset(name, root).triplets) == 2000


def test_determinism_and_seed(tmp_path):
    a = load_dataset("sref", fx.style_bench(tmp_path / "a"), seed=7, options={"n": 50})
    b = load_dataset("sref", fx.style_bench(tmp_path / "b"), seed=7, options={"n": 50})
    c = load_dataset("sref", fx.style_bench(tmp_path / "b"), seed=8, options={"n": 50})
    assert ids(a) == ids(b) and ids(a) != ids(c)
    import random

    random.seed(0)
    before = random.random()
    random.seed(0)
    load_dataset("sref", fx.style_bench(tmp_path / "d"), seed=1, options={"n": 5})
    assert random.random() == before  # the global RNG is never used


def test_tiktok_even_frames(tmp_path):
    root = fx.tiktok(tmp_path)
    vs = load_dataset("tiktok", root)
    assert [v for v, _ in vs.videos] == ["00001", "00002"]
    frames = vs.videos[0][1]
    assert len(frames) == 10 and frames[0].endswith("0001.png") and frames[-1].endswith("0012.png")
    assert all("/images/" in f for f in frames)
    assert len(load_dataset("tiktok", root, options={"frames": 4}).videos[1][1]) == 4


@pytest.mark.parametrize("name", ["nights", "tid2013", "cute", "dreambench", "ipbench", "sref", "tiktok"])
def test_missing_root_names_path_and_layout(tmp_path, name):
    with pytest.raises(DiffSimError) as info:
        load_dataset(name, tmp_path / "missing")
    msg = str(info.value)
    assert str(tmp_path / "missing") in msg and "expected layout" in msg


@pytest.mark.parametrize("name", ["nights", "tid2013", "cute", "dreambench", "sref", "tiktok"])
def test_wrong_layout(tmp_path, name):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="expected layout"):
        load_dataset(name, tmp_path / "junk")


def test_unknown_option_and_protocol(tmp_path):
    root = fx.style_bench(tmp_path)
    with pytest.raises(DatasetError, match="unknown option"):
        load_dataset("sref", root, options={"split": "x"})
    with pytest.raises(DatasetError, match="protocol"):
        load_dataset("sref", root, protocol="script")
