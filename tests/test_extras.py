"""Optional extras: the core imports and runs without them; a feature that needs one names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from diffsim import ModelNotFoundError
from diffsim._optional import MissingExtraError

SRC = Path(__file__).resolve().parents[1] / "src"
EXTRAS = ("matplotlib", "gradio", "gradio_client", "torchmetrics", "lpips")


def block(monkeypatch, *names: str) -> None:
    """Make ``import NAME`` (and its submodules) fail as if the package were not installed."""
    for name in [m for m in sys.modules if any(m == n or m.startswith(n + ".") for n in names)] + list(names):
        monkeypatch.setitem(sys.modules, name, None)


def test_core_works_without_any_extra(tiny_sd_path, image_files, tmp_path):
    """A fresh interpreter with every extra blocked: import, score, CSV matrix; pictures say which extra."""
    code = textwrap.dedent(f"""
        import json, sys
        for name in {EXTRAS!r}:
            sys.modules[name] = None
        import diffsim, diffsim.cli.main, diffsim.viz, diffsim.app
        from diffsim.cli.main import main
        common = ["--model", {str(tiny_sd_path)!r}, "--size", "64", "--device", "cpu"]
        a, b = {str(image_files[0])!r}, {str(image_files[1])!r}
        out = {{"score": main(["score", a, b, *common]),
                "matrix_csv": main(["matrix", a, b, "--csv", {str(tmp_path / "m.csv")!r}, *common, "-q"]),
                "map": main(["map", a, b, "-o", {str(tmp_path / "m.png")!r}, *common]),
                "demo": main(["demo", *common])}}
        try:
            import diffsim.integrations.torchmetrics
        except diffsim.DiffSimError as exc:
            out["torchmetrics"] = str(exc)
        print("RESULT", json.dumps(out))
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["score"] == 0 and result["matrix_csv"] == 0
    assert (tmp_path / "m.csv").read_text().startswith("image,")
    assert result["map"] == 2 and result["demo"] == 2 and not (tmp_path / "m.png").exists()
    assert "error: diffsim map needs the optional package 'matplotlib'" in proc.stderr
    assert 'pip install "diffsim-metric[plots]"' in proc.stderr and 'pip install "diffsim-metric[demo]"' in proc.stderr
    assert 'pip install "diffsim-metric[torchmetrics]"' in result["torchmetrics"]


def test_lpips_weights_name_the_extra(monkeypatch):
    from diffsim.metrics.lpips import lpips_weights_path

    block(monkeypatch, "lpips")
    with pytest.raises(ModelNotFoundError, match=r'pip install "diffsim-metric\[lpips\]"'):
        lpips_weights_path("vgg")


def test_charts_name_the_extra(monkeypatch, tmp_path):
    from diffsim.bench.report import bar_chart
    from diffsim.bench.sweep import heatmap

    block(monkeypatch, "matplotlib")
    with pytest.raises(MissingExtraError, match=r'the sweep heat map needs .*"diffsim-metric\[plots\]"'):
        heatmap([], ["up0"], [500], tmp_path / "h.png")
    with pytest.raises(MissingExtraError, match=r'the report chart needs .*"diffsim-metric\[plots\]"'):
        bar_chart([], tmp_path / "c.png")
    assert isinstance(MissingExtraError("x"), ImportError)
