"""Optional dependencies: import a module that an extra provides, or say which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import DiffSimError


class MissingExtraError(DiffSimError, ImportError):
    """A feature needs a package from an optional extra (``pip install "diffsim-metric[EXTRA]"``)."""


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that provides it.

    ``feature`` names what needs it in the message (default: the module's top-level package).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        what = feature or top
        raise MissingExtraError(
            f"{what} needs the optional package {top!r}, which cannot be imported ({exc}); "
            f'install it with: pip install "diffsim-metric[{extra}]"'
        ) from exc
