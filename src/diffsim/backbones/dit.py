"""DiT (``DiTPipeline``: ``facebook/DiT-XL-2-256`` / ``-512``) as an attention-feature extractor.

For a batch of images at timestep T the extractor encodes each image with the pipeline's VAE (shared
seeded noise, as for Stable Diffusion), noises it with the DiT's *own* scheduler (``add_noise`` at T:
DiT's linear beta schedule), and runs the transformer on the guidance pair ``[class c, null class]``
(the null class is ``num_embeds_ada_norm``, 1000 for ImageNet; the pipeline's own order) with the same
T as its timestep input. Q/K/V are taken at ``transformer_blocks.L.attn1``, whose input is the block's
adaLN-Zero-modulated ``norm1`` output; the pass stops after the last requested block.

The authors' DiT code differs: it noises with Stable Diffusion 1.5's scaled-linear schedule at
T = step while the model is told a different, respaced timestep (``timestep_map[1000 - step]`` of a
``step``-step respacing: step 600 -> 667, 750 -> 333, 900 -> 111; step <= 500 crashes), so the noise
level the model sees and the one it is told disagree. Here both are the same T of the DiT's schedule.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..aas import QKV
from ..devices import resolve_device, resolve_dtype
from ..errors import ConfigError, LayerError
from ..models import shared_model
from .capture import capture
from .detect import DIT, require_kind
from .latents import LatentEncoding
from .layers import AttentionLayer
from .loading import classify, diffusers_errors_only, load_cache_first
from .stable_diffusion import _by_image
from .timesteps import resolve_timestep, step_table

logger = logging.getLogger(__name__)

DEFAULT_DIT = "facebook/DiT-XL-2-256"
DEFAULT_CLASS = 1  # goldfish, as the authors used


def _load_pipeline(model: str | os.PathLike, dtype: torch.dtype, revision: str | None) -> Any:
    from diffusers import DiTPipeline

    where = classify(model)
    if where == "file":
        raise ConfigError(
            f"DiT needs a DiTPipeline folder or hub id (transformer/, vae/, scheduler/, "
            f"model_index.json); got the single file {model}"
        )
    text = str(Path(str(model)).expanduser()) if where == "folder" else str(model)
    kw: dict[str, Any] = {"torch_dtype": dtype, **({"revision": revision} if revision else {})}

    def attempt(local_files_only: bool = False) -> Any:
        with diffusers_errors_only():
            return DiTPipeline.from_pretrained(text, local_files_only=local_files_only, **kw)

    return load_cache_first(
        attempt,
        text,
        where == "folder",
        "DiT model",
        "model='/path/to/DiTPipeline-folder'",
        cli_fix="a local DiTPipeline folder with --model PATH",
        local_hint=" (expected a DiTPipeline folder: model_index.json, transformer/, vae/, scheduler/)",
    )


def dit_layers(transformer: Any, latent_size: int) -> list[AttentionLayer]:
    """``transformer_blocks.L.attn1`` of a DiT with heads, channels and the patch grid (alias ``blockL``)."""
    side = latent_size // int(transformer.config.patch_size)
    out = []
    for i, block in enumerate(transformer.transformer_blocks):
        a = block.attn1
        inner = a.to_q.out_features
        out.append(
            AttentionLayer(
                f"transformer_blocks.{i}.attn1",
                "self",
                a.heads,
                a.to_q.in_features,
                inner // a.heads,
                (side, side),
                f"block{i}",
            )
        )
    return out


class DiTBackbone(LatentEncoding):
    """Holds a DiT pipeline's modules; turns pixel batches into per-block Q/K/V features."""

    kind = DIT
    weights_loaded = True  # loaded eagerly (as the SD backbone; the lazy SD loader says False until it loads)

    def __init__(self, pipe: Any, source: str, device: torch.device, dtype: torch.dtype) -> None:
        self.pipe = pipe
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        self.scheduler = pipe.scheduler
        self.vae.decoder = None  # never decode
        if hasattr(self.vae, "post_quant_conv"):
            self.vae.post_quant_conv = None
        for m in (self.vae, self.transformer):
            if next(m.parameters()).dtype != dtype:
                m.to(dtype=dtype)
            m.to(device=device).eval().requires_grad_(False)
        self.device, self.dtype, self.source = device, dtype, source
        self.init_latent_state()
        self.forward_calls = 0
        self.labels: dict[str, int] = dict(getattr(pipe, "labels", {}) or {})

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike = DEFAULT_DIT,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        revision: str | None = None,
        share: bool = True,
    ) -> DiTBackbone:
        """Load (or reuse) a DiT pipeline from a hub id or a diffusers folder."""
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        key = ("dit", str(model), str(dev), str(dt), revision)

        def load() -> DiTBackbone:
            require_kind(model, (DIT,), "the DiT backbone", revision)
            logger.info("loading DiT %s on %s (%s)", model, dev, dt)
            return cls(_load_pipeline(model, dt, revision), str(model), dev, dt)

        return shared_model(key, load, share)

    # ---------------------------------------------------------------- metadata
    @property
    def unet_calls(self) -> int:  # the name the benchmarks and tests count forward passes by
        return self.forward_calls

    @property
    def patch_size(self) -> int:
        return int(self.transformer.config.patch_size)

    @property
    def num_classes(self) -> int:
        return int(self.transformer.config.num_embeds_ada_norm)

    @property
    def default_size(self) -> int:
        return int(self.transformer.config.sample_size) * self.latent_factor

    def layers(self, size: int) -> list[AttentionLayer]:
        """Every block's self-attention with its heads, channels and token grid at image size ``size``."""
        return dit_layers(self.transformer, size // self.latent_factor)

    def aliases(self) -> dict[str, str]:
        return {f"block{i}": f"transformer_blocks.{i}.attn1" for i in range(len(self.transformer.transformer_blocks))}

    def resolve(self, names: list[str], kind: str = "self") -> list[str]:
        """Module paths for ``blockL`` aliases, block indices or ``transformer_blocks.L.attn1`` paths."""
        aliases = self.aliases()
        paths = set(aliases.values())
        out: list[str] = []
        for n in names:
            key = f"block{n}" if isinstance(n, int) or str(n).isdigit() else str(n)
            p = aliases.get(key, key)
            if p not in paths:
                close = difflib.get_close_matches(str(n), list(aliases) + sorted(paths), n=3, cutoff=0.6)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise LayerError(
                    f"unknown DiT layer {n!r}.{hint} DiT layers are block0..block{len(aliases) - 1} "
                    "(transformer_blocks.L.attn1)"
                )
            if p not in out:
                out.append(p)
        return out

    def timestep(self, timestep: int | None = None, step: int | None = None) -> int:
        """The actual T from ``timestep`` or from ``step`` K (T = scheduler.timesteps[K]; DDIM: 999 - K)."""
        return resolve_timestep(self.scheduler, timestep, step)

    def step_table(self) -> list[int]:
        return step_table(self.scheduler)

    def class_id(self, class_label: int | str) -> int:
        """An ImageNet class id from an id or a label name (the pipeline's ``id2label``)."""
        if isinstance(class_label, bool):
            raise ConfigError(f"class_label must be an id or a label name; got {class_label!r}")
        if isinstance(class_label, int) or (isinstance(class_label, str) and class_label.strip().isdigit()):
            c = int(class_label)
            if not 0 <= c < self.num_classes:
                raise ConfigError(f"class_label {c} is out of range: the DiT has classes 0..{self.num_classes - 1}")
            return c
        if not isinstance(class_label, str):
            raise ConfigError(f"class_label must be an id or a label name; got {class_label!r}")
        name = class_label.strip()
        if name in self.labels:
            return self.pipe.get_label_ids([name])[0]
        if not self.labels:
            raise ConfigError(f"class_label {name!r}: this DiT has no id2label table; pass a class id")
        close = difflib.get_close_matches(name, list(self.labels), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown ImageNet label {name!r}.{hint} Pass a class id 0..{self.num_classes - 1} or a "
            "name from the pipeline's id2label"
        )

    # --------------------------------------------------------------- features
    @torch.no_grad()
    def extract(
        self,
        pixels: torch.Tensor,
        layers: list[str],
        timestep: int,
        class_label: int | str,
        seed: int,
        single_branch: bool = False,
        stop_early: bool = True,
    ) -> dict[str, QKV]:
        """Q/K/V at ``layers``: each ``(N, branches, heads, T, D)``; branches [class c, null class] or [c]."""
        z0 = self.encode(pixels, seed)
        return self.extract_latents(z0, layers, timestep, class_label, seed, single_branch, stop_early)

    @torch.no_grad()
    def extract_latents(
        self,
        z0: torch.Tensor,
        layers: list[str],
        timestep: int,
        class_label: int | str,
        seed: int,
        single_branch: bool = False,
        stop_early: bool = True,
    ) -> dict[str, QKV]:
        """As :meth:`extract`, from clean latents."""
        n = z0.shape[0]
        c = self.class_id(class_label)
        xt = self.model_input(z0, timestep, seed).to(self.dtype)
        cond = torch.full((n,), c, dtype=torch.long, device=self.device)
        if single_branch:
            branches, sample, labels = 1, xt, cond
        else:
            branches, sample = 2, torch.cat([xt, xt])
            labels = torch.cat([cond, torch.full((n,), self.num_classes, dtype=torch.long, device=self.device)])
        t = torch.full((sample.shape[0],), timestep, dtype=torch.long, device=self.device)
        self.forward_calls += 1
        store = capture(
            self.transformer,
            layers,
            sample,
            stop_early=stop_early,
            what="DiT",
            timestep=t,
            class_labels=labels,
            return_dict=False,
        )
        return {p: _by_image(store[p], branches, n, n) for p in layers}
