"""Packaging facts that a rename or a merge can silently break (fast; the built wheel is tested in test_wheel.py).

The distribution is ``diffsim-metric``; ``diffsim`` on PyPI is an unrelated package that also imports as
``diffsim``. A self-referencing extra written ``diffsim[...]`` or an install hint ``pip install diffsim``
would send users (and pip) to that other package.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

import diffsim

ROOT = Path(__file__).resolve().parents[1]
DIST = "diffsim-metric"
# "pip install diffsim" or 'pip install "diffsim[x]"' (but not diffsim-metric)
WRONG_HINT = re.compile(r"""pip install\s+["']?diffsim(?![-\w])""")


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_distribution_name_and_single_version(project: dict) -> None:
    assert project["name"] == DIST
    assert "version" in project["dynamic"] and "version" not in project
    assert re.fullmatch(r"\d+\.\d+\.\d+(\w+\d*)?", diffsim.__version__)
    assert project["scripts"]["diffsim"] == "diffsim.cli.main:run"


def test_no_requirement_names_the_unrelated_diffsim(project: dict) -> None:
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    names = {Requirement(r).name.lower().replace("_", "-") for r in reqs}
    assert "diffsim" not in names, "a requirement names the unrelated PyPI package 'diffsim': use 'diffsim-metric'"
    torch = [r for r in project["dependencies"] if Requirement(r).name == "torch"]
    assert torch and not any(s.operator in ("<", "<=", "==", "~=") for s in Requirement(torch[0]).specifier)


def test_install_hints_name_the_distribution() -> None:
    """Error messages and docstrings tell users to install diffsim-metric, never diffsim."""
    bad = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in sorted((ROOT / "src").rglob("*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if WRONG_HINT.search(line)
    ]
    assert not bad, "install hints must say diffsim-metric:\n" + "\n".join(bad)


def test_the_hint_check_can_fail() -> None:
    assert WRONG_HINT.search('pip install "diffsim[lpips]"') and WRONG_HINT.search("pip install diffsim")
    assert not WRONG_HINT.search('pip install "diffsim-metric[lpips]"')
    assert not WRONG_HINT.search("pip install diffsim-metric")


def test_typed_marker_and_citation_files() -> None:
    assert (ROOT / "src" / "diffsim" / "py.typed").is_file()
    for name in ("LICENSE", "CHANGELOG.md", "CITATION.cff", "mkdocs.yml"):
        assert (ROOT / name).is_file(), name
    assert f"## [{diffsim.__version__}]" in (ROOT / "CHANGELOG.md").read_text()
    assert f"version: {diffsim.__version__}" in (ROOT / "CITATION.cff").read_text()
