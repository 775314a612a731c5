"""Under CI=true a test that skips for a missing extra / browser fails the run; CUDA-only skips stay skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = """
import pytest

def test_missing_extra():
    pytest.importorskip("no_such_extra_for_diffsim")

def test_missing_browser():
    pytest.skip("no Chromium + chromedriver on PATH")

def test_needs_cuda():
    pytest.skip("needs a CUDA device")

@pytest.mark.xfail(reason="known")
def test_known_failure():
    assert False
"""


def run_cases(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401\n"
    )
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    if ci is not None:
        env["CI"] = ci
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_skips_fail_under_ci(tmp_path: Path) -> None:
    proc = run_cases(tmp_path, "true")
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "FAILED test_cases.py::test_missing_extra" in out and "FAILED test_cases.py::test_missing_browser" in out
    assert "skipped under CI=true" in out
    assert "SKIPPED" in out and "needs a CUDA device" in out  # the allow-list
    assert "XFAIL" in out and "2 failed" in out


@pytest.mark.parametrize("ci", [None, "false"])
def test_skips_stay_skips_elsewhere(tmp_path: Path, ci: str | None) -> None:
    proc = run_cases(tmp_path, ci)
    assert proc.returncode == 0 and "3 skipped" in proc.stdout, proc.stdout


def test_module_level_skip_fails_under_ci(tmp_path: Path) -> None:
    (tmp_path / "test_module.py").write_text('import pytest\npytest.importorskip("no_such_extra")\n')
    proc = run_cases(tmp_path, "true")
    assert proc.returncode != 0 and "skipped under CI=true" in proc.stdout, proc.stdout
