"""2AFC outcomes with polarity and ties, and percentile-bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def outcome(s_pos: float, s_neg: float, higher_is_better: bool, strict_ties: bool = False) -> float:
    """1 if the metric puts the positive closer to the anchor, 0 if not; a tie is 0.5 (0 with ``strict_ties``).

    For a similarity (``higher_is_better``) closer means a higher score, for a distance a lower one.
    """
    if s_pos == s_neg:
        return 0.0 if strict_ties else 0.5
    return float((s_pos > s_neg) == higher_is_better)


def record_outcome(rec: dict, higher_is_better: bool, strict_ties: bool = False) -> float:
    """The outcome of one triplet record: from its ``decision`` (voting metrics) or its two scores."""
    if "decision" in rec:
        d = rec["decision"]
        return (0.0 if strict_ties else 0.5) if d == 0 else float(d > 0)
    return outcome(rec["s_pos"], rec["s_neg"], higher_is_better, strict_ties)


def is_tie(rec: dict) -> bool:
    return rec["decision"] == 0 if "decision" in rec else rec["s_pos"] == rec["s_neg"]


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling items with replacement)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (float("nan"), float("nan"))
    gen = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # bounded memory for big sets
        k = min(256, n_boot - start)
        idx = gen.integers(0, x.size, size=(k, x.size))
        means[start : start + k] = x[idx].mean(axis=1)
    a = (1 - level) / 2
    return (float(np.quantile(means, a)), float(np.quantile(means, 1 - a)))


def summarize(outcomes: Sequence[float], n_boot: int = 1000, seed: int = 0) -> dict[str, object]:
    """Accuracy (fraction), 95% bootstrap interval and count."""
    x = np.asarray(outcomes, dtype=np.float64)
    acc = float(x.mean()) if x.size else float("nan")
    lo, hi = bootstrap_ci(x, n_boot, seed)
    return {"accuracy": acc, "ci95": [lo, hi], "n_triplets": int(x.size)}
