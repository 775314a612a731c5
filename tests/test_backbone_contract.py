"""Every attention backbone fulfils one contract (:mod:`diffsim.backbones.protocol`), checked on tiny
real-class models: the protocol, identity that follows the weights (also through the CLI's disk cache),
shapes, aliases, step -> T, and batch = single with every cache cleared and the denoiser passes counted
by a hook on the real module (a cache hit runs no pass, so it cannot pass)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from diffsim.backbones.kinds import kind_info, usable_kinds
from diffsim.backbones.lazy import LazyStableDiffusion
from diffsim.backbones.protocol import AttentionBackbone
from diffsim.backbones.spec import LoadSpec
from diffsim.models import clear_models
from diffsim.registry import metric_info

from .conftest import SIZE
from .test_cli import run
from .tiny_builders import TinyBackbone, tiny_backbones

KINDS = tuple(tiny_backbones())  # every kind with a tiny model (tests/tiny_builders.py)
CPU = {"device": "cpu", "dtype": "float32"}


def tiny(kind: str) -> TinyBackbone:
    return tiny_backbones()[kind]


def build_pair(kind: str, root: Path, paths: dict[str, str]) -> tuple[Path, Path]:
    """Two folders of the same name (``.../a/model``, ``.../b/model``) with other weights (for the IP-Adapter
    the adapter folder; the models it needs are the session's tiny ones in ``paths``)."""
    row = tiny(kind)
    return row.build(root / "a" / "model", 0, paths), row.build(root / "b" / "model", 1, paths)


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_backbone_paths):
    return {kind: build_pair(kind, tmp_path_factory.mktemp(f"contract-{kind}"), tiny_backbone_paths) for kind in KINDS}


def load(kind: str, folder: Path, paths: dict[str, str]):
    """The kind's backbone class (the kinds table) loaded through its real ``load``."""
    spec = tiny(kind).spec(str(folder), paths)
    return kind_info(kind).backbone_class.load(LoadSpec(**spec, **CPU))


def condition(kind: str):
    return tiny(kind).condition


def layer_kind(kind: str) -> str:
    """What the kind's default metric reads: "self" or "cross"."""
    return metric_info(tiny(kind).metric).metric_class.layer_kind


def test_every_kind_has_a_tiny_model():
    """A usable kind (diffsim.backbones.kinds) without a row in tests/tiny_builders.py would escape the contract
    and golden tests."""
    assert {k.name for k in usable_kinds()} == set(KINDS)


def entry_module(bb) -> torch.nn.Module:
    """The denoiser's first module: every pass (explicit or hooked) runs it once."""
    net = bb.denoiser
    return net.pos_embed if hasattr(net, "pos_embed") else net.conv_in


def pixels(n: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    return torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1


@pytest.mark.parametrize("kind", KINDS)
def test_protocol_shapes_aliases_and_steps(kind, weights, tiny_backbone_paths):
    bb = load(kind, weights[kind][0], tiny_backbone_paths)
    assert isinstance(bb, AttentionBackbone)
    assert bb.identity and isinstance(bb.device, torch.device) and bb.dtype == torch.float32
    assert SIZE % bb.latent_factor == 0 and bb.default_size > 0
    aliases = bb.aliases()
    assert aliases
    for alias, path in aliases.items():
        if alias.endswith(".cross") != (layer_kind(kind) == "cross"):
            continue
        assert bb.resolve([alias], kind=layer_kind(kind)) == [path]
        assert bb.resolve([path], kind=layer_kind(kind)) == [path]
    table = bb.step_table()
    for k in (100, 500, 900):
        assert bb.timestep(step=k) == table[k]
    assert bb.timestep(timestep=321) == 321
    rows = {r.path: r for r in bb.layers(SIZE)}
    paths = bb.resolve([tiny(kind).layer], kind=layer_kind(kind))
    for branches in (1, 2):
        out = bb.extract(pixels(2), paths, bb.timestep(step=500), condition(kind), 0, branches)
        f = out[paths[0]]
        row = rows[paths[0]]
        n, b, h, t, d = f.q.shape
        assert (n, b, h, t) == (2, branches, row.heads, row.grid[0] * row.grid[1])
        assert f.k.shape[:3] == (2, branches, row.heads)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_equals_single_with_counted_passes(kind, weights, tiny_backbone_paths):
    bb = load(kind, weights[kind][0], tiny_backbone_paths)
    paths = bb.resolve([tiny(kind).layer], kind=layer_kind(kind))
    t = bb.timestep(step=500)
    calls = [0]
    handle = entry_module(bb).register_forward_pre_hook(lambda m, a: calls.__setitem__(0, calls[0] + 1))
    try:
        x = pixels(3)
        bb.clear_caches()
        before = bb.passes
        batch = bb.extract(x, paths, t, condition(kind), 7)[paths[0]]
        assert calls[0] == 1 and bb.passes - before == 1  # one pass for the batch
        singles = []
        for i in range(3):
            bb.clear_caches()
            singles.append(bb.extract(x[i : i + 1], paths, t, condition(kind), 7)[paths[0]])
        assert calls[0] == 4 and bb.passes - before == 4  # one real pass per single image
    finally:
        handle.remove()
    for i, one in enumerate(singles):
        for a, b in ((batch.q[i], one.q[0]), (batch.k[i], one.k[0]), (batch.v[i], one.v[0])):
            assert torch.allclose(a, b, atol=5e-5 * float(a.abs().max()) + 1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_identity_follows_the_weights(kind, weights, tiny_backbone_paths, tmp_path):
    a_dir, b_dir = weights[kind]
    assert a_dir.name == b_dir.name
    a, b = load(kind, a_dir, tiny_backbone_paths), load(kind, b_dir, tiny_backbone_paths)
    assert a is not b and a.identity != b.identity  # same folder name, other weights: another model
    assert load(kind, a_dir, tiny_backbone_paths) is a  # the same weights: the shared model
    paths = a.resolve([tiny(kind).layer], kind=layer_kind(kind))
    t = a.timestep(step=500)
    fa = a.extract(pixels(1), paths, t, condition(kind), 0)[paths[0]]
    fb = b.extract(pixels(1), paths, t, condition(kind), 0)[paths[0]]
    assert not torch.allclose(fa.q, fb.q)
    # weights replaced in place (same path): a new identity
    moved = shutil.copytree(a_dir, tmp_path / "model", copy_function=shutil.copy)
    spec = LoadSpec(**tiny(kind).spec(str(moved), tiny_backbone_paths))
    before = spec.identity()
    shutil.rmtree(moved)
    shutil.copytree(b_dir, moved, copy_function=shutil.copy)
    assert spec.identity() != before


def test_lazy_sd_fulfils_the_protocol_without_loading(weights):
    lazy = LazyStableDiffusion.create(LoadSpec(weights["sd"][1], device="cpu", dtype="bfloat16"))
    assert isinstance(lazy, LazyStableDiffusion) and isinstance(lazy, AttentionBackbone)
    assert lazy.layers(SIZE) and lazy.aliases() and lazy.resolve(["up0"]) and lazy.step_table()
    assert lazy.timestep(step=500) == 501 and lazy.default_size == 512 and lazy.size_multiple == lazy.latent_factor
    assert not lazy.weights_loaded and lazy.passes == 0  # every member but extract answers from the configs


def _cli_args(kind: str, model: Path, paths: dict[str, str], cache: Path, images: list[Path]) -> list[str]:
    row = tiny(kind)
    spec = row.spec(str(model), paths)
    args = [str(images[0]), str(images[1]), "--size", str(SIZE), "--device", "cpu", "-q", "--cache", str(cache)]
    args += ["--metric", row.metric, "--layer", row.layer, "--model", str(spec.pop("model"))]
    for k, v in spec.items():
        args += ["--set", f"{k}={v}"]
    return ["score", *args]


@pytest.mark.parametrize("kind", KINDS)
def test_cli_cache_never_reuses_numbers_of_other_weights(
    kind, weights, tiny_backbone_paths, image_files, tmp_path, capsys
):
    """``diffsim score --cache C`` on a folder, then the same folder with other weights: a new number, the
    one a fresh run on those weights gives (not the cached one)."""
    a_dir, b_dir = weights[kind]
    folder = shutil.copytree(a_dir, tmp_path / "w" / "model", copy_function=shutil.copy)
    cache = tmp_path / "cache"
    code, out, err = run(capsys, *_cli_args(kind, folder, tiny_backbone_paths, cache, image_files))
    assert code == 0, err
    first = float(out.split()[-1])
    shutil.rmtree(folder)
    shutil.copytree(b_dir, folder, copy_function=shutil.copy)
    code, out, err = run(capsys, *_cli_args(kind, folder, tiny_backbone_paths, cache, image_files))
    assert code == 0, err
    second = float(out.split()[-1])
    clear_models()
    code, out, err = run(capsys, *_cli_args(kind, b_dir, tiny_backbone_paths, tmp_path / "fresh", image_files))
    assert code == 0, err
    assert abs(second - first) > 1e-6 and abs(second - float(out.split()[-1])) < 1e-6
