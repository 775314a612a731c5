"""The model files a metric needs, whether they are present, and prefetching them.

``needs(metric_name, overrides)`` lists :class:`Need` rows: a Hugging Face repository with the exact files
the loaders read (alternatives where a repo ships either safetensors or a ``.bin``), a torchvision
checkpoint (torch hub cache), or a Python package. ``missing(needs)`` checks the caches without any
network access; ``prefetch(needs)`` downloads only those files (``snapshot_download(allow_patterns=...)``).
A local folder given as ``model`` needs nothing but to exist.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..registry import metric_info, settings_of

_ST, _BIN = "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"
SD_FILES: tuple[tuple[str, ...], ...] = (
    ("model_index.json",),
    ("scheduler/scheduler_config.json",),
    ("text_encoder/config.json",),
    ("text_encoder/model.safetensors", "text_encoder/pytorch_model.bin"),
    ("tokenizer/merges.txt",),
    ("tokenizer/vocab.json",),
    ("tokenizer/tokenizer_config.json",),
    ("tokenizer/special_tokens_map.json",),
    ("unet/config.json",),
    (f"unet/{_ST}", f"unet/{_BIN}"),
    ("vae/config.json",),
    (f"vae/{_ST}", f"vae/{_BIN}"),
)
VIT_FILES: tuple[tuple[str, ...], ...] = (("config.json",), ("model.safetensors", "pytorch_model.bin"))
TORCHVISION = {"lpips-vgg": "vgg16", "lpips-vgg-512": "vgg16", "lpips-alex": "alexnet", "gram": "vgg19"}


@dataclass(frozen=True)
class Need:
    """One thing a metric loads. ``kind``: ``hub`` (``repo`` + ``files``), ``folder``, ``torchvision``
    (``repo`` = architecture) or ``package`` (``repo`` = module name)."""

    kind: str
    repo: str
    files: tuple[tuple[str, ...], ...] = ()
    why: str = field(default="", compare=False)

    def label(self) -> str:
        return {
            "hub": f"Hugging Face {self.repo}",
            "folder": f"folder {self.repo}",
            "torchvision": f"torchvision {self.repo} ImageNet weights",
            "package": f"Python package {self.repo}",
        }[self.kind]


def _model_need(model: str, files: tuple[tuple[str, ...], ...], why: str) -> Need:
    text = str(model)
    if Path(text).expanduser().exists() or text.startswith(("/", ".", "~")):
        return Need("folder", str(Path(text).expanduser()), why=why)
    return Need("hub", text, files, why)


def needs(name: str, overrides: dict[str, Any] | None = None) -> list[Need]:
    """What metric ``name`` (with ``overrides``) loads, as :class:`Need` rows (deduplicated, in order)."""
    over = dict(overrides or {})
    info = metric_info(name)
    klass = info.metric_class
    if getattr(klass, "votes", False):  # the ensemble: its members' needs
        settings = settings_of(info, **{k: v for k, v in over.items() if k in klass.Settings.names()})
        member_over = dict(getattr(settings, "overrides", {}) or {})
        out: list[Need] = []
        for member in settings.members:
            out += needs(member, member_over.get(member, {}))
        return list(dict.fromkeys(out))
    own = {k: v for k, v in over.items() if k in klass.Settings.names()}
    settings = settings_of(info, **own)
    if name in TORCHVISION or info.name.startswith("lpips"):
        arch = TORCHVISION.get(info.name, "vgg16")
        rows = []
        weights = getattr(settings, "weights", "imagenet")
        if weights is not None and str(weights) == "imagenet":
            rows.append(Need("torchvision", arch, why=name))
        elif weights is not None:
            rows.append(Need("folder", str(weights), why=name))
        if info.name.startswith("lpips") and getattr(settings, "lin_weights", None) is None:
            rows.append(
                Need("package", "lpips", why=f"{name}: the v0.1 linear heads (pip install 'diffsim-metric[lpips]')")
            )
        return rows
    model = getattr(settings, "model", None) or getattr(klass, "default_model", "")
    if not model:
        return []
    module = klass.__module__
    if module.endswith(("diffsim_s", "diffsim_feat")):
        return [_model_need(str(model), SD_FILES, name)]
    if module.endswith(("vit", "vit_aas", "vit_embed", "vit_feat", "ffa")):
        return [_model_need(str(model), VIT_FILES, name)]
    return [_model_need(str(model), (), name)]  # other backbones: the whole repository


# ------------------------------------------------------------------------------------------ presence
def _cached(repo: str, filename: str, cache_dir: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
    return isinstance(found, str) and os.path.exists(found)


def _torchvision_file(arch: str) -> Path:
    import torch
    import torchvision

    enum = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)


def missing_files(need: Need, cache_dir: str | None = None) -> list[str]:
    """What of ``need`` is not on this machine (empty: all present). Never touches the network."""
    if need.kind == "folder":
        return [] if Path(need.repo).exists() else [need.repo]
    if need.kind == "package":
        return [] if importlib.util.find_spec(need.repo) is not None else [need.repo]
    if need.kind == "torchvision":
        path = _torchvision_file(need.repo)
        return [] if path.exists() else [str(path)]
    if not need.files:
        from huggingface_hub import scan_cache_dir

        try:
            repos = {r.repo_id for r in scan_cache_dir(cache_dir).repos}
        except Exception:  # no cache folder yet
            repos = set()
        return [] if need.repo in repos else ["(repository)"]
    return [" | ".join(alts) for alts in need.files if not any(_cached(need.repo, f, cache_dir) for f in alts)]


def missing(all_needs: list[Need], cache_dir: str | None = None) -> list[tuple[Need, list[str]]]:
    """The needs with something absent, each with the absent files."""
    out = []
    for n in dict.fromkeys(all_needs):
        gone = missing_files(n, cache_dir)
        if gone:
            out.append((n, gone))
    return out


# ------------------------------------------------------------------------------------------ fetching
def allow_patterns(need: Need, available: list[str] | None = None) -> list[str]:
    """The files of ``need`` to download: of each set of alternatives the first the repo has."""
    out = []
    for alts in need.files:
        pick = next((f for f in alts if available is None or f in available), alts[0])
        out.append(pick)
    return out


def prefetch(need: Need, cache_dir: str | None = None) -> str:
    """Download what ``need`` names into the cache; returns a one-line description of what was done."""
    if need.kind == "folder":
        if not Path(need.repo).exists():
            raise FileNotFoundError(need.repo)
        return f"{need.repo}: local folder, nothing to download"
    if need.kind == "package":
        if importlib.util.find_spec(need.repo) is None:
            from ..errors import ConfigError

            raise ConfigError(f"{need.why}: the Python package {need.repo!r} is not installed")
        return f"{need.repo}: installed"
    if need.kind == "torchvision":
        import torchvision

        torchvision.models.get_model_weights(need.repo).IMAGENET1K_V1.get_state_dict(progress=True)
        return f"torchvision {need.repo}: {_torchvision_file(need.repo)}"
    from huggingface_hub import HfApi, snapshot_download

    from ..errors import NETWORK_HINT, ModelNotFoundError, download_failure, network_errors

    patterns = None
    try:
        if need.files:
            available = HfApi().list_repo_files(need.repo)
            patterns = allow_patterns(need, available)
        path = snapshot_download(need.repo, allow_patterns=patterns, cache_dir=cache_dir)
    except network_errors() as exc:
        raise ModelNotFoundError(download_failure(need.repo, exc), hint=NETWORK_HINT) from None
    return f"{need.repo}: {len(patterns) if patterns else 'all'} file(s) in {path}"
