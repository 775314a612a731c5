"""Release check: build the sdist and wheel, install the wheel in a fresh venv, run the CLI and the examples.

The venv sees the system site-packages, and those of the venv pytest runs in if any (torch and the other
dependencies are not reinstalled), but the package itself must come from the wheel: the test checks where
``diffsim`` is imported from, runs with ``PYTHONPATH`` removed and from a folder outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

from diffsim import __version__

ROOT = Path(__file__).resolve().parents[1]
DIST = "diffsim-metric"

pytestmark = pytest.mark.slow  # about 40 s on 2 CPU cores; run by CI (the default pytest command)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build``: the sdist, then the wheel built from the unpacked sdist (so the sdist is complete)."""
    pytest.importorskip("build", reason="needs the dev extra: pip install -e '.[dev]'")
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out)
    return out


def _outer_site_packages() -> list[str]:
    """The site-packages of the interpreter running pytest when it is itself a venv, else [].

    ``system_site_packages=True`` makes the new venv see the *base* interpreter's packages; a contributor's
    venv holds torch and the other dependencies in its own site-packages, which a ``.pth`` file adds. Plain
    path lines: the outer folder's own ``.pth`` files (an editable install of diffsim) are not run, so the
    package still comes from the wheel.
    """
    if sys.prefix == sys.base_prefix:
        return []
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if Path(d).is_dir()]


@pytest.fixture(scope="module")
def venv_python(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (with the system site-packages) where the wheel is installed."""
    folder = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(folder)
    py = folder / "bin" / "python"
    outer = _outer_site_packages()
    if outer:  # pytest runs inside a venv: its packages (torch...) live there, not in the base interpreter
        purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=folder)
        (Path(purelib.stdout.strip()) / "_outer_venv.pth").write_text("\n".join(outer) + "\n")
    wheel = next(dist.glob("*.whl"))
    # --ignore-installed: a development install of the same name and version must not stand in for the wheel.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            "--ignore-installed",
            "--no-index",
            str(wheel),
        ],
        cwd=folder,
    )
    return py


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    pytest.importorskip("twine", reason="needs the dev extra: pip install -e '.[dev]'")
    files = sorted(dist.iterdir())
    assert [f.name for f in files] == [
        f"diffsim_metric-{__version__}-py3-none-any.whl",
        f"diffsim_metric-{__version__}.tar.gz",
    ]
    out = _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, files)], cwd=dist).stdout
    assert out.count("PASSED") == 2


def test_wheel_contents(dist: Path) -> None:
    names = zipfile.ZipFile(next(dist.glob("*.whl"))).namelist()
    assert "diffsim/py.typed" in names and "diffsim/cli/main.py" in names
    assert not [n for n in names if n.startswith("tests/") or n.endswith((".safetensors", ".ckpt"))]
    meta = zipfile.ZipFile(next(dist.glob("*.whl"))).read(f"diffsim_metric-{__version__}.dist-info/METADATA").decode()
    assert f"Name: {DIST}" in meta and f"Version: {__version__}" in meta
    assert "License-Expression: Apache-2.0" in meta
    torch_req = [line for line in meta.splitlines() if line.startswith("Requires-Dist: torch")]
    assert torch_req and "<" not in torch_req[0], f"no upper cap on torch: {torch_req}"


def test_package_is_imported_from_the_wheel(venv_python: Path, tmp_path: Path) -> None:
    code = (
        "import diffsim, importlib.metadata as md, pathlib; "
        "print(pathlib.Path(diffsim.__file__).resolve()); print(md.version('diffsim-metric'))"
    )
    path, version = _run([str(venv_python), "-c", code], cwd=tmp_path).stdout.split()
    assert Path(path).is_relative_to(venv_python.parent.parent.resolve()), path
    assert version == __version__
    # every core dependency the wheel declares is satisfied in the venv
    check = textwrap.dedent("""
        import importlib.metadata as md
        from packaging.requirements import Requirement

        bad = []
        for req in map(Requirement, md.requires("diffsim-metric")):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                try:
                    have = md.version(req.name)
                except md.PackageNotFoundError:
                    have = None
                if have is None or not req.specifier.contains(have, prereleases=True):
                    bad.append((str(req), have))
        print(bad)
    """)
    assert _run([str(venv_python), "-c", check], cwd=tmp_path).stdout.strip() == "[]"


def test_cli_from_the_wheel(venv_python: Path, tmp_path: Path) -> None:
    exe = venv_python.parent / "diffsim"
    assert exe.is_file(), "the wheel installs the `diffsim` command"
    out = _run([str(exe), "--version"], cwd=tmp_path).stdout
    assert out.strip() == f"diffsim, version {__version__}"
    listed = json.loads(_run([str(exe), "list", "--json"], cwd=tmp_path).stdout)
    # the same registry as this checkout's (a fresh process: tests register extra metrics in this one)
    code = "import json, diffsim; print(json.dumps(diffsim.list_metrics()))"
    here = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert [m["name"] for m in listed] == here and "diffsim-s" in here


def test_examples_from_the_wheel(venv_python: Path, tmp_path: Path, tiny_sd_path: Path) -> None:
    """The README's first example (`diffsim score examples/...`) and the Python quick start, on a tiny model."""
    model = tiny_sd_path
    images = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", images)
    a, b = str(images / "house_day.png"), str(images / "house_dusk.png")
    opts = ["--model", str(model), "--size", "64", "--device", "cpu", "--dtype", "float32", "-q"]
    cli = float(_run([str(venv_python.parent / "diffsim"), "score", a, b, *opts], cwd=tmp_path).stdout)
    code = (
        "import sys; from diffsim import DiffSim\n"
        "m = DiffSim.from_pretrained(sys.argv[1], size=64, device='cpu', dtype='float32')\n"
        "print(m.score(sys.argv[2], sys.argv[3]), m.score(sys.argv[2], sys.argv[2]))"
    )
    api, same = map(float, _run([str(venv_python), "-c", code, str(model), a, b], cwd=tmp_path).stdout.split())
    assert cli == pytest.approx(api, abs=1e-6)
    assert same == pytest.approx(1.0, abs=1e-5)
    assert -1.0 <= api < same
