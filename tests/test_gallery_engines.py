"""One gallery pipeline: every engine (local, torchrun-style parts + merge, Ray) and every reader (folder,
parquet bytes, webdataset tar) gives the same store on a gallery of awkward images: 8-bit RGB, 16-bit
grey, float TIFF, palette, EXIF-rotated, one beyond a lowered pixel limit and one unreadable file.

Same rows, features within 1e-6 of each other and of ``metric.embed(path)`` (what `diffsim score`
computes), and the same failures recorded. One image per network pass: how images are grouped into
batches changes CPU float32 features by ~1e-6 (roundoff), which is not what this test is about."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffsim.gallery import GalleryStore, collect
from diffsim.gallery.build import build_index
from diffsim.gallery.decode import decode_record
from diffsim.gallery.readers import Record, open_gallery
from diffsim.images import load_picture, set_max_pixels
from diffsim.scale import Partition, merge_stores, select_part

SIZE = 64
LIMIT = 10_000  # pixels: big.png (120 x 120) is beyond it
GOOD = ["exif.jpg", "float.tif", "grey16.png", "palette.png", "rgb8.png"]
BAD = ["big.png", "broken.png"]


def _smooth(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    low = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mixed") / "gal"
    folder.mkdir()
    rng = np.random.default_rng(5)
    Image.fromarray(_smooth(rng, 48, 40)).save(folder / "rgb8.png")
    ramp = np.linspace(0, 65535, 48 * 40).reshape(40, 48).astype(np.uint16)  # mean 0.5 of full scale
    Image.fromarray(ramp).save(folder / "grey16.png")
    grey = _smooth(rng, 40, 40)[..., 0].astype(np.float32) / 255.0
    Image.fromarray(grey, mode="F").save(folder / "float.tif")
    Image.fromarray(_smooth(rng, 40, 48)).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: shown 32 x 48
    Image.fromarray(_smooth(rng, 48, 32)).save(folder / "exif.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(_smooth(rng, 120, 120)).save(folder / "big.png")
    (folder / "broken.png").write_bytes(b"this is not a PNG file")
    return folder


@pytest.fixture(autouse=True)
def pixel_limit():
    set_max_pixels(LIMIT)
    yield
    set_max_pixels(None)


@pytest.fixture(scope="module")
def metric(tiny_sd_path):
    from diffsim.registry import create_metric

    # one image per network pass everywhere: batch composition moves CPU float32 results by ~1e-6
    return create_metric(
        "diffsim-s", model=str(tiny_sd_path), size=SIZE, device="cpu", dtype="float32", cache_bytes=0, batch_size=1
    )


@pytest.fixture(scope="module")
def containers(mixed, tmp_path_factory) -> tuple[Path, Path]:
    """The same files as one parquet file (id, image bytes) and one webdataset tar (KEY.EXT members)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path_factory.mktemp("containers")
    files = sorted(mixed.iterdir())
    pq.write_table(
        pa.table({"id": [f.name for f in files], "image": pa.array([f.read_bytes() for f in files], pa.binary())}),
        out / "gal.parquet",
    )
    with tarfile.open(out / "gal.tar", "w") as tar:
        for f in files:
            data = f.read_bytes()
            info = tarfile.TarInfo(f.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out / "gal.parquet", out / "gal.tar"


def _local(inp, folder: Path, metric, root=None) -> GalleryStore:
    store = GalleryStore.create(folder, metric, root=root)
    build_index(inp, store, metric, shard_size=2, threads=1)  # one thread: CPU float32 sums depend on the count
    return store


@pytest.fixture(scope="module")
def local_store(mixed, metric, tmp_path_factory) -> GalleryStore:
    set_max_pixels(LIMIT)
    try:
        src = collect(mixed)
        return _local(src, tmp_path_factory.mktemp("local") / "s", metric, src.root)
    finally:
        set_max_pixels(None)


def _failures(store: GalleryStore) -> list[tuple[str, str]]:
    """(image name, reason with the image's path or id written as its name)."""
    out = []
    for e in store.errors():
        name = Path(e["path"]).name
        out.append((name, e["reason"].replace(e["path"], name)))
    return sorted(out)


def assert_same(a: GalleryStore, b: GalleryStore, atol: float = 1e-6) -> None:
    """Same rows (names, content hashes), features and pooled vectors within ``atol``, same failures."""
    name = {i: Path(i).name for i in a.ids() + b.ids()}
    ra = {name[r["id"]]: r["hash"] for r in a.rows()}
    rb = {name[r["id"]]: r["hash"] for r in b.rows()}
    assert ra == rb and sorted(ra) == GOOD
    ids_a = sorted(a.ids(), key=lambda i: name[i])
    ids_b = sorted(b.ids(), key=lambda i: name[i])
    fa, fb = a.load(ids_a), b.load(ids_b)
    for k in fa.tensors:
        torch.testing.assert_close(fa.tensors[k], fb.tensors[k], atol=atol, rtol=0)
    pa, pb = dict(zip(*a.pooled(), strict=True)), dict(zip(*b.pooled(), strict=True))
    for i, j in zip(ids_a, ids_b, strict=True):
        np.testing.assert_allclose(pa[i], pb[j], atol=atol, rtol=0)
    assert _failures(a) == _failures(b)


def test_the_local_store_is_what_diffsim_score_computes(local_store, mixed, metric):
    assert sorted(local_store.ids()) == GOOD
    fails = dict(_failures(local_store))
    assert sorted(fails) == BAD
    assert "120 x 120 = 14,400 pixels, above the limit of 10,000 pixels" in fails["big.png"]
    assert fails["broken.png"].startswith("cannot read image broken.png: cannot identify image file")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the build ran
    try:
        fresh = metric.embed([str(mixed / n) for n in GOOD])  # the `diffsim score` path: images.load_picture
    finally:
        torch.set_num_threads(threads)
    stored = local_store.load(GOOD)
    for k in fresh.tensors:
        torch.testing.assert_close(stored.tensors[k], fresh.tensors[k], atol=1e-6, rtol=0)
    # the decoder reads a 16-bit grey image as it is (mean 0.5), not almost white
    d = decode_record(Record("g", str(mixed / "grey16.png")), lambda x, i: x, {})
    assert d.pixels is not None and float(d.pixels.mean()) == pytest.approx(0.5, abs=1e-3)
    torch.testing.assert_close(d.pixels, load_picture(mixed / "grey16.png"))


def test_torchrun_parts_merged_equal_the_local_store(local_store, mixed, metric, tmp_path):
    src = collect(mixed)
    parts = []
    for i in range(2):
        sub = select_part(src, Partition(2, i))
        assert 0 < len(sub) < len(src)
        parts.append(_local(sub, tmp_path / f"part{i}", metric, src.root).folder)
    assert_same(local_store, merge_stores(parts, tmp_path / "merged"))


@pytest.mark.parametrize("kind", ["parquet", "webdataset"])
def test_parquet_and_webdataset_readers_on_the_local_engine(local_store, containers, metric, tmp_path, kind):
    path = containers[0] if kind == "parquet" else containers[1]
    inp = open_gallery(str(path))
    assert inp.kind == kind
    store = _local(inp, tmp_path / "s", metric)
    assert sorted(store.ids()) == GOOD  # ids: the file names (parquet id column, tar KEY.EXT)
    assert_same(local_store, store)


@pytest.mark.parametrize("reader", ["folder", "parquet"])
def test_decode_workers_split_the_records_without_changing_the_store(
    local_store, mixed, containers, metric, tmp_path, reader
):
    inp = open_gallery(str(mixed if reader == "folder" else containers[0]))
    store = GalleryStore.create(tmp_path / "s", metric, root=inp.root)
    report = build_index(inp, store, metric, shard_size=2, num_workers=2)  # worker w decodes records w, w + 2, ...
    assert report.embedded == len(GOOD) and len(report.failures) == len(BAD)
    assert_same(local_store, store)


def test_ray_engine_equals_the_local_engine_for_every_reader(local_store, mixed, containers, metric, tmp_path):
    ray = pytest.importorskip("ray")
    from diffsim.gallery.runner import run_build
    from diffsim.scale.ray_engine import RayEngine, RayOptions

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for n, gallery in enumerate([mixed, *containers]):
            inp = open_gallery(str(gallery))
            store = GalleryStore.create(tmp_path / f"ray{n}", metric, root=inp.root)
            report = run_build(inp, store, metric, RayEngine(RayOptions(workers=1, shard_size=3)))
            assert report.embedded == len(GOOD) and len(report.failures) == len(BAD)
            assert_same(local_store, store)
    finally:
        if started:
            ray.shutdown()
