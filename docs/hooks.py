"""MkDocs hook: pages generated from the code, so the docs cannot drift from it.

Markers in the Markdown sources are replaced before rendering:

- ``<!-- diffsim:metrics -->``: a table and one section per registered metric (``diffsim.registry``);
- ``<!-- diffsim:backbones -->``: each backbone named by the registry and the metrics built on it;
- ``<!-- diffsim:paper-table -->``: the paper's Table 1 (``diffsim.bench.paper.TABLE1``);
- ``<!-- diffsim:api PACKAGE -->``: a mkdocstrings ``:::`` block for PACKAGE and each public module under it.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from collections.abc import Mapping
from typing import Any

_MARKER = re.compile(r"<!-- diffsim:([a-z-]+)(?: ([\w.]+))? -->")


def _defaults(info: Any) -> dict[str, Any]:
    d = getattr(info, "defaults", {})
    if dataclasses.is_dataclass(d) and not isinstance(d, type):
        d = dataclasses.asdict(d)
    return dict(d) if isinstance(d, Mapping) else {}


def _value(v: Any) -> str:
    return "/".join(map(str, v)) if isinstance(v, (list, tuple)) else repr(v) if isinstance(v, str) else str(v)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _polarity(info: Any) -> str:
    return "higher = more similar" if getattr(info, "higher_is_better", True) else "**lower** = more similar"


def _infos() -> list[Any]:
    from diffsim.registry import list_metrics, metric_info

    return [metric_info(n) for n in list_metrics()]


def metrics_md() -> str:
    """The metric table and one section per registered metric."""
    infos = _infos()
    out = ["| name | backbone | polarity | measures | description |", "|---|---|---|---|---|"]
    out += [
        f"| [`{i.name}`](#{i.name}) | {_cell(i.backbone)} | {_polarity(i)} | {_cell(', '.join(i.measures))} "
        f"| {_cell(i.description)} |"
        for i in infos
    ]
    for i in infos:
        out += [
            "",
            f"### `{i.name}` {{#{i.name}}}",
            "",
            _cell(i.description) + ".",
            "",
            f"- **Backbone**: {_cell(i.backbone)}",
            f"- **Polarity**: {_polarity(i)}",
        ]
        if i.measures:
            out.append(f"- **Measures**: {', '.join(i.measures)}")
        if i.paper:
            out.append(f"- **Reference**: {_cell(i.paper)}")
        defaults = _defaults(i)
        if defaults:
            out.append("- **Defaults**: " + ", ".join(f"`{k}={_value(v)}`" for k, v in defaults.items()))
        out += [
            "",
            "```python",
            "from diffsim import create_metric",
            "",
            f'metric = create_metric("{i.name}")  # keyword arguments override the defaults',
            "```",
        ]
    return "\n".join(out)


def backbones_md() -> str:
    """Each backbone named in the registry, with the metrics that use it."""
    by: dict[str, list[str]] = {}
    for i in _infos():
        by.setdefault(i.backbone, []).append(i.name)
    out = ["| backbone (default weights) | metrics |", "|---|---|"]
    out += [f"| {_cell(b)} | {', '.join(f'[`{n}`](metrics.md#{n})' for n in names)} |" for b, names in by.items()]
    return "\n".join(out)


def paper_table_md() -> str:
    """Table 1 of the paper, as stored in ``diffsim.bench.paper``."""
    from diffsim.bench.paper import DATASETS, TABLE1, TITLES

    out = ["| Metric | " + " | ".join(TITLES[d] for d in DATASETS) + " |", "|---|" + "---:|" * len(DATASETS)]
    for row, values in TABLE1.items():
        cells = ["–" if values.get(d) is None else f"{values[d]:.2f}" for d in DATASETS]
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def api_md(package: str) -> str:
    """``:::`` blocks for ``package`` (its docstring only) and every public module below it (``_private`` skipped)."""
    mod = importlib.import_module(package)
    names = [package]
    if hasattr(mod, "__path__"):
        names += sorted(
            m.name
            for m in pkgutil.walk_packages(mod.__path__, package + ".")
            if not any(part.startswith("_") for part in m.name.split("."))
        )
    blocks = [f"::: {package}\n    options:\n      members: false" if len(names) > 1 else f"::: {package}"]
    return "\n\n".join(blocks + [f"::: {n}" for n in names[1:]])


def on_page_markdown(markdown: str, **_: Any) -> str:
    def replace(m: re.Match[str]) -> str:
        kind, arg = m.group(1), m.group(2)
        if kind == "metrics":
            return metrics_md()
        if kind == "backbones":
            return backbones_md()
        if kind == "paper-table":
            return paper_table_md()
        if kind == "api" and arg:
            return api_md(arg)
        raise ValueError(f"unknown docs marker {m.group(0)!r}")

    return _MARKER.sub(replace, markdown)
