"""`diffsim datasets list` and `diffsim datasets download NAME --root DIR`."""

from __future__ import annotations

import json

import click

from ..datasets import list_datasets


@click.group("datasets")
def datasets_group() -> None:
    """The paper's benchmarks: where they come from, and downloading them into the loaders' layout."""


@datasets_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def list_sources_command(as_json: bool) -> None:
    """Every benchmark: name, size, licence, source URL, and whether the download is automatic or manual."""
    from ..datasets.sources import list_sources

    rows = list_sources()
    if as_json:
        keys = ("dataset", "title", "mode", "folder", "size", "licence", "homepage", "url", "checksum_note", "manual")
        click.echo(json.dumps([{k: getattr(s, k) for k in keys} for s in rows], indent=1))
        return
    for s in rows:
        how = {"automatic": "automatic", "hub": "automatic (Hugging Face Hub)", "manual": "MANUAL"}[s.mode]
        click.echo(f"{s.dataset:<13} {how}")
        click.echo(f"  {s.title}; {s.size}")
        click.echo(f"  licence: {s.licence}")
        click.echo(f"  source:  {s.homepage}")
        for part in s.parts:
            click.echo(f"  file:    {part.url}")
        if s.hub_repo:
            click.echo(f"  hub:     {s.url}")
        click.echo(f"  folder:  ROOT/{s.folder}; checksum: {s.checksum_note}")


@datasets_group.command("download")
@click.argument("names", nargs=-1, required=True, type=click.Choice([*list_datasets(), "all"]))
@click.option("--root", "-r", type=click.Path(file_okay=False), required=True, help="Folder holding the datasets.")
@click.option("--force", is_flag=True, help="Replace a dataset folder that already exists.")
@click.option("--keep-archives", is_flag=True, help="Keep the downloaded archives in ROOT/.downloads.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def download_command(names: tuple[str, ...], root: str, force: bool, keep_archives: bool, quiet: bool) -> None:
    """Download benchmark NAME(S) (or 'all') into ROOT, in the layout `diffsim bench` and `reproduce` read.

    Transfers resume where they stopped (rerun the command), sizes and checksums are verified where the
    source publishes them, and a set appears in ROOT only once it is completely extracted. Sets that
    must be requested by hand print the manual steps.
    """
    from ..datasets.download import ManualDownload, download_dataset
    from ..datasets.sources import list_sources

    wanted = [s.dataset for s in list_sources()] if "all" in names else list(dict.fromkeys(names))
    manual = []
    for name in wanted:
        try:
            path = download_dataset(name, root, force=force, keep_archives=keep_archives, progress=not quiet)
        except ManualDownload as exc:
            if len(wanted) == 1:
                raise
            manual.append(str(exc))
            continue
        click.echo(f"{name}: ready in {path}")
    for m in manual:
        click.echo(f"manual: {m}", err=True)
