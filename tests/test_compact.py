"""Compact stores: int8 per-channel quantised features, their agreement, and one mode per store."""

from __future__ import annotations

import torch

from diffsim.gallery import GalleryStore, collect
from diffsim.gallery.build import build_index
from diffsim.gallery.search import Gallery
from diffsim.gallery.store import SCALE_SUFFIX, quantise_int8

from .test_gallery import built, disc_metric, disc_model, labelled, model_flags, run  # noqa: F401


def test_int8_codes_round_trip_within_half_a_step():
    x = torch.randn(3, 2, 2, 50, 16) * torch.linspace(0.01, 5, 16)
    x[0, 0, 0, :, 3] = 0.0  # a silent channel: scale 0, codes 0, no NaN
    codes, scale = quantise_int8(x)
    assert codes.dtype == torch.int8 and scale.dtype == torch.float16 and scale.shape == (3, 2, 2, 1, 16)
    back = codes.float() * scale.float()
    assert torch.isfinite(back).all() and (back[0, 0, 0, :, 3] == 0).all()
    assert ((back - x).abs() <= scale.float() / 2 + 1e-6).all()


def test_int8_store_is_smaller_and_agrees_with_exact_scores(tmp_path, built, labelled, disc_metric):  # noqa: F811
    src = collect(labelled)
    small = GalleryStore.create(tmp_path / "int8", disc_metric, compact="int8", root=src.root)
    build_index(src, small, disc_metric, shard_size=16)
    half = GalleryStore.create(tmp_path / "fp16", disc_metric, compact="fp16", root=src.root)
    build_index(src, half, disc_metric, shard_size=16)
    assert small.nbytes() < half.nbytes() < built.nbytes()
    from safetensors import safe_open

    with safe_open(str(small.shard_path(small.rows()[0]["shard"])), "pt") as fh:
        keys = list(fh.keys())
        assert any(k.endswith(SCALE_SUFFIX) for k in keys)
        assert all(fh.get_slice(k).get_dtype() == "I8" for k in keys if k.endswith("/q"))
    assert all(not k.endswith(SCALE_SUFFIX) for k in small.load(small.ids()[:2]).tensors)
    q = [str(labelled / "class-01" / "img-0002.png")]
    exact = Gallery(built, disc_metric).search(q, k=16)[0]
    got = Gallery(GalleryStore.open(small.folder, disc_metric, compact="int8"), disc_metric).search(q, k=16)[0]
    by_id = {h.path: h.score for h in got}
    assert max(abs(by_id[h.path] - h.score) for h in exact) < 1e-2
    assert [h.path for h in exact[:3]] == [h.path for h in got[:3]]


def test_cli_a_store_keeps_its_compact_mode_and_refuses_another(capsys, tmp_path, labelled, disc_model):  # noqa: F811
    out = tmp_path / "s"
    g = labelled / "class-00"
    code, _, err = run(capsys, "index", "build", g, "--out", out, *model_flags(disc_model), "-q", "--compact", "int8")
    assert code == 0, err
    code, text, err = run(capsys, "index", "build", g, "--out", out, "-q")  # the store's mode
    assert code == 0 and "4 already stored" in text, err
    code, _, err = run(capsys, "index", "build", g, "--out", out, "-q", "--compact", "fp16")
    assert code == 2 and "compact='int8', not 'fp16'" in err
    code, text, _ = run(capsys, "index", "info", out)
    assert "compact: int8" in text
