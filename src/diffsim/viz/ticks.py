"""Number formatting for cells and colour bars: enough decimals to tell values apart, no offset notation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def decimals(values: np.ndarray, least: int = 3, most: int = 6) -> int:
    """Decimals that separate the values: ``least`` usually, more when they all lie within 0.01."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    spread = float(finite.max() - finite.min()) if finite.size else 0.0
    if spread <= 0:
        return least
    return int(min(most, max(least, math.ceil(-math.log10(spread)) + 1)))


def plain_colorbar(cbar: Any, lo: float, hi: float) -> None:
    """Label a colour bar with plain decimals (no '1e-6 + 9.99e-1' offset text)."""
    from matplotlib.ticker import FormatStrFormatter

    cbar.ax.yaxis.set_major_formatter(FormatStrFormatter(f"%.{decimals(np.array([lo, hi]))}f"))
