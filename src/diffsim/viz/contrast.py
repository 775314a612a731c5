"""Text colours that stay readable on any cell colour (WCAG 2 relative luminance and contrast ratio)."""

from __future__ import annotations

from collections.abc import Sequence

BLACK = (0.0, 0.0, 0.0)
WHITE = (1.0, 1.0, 1.0)


def luminance(rgb: Sequence[float]) -> float:
    """WCAG relative luminance of an sRGB colour with channels in [0, 1]."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb[:3]]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast_ratio(fg: Sequence[float], bg: Sequence[float]) -> float:
    """WCAG contrast ratio between two colours, from 1 (none) to 21 (black on white)."""
    la, lb = luminance(fg), luminance(bg)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def text_colour(background: Sequence[float]) -> tuple[float, float, float]:
    """Black or white, whichever contrasts more with ``background`` (always a ratio of at least 4.58)."""
    return BLACK if contrast_ratio(BLACK, background) >= contrast_ratio(WHITE, background) else WHITE
