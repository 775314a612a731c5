"""How long the `diffsim` command takes to answer when it does no model work, and what it imports.

Each command runs in a fresh `python -m diffsim` process (``--repeat`` times, the median kept); the
"imports" column says which of torch / diffusers / transformers the process loaded (measured in a
second run under ``-X importtime``). Compare two trees with ``--src``:

    python benchmarks/bench_cli_startup.py                       # this checkout's src/
    python benchmarks/bench_cli_startup.py --src /path/to/other/src --model /path/to/tiny-model

Without ``--model``, the `layers` row uses a tiny random SD folder built in a temporary folder.

Measured on 2 CPU cores (median of 3, seconds), before (eager imports) -> after (lazy imports):
``--help`` 1.85 -> 0.13, ``--version`` 1.84 -> 0.13, ``score --help`` 1.87 -> 0.13, ``score --bogus``
1.87 -> 0.13, ``score --size 0`` 1.87 -> 0.12 (none import torch now); ``list`` 1.96 -> 2.05 (still torch:
polarity comes from each metric's settings class); ``layers`` 7.09 -> 7.28 (still diffusers: it builds a
weightless U-Net skeleton).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffusers", "transformers")


def commands(model: str) -> dict[str, list[str]]:
    return {
        "diffsim --help": ["--help"],
        "diffsim --version": ["--version"],
        "diffsim score --help": ["score", "--help"],
        "diffsim list": ["list"],
        "bad option (score --bogus)": ["score", "--bogus"],
        "bad value (score --size 0)": ["score", "a.png", "b.png", "--size", "0"],
        "diffsim layers -m TINY": ["layers", "-m", model],
    }


def run_once(src: str, args: list[str], importtime: bool = False) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "diffsim", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, proc.stderr


def imported(stderr: str) -> str:
    names = {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    return ", ".join(h for h in HEAVY if h in names) or "-"


def tiny_model() -> str:
    sys.path.insert(0, str(ROOT))
    from tests.tiny_sd import build_tiny_pipeline

    return str(build_tiny_pipeline(Path(tempfile.mkdtemp()) / "tiny"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(ROOT / "src"), help="the src/ folder whose diffsim to time")
    ap.add_argument("--model", default=None, help="a local diffusers folder for the layers row")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    model = a.model or tiny_model()
    print(f"src: {a.src}  python {sys.version.split()[0]}  {os.cpu_count()} CPUs  (median of {a.repeat})")
    print(f"| {'command':<28} | {'seconds':>7} | imports |")
    print(f"|{'-' * 30}|{'-' * 9}|---------|")
    for label, args in commands(model).items():
        times = [run_once(a.src, args)[0] for _ in range(a.repeat)]
        print(f"| {label:<28} | {statistics.median(times):7.2f} | {imported(run_once(a.src, args, True)[1])} |")


if __name__ == "__main__":
    main()
