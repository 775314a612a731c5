"""The local web app (``diffsim demo``; extra ``diffsim-metric[demo]``): pair maps, rankings and 2AFC in a browser.

:class:`~diffsim.app.engine.Engine` holds the computations (no UI dependency); :func:`build_demo` wraps
them in a gradio Blocks app and :func:`launch` serves it.
"""

from .engine import Choice, Engine, PairResult, Ranked

__all__ = ["Choice", "Engine", "PairResult", "Ranked", "build_demo", "launch"]


def __getattr__(name: str):
    if name in ("build_demo", "launch"):
        from . import ui

        return getattr(ui, name)
    raise AttributeError(name)
