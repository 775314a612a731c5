"""`diffsim --help`, bad options and bad values answer without importing torch (a fresh process each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
PROBE = """
import json, runpy, sys
sys.argv = ["diffsim", *json.loads(sys.argv[1])]
code = 0
try:
    runpy.run_module("diffsim", run_name="__main__")
except SystemExit as exc:
    code = exc.code
heavy = [m for m in ("torch", "diffusers", "transformers", "huggingface_hub") if m in sys.modules]
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def probe(*args: str) -> tuple[dict, str]:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args))], env=env, capture_output=True, text=True, timeout=120
    )
    return json.loads(proc.stderr.strip().splitlines()[-1]), proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "args, code",
    [
        (("--help",), 0),
        (("--version",), 0),
        (("score", "--help"), 0),
        (("index", "build", "--help"), 0),
        (("score", "--bogus"), 2),
        (("score", "a.png", "b.png", "--size", "0"), 2),
        (("retrieve", "q.png", "--index", "s", "-k", "0"), 2),
        (("list",), 0),  # polarity is registry data: listing imports no metric
        (("list", "diffsim-*"), 0),
    ],
)
def test_answers_without_importing_torch(args, code):
    result, text = probe(*args)
    assert result["code"] == code, text
    assert result["heavy"] == [], f"`diffsim {' '.join(args)}` imported {result['heavy']}"


def test_import_diffsim_is_light_and_names_still_resolve():
    code = (
        "import sys, diffsim; assert 'torch' not in sys.modules; "
        "from diffsim import DiffSim, create_metric, Features; assert 'torch' in sys.modules; "
        "assert set(diffsim.__all__) <= set(dir(diffsim)); print('ok')"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr
