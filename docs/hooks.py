"""MkDocs hook: pages generated from the code, so the docs cannot drift from it.

Markers in the Markdown sources are replaced before rendering:

- ``<!-- diffsim:metrics -->``: a table and one section per registered metric (``diffsim.registry``);
- ``<!-- diffsim:backbones -->``: each backbone named by the registry and the metrics built on it;
- ``<!-- diffsim:paper-table -->``: the paper's Table 1 (``diffsim.bench.paper.TABLE1``);
- ``<!-- diffsim:api PACKAGE -->``: a mkdocstrings ``:::`` block for PACKAGE and each public module under it.

An unknown marker stops the build. The prose lives in the pages themselves; README.md is a short front page.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from typing import Any

_MARKER = re.compile(r"<!-- diffsim:([a-z-]+)(?: (.+?))? -->")


def _settings(info: Any) -> dict[str, Any]:
    """Every setting of the preset with its value (the class's defaults updated by the preset's)."""
    from diffsim.registry import settings_of

    s = settings_of(info)
    if hasattr(s, "to_dict"):
        return dict(s.to_dict())
    return dataclasses.asdict(s) if dataclasses.is_dataclass(s) else dict(getattr(info, "defaults", {}))


def _value(v: Any) -> str:
    return "/".join(map(str, v)) if isinstance(v, (list, tuple)) else repr(v) if isinstance(v, str) else str(v)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _polarity(info: Any) -> str:
    return "higher = more similar" if info.higher_is_better else "**lower** = more similar"


def _infos() -> list[Any]:
    from diffsim.registry import list_metrics, metric_info

    return [metric_info(n) for n in list_metrics()]


def _aliases() -> dict[str, list[str]]:
    from diffsim import registry

    by: dict[str, list[str]] = {}
    for alias, target in getattr(registry, "list_aliases", dict)().items():
        by.setdefault(target, []).append(alias)
    return by


def metrics_md() -> str:
    """The metric table and one section per registered metric (aliases, class, every setting)."""
    infos, aliases = _infos(), _aliases()
    out = ["| name | backbone | polarity | measures | description |", "|---|---|---|---|---|"]
    for i in infos:
        names = f"[`{i.name}`](#{i.name})" + "".join(f" = `{a}`" for a in aliases.get(i.name, []))
        out.append(
            f"| {names} | {_cell(i.backbone)} | {_polarity(i)} | {_cell(', '.join(i.measures))} "
            f"| {_cell(i.description)} |"
        )
    for i in infos:
        klass = i.metric_class
        path = f"{klass.__module__}.{klass.__qualname__}"
        out += ["", f"### `{i.name}` {{#{i.name}}}", "", _cell(i.description) + ".", ""]
        if aliases.get(i.name):
            out.append("- **Also named**: " + ", ".join(f"`{a}`" for a in aliases[i.name]))
        documented = bool(vars(klass).get("__doc__"))  # mkdocstrings renders (and anchors) documented classes only
        link = f"[`{klass.__qualname__}`][{path}]" if documented else f"`{path}`"
        out += [
            f"- **Class**: {link}",
            f"- **Backbone**: {_cell(i.backbone)}",
            f"- **Polarity**: {_polarity(i)}",
        ]
        if i.measures:
            out.append(f"- **Measures**: {', '.join(i.measures)}")
        if i.paper:
            out.append(f"- **Reference**: {_cell(i.paper)}")
        if getattr(i, "paper_row", None):
            out.append(f"- **Paper Table 1 row**: {i.paper_row}")
        preset = set(getattr(i, "defaults", {}))
        settings = _settings(i)
        if settings:
            out.append(
                "- **Settings** (preset values in bold): "
                + ", ".join(
                    f"**`{k}={_value(v)}`**" if k in preset else f"`{k}={_value(v)}`" for k, v in settings.items()
                )
            )
        out += [
            "",
            "```python",
            "from diffsim import create_metric",
            "",
            f'metric = create_metric("{i.name}")  # keyword arguments override any setting',
            "```",
            "",
            "```bash",
            f"diffsim score a.png b.png --metric {i.name}   # --set KEY=VALUE for any setting",
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
