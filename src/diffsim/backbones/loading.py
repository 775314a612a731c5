"""Load the parts of a Stable Diffusion pipeline that DiffSim needs, with actionable errors.

``model`` may be a Hugging Face Hub id (cached under ``HF_HOME``; ``HF_HUB_OFFLINE=1`` honoured), a
local diffusers folder (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), or a
single ``.safetensors`` / ``.ckpt`` checkpoint. The safety checker and the VAE decoder are never
loaded or kept: DiffSim only encodes.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..defaults import DEFAULT_MODEL as DEFAULT_MODEL  # re-exported: defined without torch
from ..errors import ModelNotFoundError

logger = logging.getLogger(__name__)
T = TypeVar("T")

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
#: the file each part is read from first (diffusers / transformers)
CONFIG_FILES = {
    "unet": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "scheduler": "scheduler_config.json",
}


@dataclass
class SDComponents:
    """The modules DiffSim-S runs: VAE encoder, U-Net, text encoder, tokenizer, noise scheduler."""

    vae: Any
    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    source: str


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Keep loader chatter away from the user while models load.

    Inside: anything written to stdout goes to stderr (stdout carries results only); the per-shard
    'Loading weights' bars and the Hub/diffusers/transformers UserWarnings and FutureWarnings are hidden;
    their loggers show nothing below CRITICAL ("An error occurred while trying to fetch ...", "Defaulting
    to unsafe serialization": diffsim's own error says what failed). With diffsim logging at INFO or
    DEBUG (CLI ``-v``) the libraries' logs are left as they are.
    """
    from diffusers.utils import logging as dlog
    from huggingface_hub.utils import logging as hlog
    from transformers.utils import logging as tlog

    d_on, t_on = dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled()
    levels = (dlog.get_verbosity(), tlog.get_verbosity(), hlog.get_verbosity())
    verbose = logging.getLogger("diffsim").getEffectiveLevel() <= logging.INFO
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    if not verbose:
        for lib in (dlog, tlog, hlog):
            lib.set_verbosity(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), redirect_stdout(sys.stderr):
            warnings.filterwarnings("ignore", category=UserWarning, module=r"(huggingface_hub|diffusers|transformers)")
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        for lib, level in zip((dlog, tlog, hlog), levels, strict=False):
            lib.set_verbosity(level)
        if d_on:
            dlog.enable_progress_bar()
        if t_on:
            tlog.enable_progress_bar()


@contextmanager
def diffusers_errors_only() -> Iterator[None]:
    """Hide diffusers' logger warnings that say nothing to a DiffSim user (e.g. the hub DiT's string
    ``id2label`` keys, or "modules to keep in float32: []" when an adapter is loaded)."""
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)


def _fix_hints(model: str) -> dict[str, str]:
    """How to get a Hub model that is not in the cache: hint (Python) and cli_hint (command line)."""
    tail = "; or unset HF_HUB_OFFLINE to allow downloads" if _offline() else ""
    first = f"download it once while online (`hf download {model}`), or pass "
    return {
        "hint": first + "model='/path/to/diffusers-folder' or a single .safetensors/.ckpt file" + tail,
        "cli_hint": first + "a local diffusers folder or a single .safetensors/.ckpt file with --model PATH" + tail,
    }


def _cache_note() -> str:
    from huggingface_hub import constants

    return f"(looked in the Hugging Face cache {constants.HF_HUB_CACHE}" + (
        " with HF_HUB_OFFLINE=1)" if _offline() else ")"
    )


def looks_local(text: str) -> bool:
    """True for a model reference that can only be a local path, so that a missing one is refused at once
    instead of being tried on the Hub (which waits on the network): it starts with ``/``, ``.`` or ``~``,
    has a backslash or a drive letter, ends in a checkpoint suffix, is not of the Hub's ``owner/name``
    form (no slash, or more than one), or its first part is an existing local folder (``models/sd``)."""
    text = str(text)
    if text.startswith(("/", ".", "~")) or "\\" in text or (len(text) > 1 and text[1] == ":"):
        return True
    if text.lower().endswith(SINGLE_FILE_SUFFIXES) or text.count("/") != 1:
        return True
    return Path(text.split("/", 1)[0]).is_dir()


def classify(model: str | os.PathLike) -> str:
    """'file', 'folder' or 'hub'; raises :class:`ModelNotFoundError` for a local path that does not exist."""
    text = str(model)
    p = Path(text).expanduser()
    if p.is_file():
        if p.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ModelNotFoundError(
                f"model file {p} is not a checkpoint: expected one of {', '.join(SINGLE_FILE_SUFFIXES)}"
            )
        return "file"
    if p.is_dir():
        return "folder"
    if looks_local(text):
        raise ModelNotFoundError(
            f"model path {text} does not exist: expected a diffusers folder "
            f"({'/, '.join(SUBFOLDERS)}/) or a single .safetensors/.ckpt file"
        )
    return "hub"


def _check_folder(path: Path, needed: tuple[str, ...] = SUBFOLDERS) -> None:
    missing = [s for s in needed if not (path / s).is_dir()]
    if missing:
        present = sorted(x.name for x in path.iterdir())[:12]
        part = (
            path.name in SUBFOLDERS and (path / "config.json").is_file() or (path / "tokenizer_config.json").is_file()
        )
        hint = f"; this is the {path.name}/ part of a model: pass its parent folder {path.parent}" if part else ""
        raise ModelNotFoundError(
            f"{path} is not a Stable Diffusion diffusers folder: missing {', '.join(m + '/' for m in missing)} "
            f"(found: {', '.join(present) or 'nothing'}); expected subfolders {', '.join(s + '/' for s in needed)}"
            + hint
        )
    for sub in needed:  # a part without its config: name the part, not the model root
        cfg = CONFIG_FILES.get(sub)
        if cfg is not None and not (path / sub / cfg).is_file():
            found = sorted(x.name for x in (path / sub).iterdir())[:12]
            raise ModelNotFoundError(
                f"{path / sub}/ has no {cfg}: the {sub}/ part of {path} is incomplete "
                f"(found: {', '.join(found) or 'nothing'}); copy the whole {sub}/ folder of the model"
            )


def _load_scheduler(model: str, **kw: Any) -> Any:
    import diffusers

    cfg = diffusers.DDPMScheduler.load_config(model, subfolder="scheduler", **kw)
    cls = getattr(diffusers, cfg.get("_class_name", ""), None)
    if cls is None:
        raise ModelNotFoundError(f"unknown scheduler class {cfg.get('_class_name')!r} in {model}/scheduler")
    return cls.from_config(cfg)


def _from_parts(
    model: str, dtype: torch.dtype, revision: str | None, variant: str | None, local_only: bool
) -> SDComponents:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    kw: dict[str, Any] = {"revision": revision} if revision else {}
    if local_only:
        kw["local_files_only"] = True
    else:
        _log_download_size(model, revision, variant or _auto_variant(dtype))
    wkw = dict(kw, torch_dtype=dtype)
    unet = _weights(UNet2DConditionModel, model, "unet", variant, wkw)
    vae = _weights(AutoencoderKL, model, "vae", variant, wkw)
    text_encoder = _weights(CLIPTextModel, model, "text_encoder", variant, wkw)
    tokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer", **kw)
    scheduler = _load_scheduler(model, **kw)
    return SDComponents(vae, unet, text_encoder, tokenizer, scheduler, model)


def _auto_variant(dtype: torch.dtype) -> str | None:
    """The weight-file variant a 16-bit run fetches when none is given: ``fp16`` (about half the bytes)."""
    return "fp16" if dtype in (torch.float16, torch.bfloat16) else None


def _weights(cls: Any, model: str, subfolder: str, variant: str | None, kw: dict[str, Any]) -> Any:
    """One part's weights: ``variant`` if given; with a 16-bit dtype and none given, the ``fp16`` files where the
    model has them, else the full files."""
    auto = variant is None and _auto_variant(kw["torch_dtype"])
    if not auto:
        return cls.from_pretrained(model, subfolder=subfolder, variant=variant, **kw)
    try:
        return cls.from_pretrained(model, subfolder=subfolder, variant="fp16", **kw)
    except (OSError, ValueError) as exc:  # no fp16 files (diffusers: OSError, transformers: OSError/ValueError)
        logger.debug("%s/%s: no fp16 variant (%s); loading the full weights", model, subfolder, _first_line(exc))
        return cls.from_pretrained(model, subfolder=subfolder, **kw)


def _log_download_size(model: str, revision: str | None, variant: str | None) -> None:
    """Log how much a Hub download of the weights will fetch (best effort: nothing when the Hub is unreachable)."""
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(model, revision=revision, files_metadata=True)
    except Exception:  # only a log line; the download itself reports its failures
        return
    files = {f.rfilename: f.size or 0 for f in info.siblings or []}
    total = 0
    for part in ("unet", "vae", "text_encoder"):
        weights = {n: b for n, b in files.items() if n.startswith(part + "/") and _is_weight(n)}
        tagged = {n: b for n, b in weights.items() if variant and f".{variant}." in n}
        plain = {n: b for n, b in weights.items() if not any(f".{v}." in n for v in ("fp16", "bf16", "non_ema", "ema"))}
        chosen = tagged or plain
        safe = {n: b for n, b in chosen.items() if n.endswith(".safetensors")}
        total += sum((safe or chosen).values())
    if total:
        logger.info("%s: downloading about %.2f GB of weights (%s files)", model, total / 1e9, variant or "full")


def _is_weight(name: str) -> bool:
    return name.endswith((".safetensors", ".bin"))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("", "0", "false", "no")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_network_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        name = type(seen).__name__
        if any(w in name for w in ("Connect", "Timeout", "Network")) or "Name or service not known" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def resolve_source(model: str | os.PathLike, what: str, expected: str) -> tuple[str, bool]:
    """(source, is_local_folder) for a hub id or a local folder; a local-looking path that does not
    exist raises :class:`ModelNotFoundError` (``expected`` says what the folder should hold)."""
    text = str(model)
    p = Path(text).expanduser()
    if p.is_dir():
        return str(p), True
    if looks_local(text):
        raise ModelNotFoundError(
            f"{what} folder {text} does not exist: pass a local folder saved with "
            f"save_pretrained ({expected}) or a hub id (owner/name)"
        )
    return text, False


def load_cache_first(
    attempt: Callable[..., T],
    src: str,
    local: bool,
    what: str,
    fix: str,
    local_hint: str = "",
    cli_fix: str | None = None,
) -> T:
    """Run ``attempt(local_files_only=True)``, then (if allowed) ``attempt()`` to download; raise
    :class:`ModelNotFoundError` saying what was tried and how to fix it (``fix`` names the Python argument
    to pass, ``cli_fix`` the command-line flag)."""
    try:
        with quiet_loading():
            try:
                return attempt(local_files_only=True)
            except Exception:
                if local or _offline():
                    raise
            return attempt()
    except Exception as exc:
        first = _first_line(exc)
        if local:
            raise ModelNotFoundError(f"could not load the {what} folder {src}: {first}{local_hint}") from exc
        if _offline():
            how = "it is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading"
        else:
            cause = " (the Hub could not be reached: no network?)" if _is_network_error(exc) else ""
            how = f"it is not in the local Hugging Face cache and downloading it failed{cause}"
        tail = "; or unset HF_HUB_OFFLINE" if _offline() else ""
        get = f"download it once while online (`hf download {src}`), or pass "
        raise ModelNotFoundError(
            f"could not load {what} {src!r}: {how}: {first} {_cache_note()}",
            hint=get + fix + tail,
            cli_hint=get + (cli_fix or fix) + tail,
        ) from exc


def _from_single_file(path: Path, dtype: torch.dtype, config: str | None) -> SDComponents:
    from diffusers import StableDiffusionPipeline

    kw: dict[str, Any] = {"torch_dtype": dtype, "load_safety_checker": False}
    if config:
        kw["config"] = config
    pipe = StableDiffusionPipeline.from_single_file(str(path), **kw)
    return SDComponents(pipe.vae, pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.scheduler, str(path))


def load_components(
    model: str | os.PathLike = DEFAULT_MODEL,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    revision: str | None = None,
    variant: str | None = None,
    single_file_config: str | None = None,
) -> SDComponents:
    """Load VAE (encoder only), U-Net, text encoder, tokenizer and scheduler, in eval mode on ``device``."""
    kind = classify(model)
    text = str(Path(str(model)).expanduser()) if kind != "hub" else str(model)
    if kind == "hub":
        parts = load_cache_first(
            lambda local_files_only=False: _from_parts(text, dtype, revision, variant, local_only=local_files_only),
            text,
            False,
            "model",
            "model='/path/to/diffusers-folder' or a single .safetensors/.ckpt file",
            cli_fix="a local diffusers folder or a single .safetensors/.ckpt file with --model PATH",
        )
        return prepare_components(parts, dtype, device)
    try:
        with quiet_loading():
            if kind == "file":
                parts = _from_single_file(Path(text), dtype, single_file_config)
            else:
                _check_folder(Path(text))
                parts = _from_parts(text, dtype, revision, variant, local_only=True)
    except ModelNotFoundError:
        raise
    except Exception as exc:  # the libraries raise OSError, ValueError, HTTP errors, ...
        first = _first_line(exc)
        if kind == "file":
            raise ModelNotFoundError(
                f"could not load the single-file checkpoint {text}: {first}. A single file needs its pipeline config",
                hint="have it in the Hugging Face cache, or pass single_file_config='/path/to/diffusers-folder'",
                cli_hint="have its pipeline config in the Hugging Face cache, or pass "
                "--set single_file_config=/path/to/diffusers-folder",
            ) from exc
        raise ModelNotFoundError(f"could not load the diffusers folder {text}: {first}") from exc
    return prepare_components(parts, dtype, device)


def prepare_components(parts: SDComponents, dtype: torch.dtype, device: torch.device | str) -> SDComponents:
    """Drop the VAE decoder, cast, move, and freeze: the modules as DiffSim keeps them."""
    vae = parts.vae
    vae.decoder = None  # never decode: saves memory
    if hasattr(vae, "post_quant_conv"):
        vae.post_quant_conv = None
    for m in (vae, parts.unet, parts.text_encoder):
        if next(m.parameters()).dtype != dtype:
            m.to(dtype=dtype)
        m.to(device=device).eval().requires_grad_(False)
    return parts


def load_unet_skeleton(model: str | os.PathLike = DEFAULT_MODEL, revision: str | None = None) -> tuple[Any, int]:
    """The U-Net built from its config on the meta device (no weights), and the VAE downscale factor.

    Any failure (missing, unreadable or invalid config, a corrupt single file) raises
    :class:`ModelNotFoundError` in one line naming the model and what was expected.
    """
    kind = classify(model)
    text = str(Path(str(model)).expanduser()) if kind != "hub" else str(model)
    try:
        with quiet_loading():
            return _unet_skeleton(text, kind, revision)
    except ModelNotFoundError:
        raise
    except Exception as exc:  # the libraries raise OSError, ValueError, JSON and HTTP errors, ...
        first = _first_line(exc)
        if kind == "file":
            raise ModelNotFoundError(
                f"could not read the single-file checkpoint {text}: {first} (is it a "
                "complete Stable Diffusion .safetensors/.ckpt file?)"
            ) from exc
        if kind == "folder":
            raise ModelNotFoundError(
                f"could not read the U-Net of the diffusers folder {text} (in {Path(text) / 'unet'}): {first} "
                "(expected unet/config.json as written by save_pretrained)"
            ) from exc
        raise ModelNotFoundError(
            f"could not read the U-Net config of {text!r}: {first} {_cache_note()}", **_fix_hints(text)
        ) from exc


def _unet_skeleton(text: str, kind: str, revision: str | None) -> tuple[Any, int]:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if kind == "file":
        parts = _from_single_file(Path(text), torch.float32, None)
        return parts.unet, 2 ** (len(parts.vae.config.block_out_channels) - 1)
    kw: dict[str, Any] = {"revision": revision} if revision else {}
    if kind == "folder":
        _check_folder(Path(text), ("unet",))
        kw["local_files_only"] = True
    cfg = UNet2DConditionModel.load_config(text, subfolder="unet", **kw)
    try:
        vcfg = AutoencoderKL.load_config(text, subfolder="vae", **kw)
        factor = 2 ** (len(vcfg.get("block_out_channels", [0] * 4)) - 1)
    except Exception:
        factor = 8
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(cfg)
    return unet, factor
