"""`diffsim datasets download`: resumable HTTP transfers, checksum checks and atomic extraction.

Runs against a local HTTP server (tests/http_fixture.py, on 127.0.0.1) that serves zip archives of the
fixture datasets in their distributed layouts; ``$DIFFSIM_DATASETS_MIRROR`` points the real source rows at it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from diffsim.cli.main import main
from diffsim.datasets import list_datasets, load_dataset
from diffsim.datasets import sources as src_mod
from diffsim.datasets.download import DownloadError, ManualDownload, download_dataset, fetch

from . import bench_fixtures as bf
from .http_fixture import FixtureServer


def zip_tree(folder: Path, top: str) -> bytes:
    """A zip of ``folder`` whose entries start with ``top/`` (as the real archives unpack)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{top}/{p.relative_to(folder).as_posix()}")
    return buf.getvalue()


@pytest.fixture()
def server(monkeypatch):
    srv = FixtureServer()
    monkeypatch.setenv(src_mod.MIRROR_ENV, srv.url)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def nights_zip(tmp_path_factory) -> bytes:
    return zip_tree(bf.nights(tmp_path_factory.mktemp("nights-src")), "nights")


def _with_checksum(monkeypatch, name: str, digest: str, size: int | None = None) -> None:
    """Give the registry row of ``name`` a published checksum (as a source that publishes one would)."""
    row = src_mod.source(name)
    parts = tuple(dataclasses.replace(p, sha256=digest, size=size) for p in row.parts)
    monkeypatch.setitem(src_mod._SOURCES, name, dataclasses.replace(row, parts=parts))


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_good_archive_lands_in_the_loader_layout(server, nights_zip, tmp_path, monkeypatch):
    server.files["/nights.zip"] = nights_zip
    _with_checksum(monkeypatch, "nights", hashlib.sha256(nights_zip).hexdigest(), len(nights_zip))
    root = tmp_path / "data"
    path = download_dataset("nights", root, progress=False)
    assert path == root / "nights" and (path / "data.csv").is_file()
    ts = load_dataset("nights", path)  # the loader reads what was installed
    assert len(ts.triplets) > 0
    record = json.loads((path / ".diffsim-download.json").read_text())
    assert record["files"][0]["sha256"] == hashlib.sha256(nights_zip).hexdigest()
    assert _leftovers(root) == ["nights"]  # no archive, no staging folder left behind
    with pytest.raises(DownloadError, match="already exists; pass --force"):
        download_dataset("nights", root, progress=False)
    (path / "stale.txt").write_text("from an older copy")
    download_dataset("nights", root, force=True, progress=False)  # --force replaces the folder
    assert (path / "data.csv").is_file() and not (path / "stale.txt").exists()
    assert _leftovers(root) == ["nights"]


def test_corrupt_archive_fails_and_installs_nothing(server, nights_zip, tmp_path, monkeypatch):
    bad = bytearray(nights_zip)
    bad[len(bad) // 2] ^= 0xFF
    server.files["/nights.zip"] = bytes(bad)
    _with_checksum(monkeypatch, "nights", hashlib.sha256(nights_zip).hexdigest())
    root = tmp_path / "data"
    with pytest.raises(
        DownloadError, match=r"nights\.zip: checksum mismatch .*expected " + hashlib.sha256(nights_zip).hexdigest()
    ):
        download_dataset("nights", root, progress=False)
    assert not (root / "nights").exists()
    assert not list(root.rglob("*.zip*"))  # the corrupt download was deleted too
    assert [p for p in root.iterdir() if p.name != ".downloads"] == []


def test_wrong_size_is_reported(server, nights_zip, tmp_path, monkeypatch):
    server.files["/nights.zip"] = nights_zip
    _with_checksum(monkeypatch, "nights", hashlib.sha256(nights_zip).hexdigest(), len(nights_zip) + 1)
    with pytest.raises(DownloadError, match=f"size {len(nights_zip)} bytes, expected {len(nights_zip) + 1}"):
        download_dataset("nights", tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "nights").exists()


def test_interrupted_transfer_resumes_with_range(server, nights_zip, tmp_path, monkeypatch):
    server.files["/nights.zip"] = nights_zip
    server.drop_once.add("/nights.zip")
    _with_checksum(monkeypatch, "nights", hashlib.sha256(nights_zip).hexdigest(), len(nights_zip))
    path = download_dataset("nights", tmp_path / "data", progress=False)
    assert len(load_dataset("nights", path).triplets) > 0
    ranges = [r for p, r in server.requests if p == "/nights.zip"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(nights_zip) // 2}-"  # the second asked for the rest


def test_a_second_run_resumes_the_partial_file(server, nights_zip, tmp_path):
    """No retries: the first call stops with a 'run again' message, keeping the bytes; the next call resumes."""
    server.files["/nights.zip"] = nights_zip
    server.drop_once.add("/nights.zip")
    dest = tmp_path / "nights.zip"
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        fetch(f"{server.url}/nights.zip", dest, progress=False, retries=0)
    part = tmp_path / "nights.zip.part"
    assert part.stat().st_size == len(nights_zip) // 2 and not dest.exists()
    fetch(f"{server.url}/nights.zip", dest, progress=False, retries=0)
    assert dest.read_bytes() == nights_zip and not part.exists()
    assert server.requests[-1] == ("/nights.zip", f"bytes={len(nights_zip) // 2}-")


def test_two_archives_are_assembled_into_one_layout(server, tmp_path):
    """DreamBench++: samples and ratings come as two archives; both land under dreambench_plus/."""
    made = bf.dreambench(tmp_path / "src")
    server.files["/dreambench_samples.zip"] = zip_tree(made / "samples", "all_samples")
    server.files["/dreambench_human_rating.zip"] = zip_tree(made / "data_human_rating", "data_human_rating")
    path = download_dataset("dreambench", tmp_path / "data", progress=False)
    assert path.name == "dreambench_plus"
    assert sorted(p.name for p in path.iterdir()) == [".diffsim-download.json", "data_human_rating", "samples"]
    got, want = load_dataset("dreambench", path), load_dataset("dreambench", made)
    assert [t.to_json() for t in got.triplets] == [t.to_json() for t in want.triplets] and got.triplets


def test_archive_without_the_layout_is_refused(server, tmp_path):
    server.files["/nights.zip"] = zip_tree(bf.style_bench(tmp_path / "src"), "nights")  # no data.csv inside
    with pytest.raises(DownloadError, match="no folder holds 'data.csv'"):
        download_dataset("nights", tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "nights").exists()


def test_missing_file_on_the_server(server, tmp_path):
    with pytest.raises(DownloadError, match=r"nights\.zip: HTTP 404"):
        download_dataset("nights", tmp_path / "data", progress=False)


def test_rar_without_an_extractor_says_what_to_install(server, tmp_path, monkeypatch):
    server.files["/tid2013.rar"] = b"Rar!\x1a\x07\x00 not really"
    monkeypatch.setattr("diffsim.datasets.download.shutil.which", lambda exe: None)
    with pytest.raises(DownloadError, match="install unrar, 7z .* or bsdtar"):
        download_dataset("tid2013", tmp_path / "data", progress=False)
    assert not (tmp_path / "data" / "tid2013").exists()


def test_manual_sets_give_the_steps(tmp_path):
    with pytest.raises(ManualDownload, match=r"purl\.stanford\.edu/gj714cj0414"):
        download_dataset("cute", tmp_path)
    with pytest.raises(ManualDownload, match="issue #4"):
        download_dataset("instantstyle", tmp_path)


def test_every_dataset_has_a_source_row():
    assert [s.dataset for s in src_mod.list_sources()] == list_datasets()
    for s in src_mod.list_sources():
        assert s.licence and s.size and s.checksum_note
        assert s.mode in ("automatic", "hub", "manual")
        assert (s.mode == "manual") == (not s.parts and not s.hub_repo)
        if s.mode == "manual":
            assert "ROOT/" in s.manual


def test_cli_list_and_download(server, nights_zip, tmp_path, capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for name in list_datasets():
        assert name in out
    assert "MANUAL" in out and "CC-BY-4.0" in out
    server.files["/nights.zip"] = nights_zip
    assert main(["datasets", "download", "nights", "--root", str(tmp_path), "-q"]) == 0
    assert "nights: ready in" in capsys.readouterr().out
    assert main(["datasets", "download", "cute", "--root", str(tmp_path)]) == 2
    assert "must be fetched by hand" in capsys.readouterr().err


def test_hub_set_is_snapshotted_and_moved_into_place(tmp_path, monkeypatch):
    """Sref comes from the Hub: snapshot_download into a staging folder, then one move into ROOT/Sref.
    (The Hub client is replaced by one that writes the fixture files: no network in tests.)"""
    calls = []

    def snapshot(repo_id, repo_type, local_dir):
        calls.append((repo_id, repo_type))
        made = bf.style_bench(Path(local_dir).parent / "made", "Sref")
        made.rename(local_dir)
        (Path(local_dir) / ".cache").mkdir()
        return local_dir

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot)
    path = download_dataset("sref", tmp_path / "data", progress=False)
    assert calls == [("yiren98/Sref", "dataset")]
    assert path == tmp_path / "data" / "Sref" and not (path / ".cache").exists()
    assert len(load_dataset("sref", path).triplets) > 0
    assert _leftovers(tmp_path / "data") == ["Sref"]


def test_truncated_archive_without_checksum_is_deleted(server, nights_zip, tmp_path):
    """No published checksum and a server that sends a short body without an error: the bad zip is caught
    at extraction, deleted, and nothing is installed; the next run downloads it again."""
    server.files["/nights.zip"] = nights_zip[: len(nights_zip) // 3]
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="not a valid zip archive .*the download was deleted"):
        download_dataset("nights", root, progress=False)
    assert not (root / "nights").exists() and not list(root.rglob("nights.zip*"))
    server.files["/nights.zip"] = nights_zip
    assert (download_dataset("nights", root, progress=False) / "data.csv").is_file()
