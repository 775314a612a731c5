"""Every flag shown acts or is refused; commands in the README and the docs pages use real metrics and flags."""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path

import click
import pytest

from diffsim import list_metrics
from diffsim.cli.main import cli, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]  # the front page and every docs page


def _text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in PAGES)


def _doc_commands() -> list[tuple[str, list[str]]]:
    """Every `diffsim ...` line inside the code blocks of the README and the docs pages (comments dropped),
    with the page it is on; a command continued with a trailing backslash is joined first."""
    cmds = []
    for page in PAGES:
        inside, pending = False, ""
        for raw in page.read_text(encoding="utf-8").splitlines():
            if raw.lstrip().startswith("```"):
                inside, pending = not inside, ""
                continue
            line = pending + raw.strip().removeprefix("$ ")
            pending = ""
            if inside and line.startswith("diffsim "):
                line = line.split("  #")[0].split(" # ")[0].strip()
                if line.endswith("\\"):
                    pending = line[:-1] + " "
                    continue
                try:
                    cmds.append((page.name, shlex.split(line)))
                except ValueError:
                    continue
    return cmds


def test_docs_pages_are_read():
    """The check covers the README and every page of the site (a docs folder that moved would empty it)."""
    names = {p.name for p in PAGES}
    assert {"README.md", "getting-started.md", "cli.md", "benchmarks.md", "demo.md"} <= names
    pages = {page for page, _ in _doc_commands()}
    assert {"README.md", "getting-started.md", "benchmarks.md", "pictures.md"} <= pages


def test_readme_metrics_exist():
    from diffsim.registry import AUTO, metric_info

    def known(name: str) -> bool:  # a registered name or alias (e.g. lpips = lpips-vgg)
        try:
            metric_info(name)
        except Exception:
            return False
        return True

    text = _text()
    names = {n for n in set(list_metrics()) | set(re.findall(r"--metric\s+([a-z][\w.-]+)", text)) if known(n)} | {AUTO}
    used = set(re.findall(r"--metric\s+([a-z][\w.-]+)", text)) | set(re.findall(r"create_metric\(\"([\w.-]+)\"", text))
    assert used and not used - names, f"the docs name unknown metrics: {sorted(used - names)}"


def test_readme_flags_exist():
    cmds = _doc_commands()
    assert cmds
    for page, argv in cmds:
        group_flags = {o for p in cli.params for o in p.opts + p.secondary_opts}
        args = argv[1:]
        while args and args[0].startswith("-"):
            assert args[0].split("=")[0] in group_flags, (page, argv)
            args = args[1:] if args[0] not in ("--max-pixels",) else args[2:]
        if not args:
            continue
        cmd = cli.commands.get(args[0])
        assert cmd is not None, f"{page}: unknown command in {' '.join(argv)}"
        while isinstance(cmd, click.Group) and len(args) > 1:  # e.g. `diffsim index build`
            args = args[1:]
            cmd = cmd.commands.get(args[0])
            assert cmd is not None, f"{page}: unknown command in {' '.join(argv)}"
        flags = {o for p in cmd.params for o in p.opts + p.secondary_opts} | {"-h", "--help"}
        for a in args[1:]:
            if a.startswith("-") and a != "-" and not re.fullmatch(r"-\d.*", a):
                assert a.split("=")[0] in flags, (
                    f"{page}: {a} is not an option of `diffsim {args[0]}`: {' '.join(argv)}"
                )


@pytest.mark.parametrize("command", ["bench", "sweep", "consistency"])
def test_preset_commands_show_no_diffsim_defaults(command):
    ctx = click.Context(cli.commands[command], info_name=command)
    text = cli.commands[command].get_help(ctx)
    assert "[default: 500]" not in text and "[default: up0]" not in text and "[default: 512]" not in text
    assert "the preset's" in text


@pytest.mark.parametrize("flag", [["--step", "300"], ["--layer", "up1"], ["--timestep", "100"]])
def test_sweep_refuses_single_setting_flags(flag, capsys, tmp_path):
    code = main(["sweep", "nights", "--root", str(tmp_path), "--layers", "up0", "--steps", "500", *flag])
    err = capsys.readouterr().err
    assert code == 2 and f"{flag[0]} does not apply to a sweep" in err and "--layers and --steps" in err


def test_fg_preset_without_masks_warns_once(tiny_metric, image_files, caplog):
    m = tiny_metric.with_settings(mask_keys=True)
    with caplog.at_level(logging.WARNING, logger="diffsim"):
        m.score(image_files[0], image_files[1])
        m.score(image_files[0], image_files[2])
    assert sum("no masks were given" in r.message for r in caplog.records) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="diffsim"):
        tiny_metric.score(image_files[0], image_files[1])  # plain DiffSim-S: nothing to warn about
    assert not caplog.records
