"""Download a benchmark into the layout its loader reads: resumable, verified, extracted atomically.

``download_dataset(name, root)``:

1. each archive of the source row (:mod:`.sources`) is fetched to ``<root>/.downloads/<file>.part`` with
   HTTP ``Range`` requests, so an interrupted transfer resumes where it stopped (also within one call: a
   dropped connection is retried from the bytes already on disk);
2. the size and SHA-256 are checked against the row where the source publishes them (a mismatch deletes
   the download and raises :class:`DownloadError`: nothing reaches the layout);
3. the archive is extracted into a temporary folder under ``<root>``, the folder holding the row's marker
   file is found, and it is moved into place with one ``os.replace``: a failure leaves no half layout.

A ``<root>/<folder>/.diffsim-download.json`` records URL, size and SHA-256 of what was installed.
Hub rows go through :func:`huggingface_hub.snapshot_download`; manual rows raise :class:`ManualDownload`
with the steps.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from ..errors import NETWORK_HINT, DatasetError, download_failure, network_errors
from .sources import Part, Source, source

log = logging.getLogger(__name__)
CHUNK = 1 << 20
RETRIES = 5
RECORD = ".diffsim-download.json"


class DownloadError(DatasetError):
    """A download failed, or what arrived is not what the source row says (size, checksum, content)."""


class ManualDownload(DatasetError):
    """The dataset cannot be downloaded automatically; the message holds the manual steps."""


# ------------------------------------------------------------------------------------------ fetching
def _progress(total: int | None, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not enabled
    )


def _open(url: str, start: int, timeout: float) -> Any:
    headers = {"User-Agent": "diffsim-datasets"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)  # noqa: S310


def fetch(
    url: str,
    dest: Path,
    size: int | None = None,
    progress: bool = True,
    retries: int = RETRIES,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part`` if present); returns ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have == size:
            break
        try:
            resp = _open(url, have, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing left to send: the partial file is complete
                break
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            attempt += 1
            if attempt > retries:
                raise DownloadError(f"{url}: {getattr(exc, 'reason', exc)} (after {retries} retries)") from None
            log.warning("%s: %s; retrying (%d/%d)", url, getattr(exc, "reason", exc), attempt, retries)
            continue
        with resp:
            resumed = have and resp.status == 206
            if have and not resumed:
                log.info("%s: the server ignored the Range request; starting over", url)
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else size
            mode = "ab" if resumed else "wb"
            try:
                with open(part, mode) as fh, _progress(total, have, dest.name, progress) as bar:
                    while chunk := resp.read(CHUNK):
                        fh.write(chunk)
                        bar.update(len(chunk))
            except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError) as exc:
                attempt += 1
                if attempt > retries:
                    raise DownloadError(
                        f"{url}: connection lost ({type(exc).__name__}); {part} holds what arrived: "
                        "run the same command again to resume"
                    ) from None
                log.warning("%s: connection lost after %d bytes; resuming", url, part.stat().st_size)
                continue
        got = part.stat().st_size
        if total is not None and got < total:  # the server closed early without an error
            attempt += 1
            if attempt > retries:
                raise DownloadError(f"{url}: got {got} of {total} bytes; run the same command again to resume")
            continue
        break
    os.replace(part, dest)
    return dest


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, part: Part) -> str:
    """Check size and SHA-256 against ``part``; on a mismatch delete ``path`` and raise. Returns the SHA-256."""
    size = path.stat().st_size
    if part.size is not None and size != part.size:
        path.unlink()
        raise DownloadError(
            f"{part.filename}: size {size} bytes, expected {part.size}; the download was deleted, run again"
        )
    digest = sha256_of(path)
    if part.sha256 is not None and digest != part.sha256.lower():
        path.unlink()
        raise DownloadError(
            f"{part.filename}: checksum mismatch (SHA-256 {digest}, expected {part.sha256}); the download was "
            "deleted and nothing was installed, run again (or check the mirror)"
        )
    return digest


# ------------------------------------------------------------------------------------------ extracting
def _inside(base: Path, name: str) -> bool:
    target = (base / name).resolve()
    return target == base.resolve() or base.resolve() in target.parents


def extract(archive: Path, kind: str, into: Path) -> None:
    """Unpack ``archive`` (zip, tar, rar or a single file) into the folder ``into``; refuses unsafe paths."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                bad = [n for n in zf.namelist() if not _inside(into, n)]
                if bad:
                    raise DownloadError(f"{archive.name}: unsafe path in archive: {bad[0]}")
                zf.extractall(into)
        elif kind == "tar":
            with tarfile.open(archive) as tf:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12: refuses links and paths outside
                    tf.extractall(into, filter="data")
                else:
                    bad = [m.name for m in tf.getmembers() if not _inside(into, m.name) or m.issym() or m.islnk()]
                    if bad:
                        raise DownloadError(f"{archive.name}: unsafe member in archive: {bad[0]}")
                    tf.extractall(into)  # noqa: S202 (members checked above)
        elif kind == "rar":
            _extract_rar(archive, into)
        elif kind == "file":
            shutil.copy2(archive, into / archive.name)
        else:
            raise DownloadError(f"{archive.name}: unknown archive kind {kind!r}")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        archive.unlink(missing_ok=True)
        raise DownloadError(
            f"{archive.name}: not a valid {kind} archive ({exc}); the download was deleted, run again"
        ) from None


def _extract_rar(archive: Path, into: Path) -> None:
    tools = [
        ("unrar", ["unrar", "x", "-o+", "-idq", str(archive), str(into) + os.sep]),
        ("7z", ["7z", "x", "-y", f"-o{into}", str(archive)]),
        ("bsdtar", ["bsdtar", "-xf", str(archive), "-C", str(into)]),
    ]
    for exe, cmd in tools:
        if shutil.which(exe):
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
            if done.returncode != 0:
                raise DownloadError(f"{archive.name}: {exe} failed: {(done.stderr or done.stdout).strip()[:300]}")
            return
    raise DownloadError(
        f"{archive.name} is a RAR archive and no extractor was found: install unrar, 7z (p7zip) or bsdtar "
        "(libarchive) and run again (the download is kept)"
    )


def find_marker(top: Path, marker: str) -> Path | None:
    """The shallowest folder under ``top`` (``top`` included) holding a match of any ``|``-separated glob."""
    alternatives = [m for m in marker.split("|") if m]
    level = [top]
    while level:
        for d in sorted(level):
            if any(next(d.glob(alt), None) is not None for alt in alternatives):
                return d
        level = [c for d in sorted(level) for c in sorted(d.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    return None


# ------------------------------------------------------------------------------------------ installing
def _install_parts(src: Source, root: Path, force: bool, keep_archives: bool, progress: bool) -> dict[str, Any]:
    final = root / src.folder
    if final.exists() and not force:  # before any transfer
        raise DownloadError(f"{final} already exists; pass --force to replace it")
    cache = root / ".downloads"
    staging = Path(tempfile.mkdtemp(prefix=f".{src.dataset}-", dir=root))
    record: dict[str, Any] = {"dataset": src.dataset, "files": []}
    archives = []
    try:
        layout = staging / "layout"
        layout.mkdir()
        for part in src.parts:
            archive = cache / part.filename
            if not archive.exists():
                fetch(part.resolved_url(), archive, part.size, progress=progress)
            digest = verify(archive, part)
            archives.append(archive)
            if part.sha256 is None:
                log.info("%s: %s; SHA-256 %s", part.filename, src.checksum_note, digest)
            unpacked = staging / f"x-{part.filename}"
            unpacked.mkdir()
            extract(archive, part.archive, unpacked)
            found = find_marker(unpacked, part.marker)
            if found is None:
                raise DownloadError(
                    f"{part.filename}: extracted, but no folder holds {part.marker!r}; the archive does not have "
                    f"the expected layout (nothing was installed)"
                )
            target = layout / part.dest if part.dest else layout
            if part.dest:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(found, target)
            else:
                for child in found.iterdir():
                    os.replace(child, layout / child.name)
            record["files"].append(
                {"url": part.resolved_url(), "file": part.filename, "bytes": archive.stat().st_size, "sha256": digest}
            )
        (layout / RECORD).write_text(json.dumps(record, indent=1) + "\n")
        if final.exists():  # --force: the old folder goes with the staging folder
            os.replace(final, staging / "old")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(layout, final)  # the one step that makes the layout appear
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not keep_archives:
        for a in archives:
            a.unlink(missing_ok=True)
        if cache.is_dir() and not any(cache.iterdir()):
            cache.rmdir()
    return record


def _install_hub(src: Source, root: Path, force: bool) -> dict[str, Any]:
    from huggingface_hub import snapshot_download

    final = root / src.folder
    if final.exists() and not force:
        raise DownloadError(f"{final} already exists; pass --force to replace it")
    staging = Path(tempfile.mkdtemp(prefix=f".{src.dataset}-", dir=root))
    try:
        layout = staging / "layout"
        try:
            snapshot_download(repo_id=str(src.hub_repo), repo_type="dataset", local_dir=str(layout))
        except network_errors() as exc:
            raise DownloadError(download_failure(f"dataset {src.hub_repo}", exc), hint=NETWORK_HINT) from None
        shutil.rmtree(layout / ".cache", ignore_errors=True)  # huggingface_hub's local-dir metadata
        record = {"dataset": src.dataset, "hub_repo": src.hub_repo}
        (layout / RECORD).write_text(json.dumps(record, indent=1) + "\n")
        if final.exists():
            os.replace(final, staging / "old")
        os.replace(layout, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return record


def manual_steps(src: Source, root: str | os.PathLike = "ROOT") -> str:
    return f"{src.title} must be fetched by hand: {src.manual.replace('ROOT', str(root))}"


def download_dataset(
    name: str,
    root: str | os.PathLike,
    force: bool = False,
    keep_archives: bool = False,
    progress: bool = True,
) -> Path:
    """Fetch benchmark ``name`` into ``<root>/<its folder>``; returns that folder.

    Raises :class:`ManualDownload` (with the steps) for sets that must be requested by hand, and
    :class:`DownloadError` when a transfer fails or what arrived does not match the source row.
    """
    src = source(name)
    base = Path(root).expanduser()
    if src.mode == "manual":
        raise ManualDownload(manual_steps(src, base))
    base.mkdir(parents=True, exist_ok=True)
    if src.mode == "hub":
        _install_hub(src, base, force)
    else:
        _install_parts(src, base, force, keep_archives, progress)
    return base / src.folder
