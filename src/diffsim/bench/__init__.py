"""The benchmark harness: 2AFC and consistency protocols, sweeps, manifests and reports."""

from .consistency import evaluate_consistency
from .manifest import load_manifest, save_manifest
from .report import bar_chart, load_results, markdown_table
from .stats import bootstrap_ci, outcome
from .sweep import sweep
from .twoafc import EvalOptions, evaluate_2afc

__all__ = [
    "EvalOptions",
    "bar_chart",
    "bootstrap_ci",
    "evaluate_2afc",
    "evaluate_consistency",
    "load_manifest",
    "load_results",
    "markdown_table",
    "outcome",
    "save_manifest",
    "sweep",
]
