"""Text-to-image transformer pipelines (SD3, PixArt): loading, the ``blockL`` layer table, the text cache.

:class:`TransformerPipelineBackbone` is what SD3 (``transformer_blocks.L.attn``) and PixArt
(``transformer_blocks.L.attn1``) share: one self-attention per block read on the latent's patch grid, a
diffusers pipeline loaded from a folder or hub id (its ``model_index.json`` names the class), the VAE encoder
only, and the prompt embeddings computed once per prompt by the pipeline's own ``encode_prompt``. A subclass
says which attention it reads and supplies ``model_input``, ``encode_prompt``, ``conditioning`` and ``run``.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..errors import ConfigError, LayerError
from ..models import shared_model
from .detect import require_kind
from .latent_diffusion import LatentDiffusionBackbone
from .layers import AttentionLayer
from .loading import classify, diffusers_errors_only, load_cache_first
from .protocol import TextCondition
from .spec import LoadSpec, check_options

logger = logging.getLogger(__name__)


def block_layers(transformer: Any, attr: str, latent_size: int) -> list[AttentionLayer]:
    """``transformer_blocks.L.<attr>`` with heads, channels and the patch grid at latent side ``latent_size``."""
    side = latent_size // int(transformer.config.patch_size)
    out = []
    for i, block in enumerate(transformer.transformer_blocks):
        a = getattr(block, attr)
        inner = a.to_q.out_features
        out.append(
            AttentionLayer(
                f"transformer_blocks.{i}.{attr}",
                "self",
                a.heads,
                a.to_q.in_features,
                inner // a.heads,
                (side, side),
                f"block{i}",
            )
        )
    return out


def block_aliases(transformer: Any, attr: str) -> dict[str, str]:
    """``blockL`` -> ``transformer_blocks.L.<attr>`` for every block."""
    return {f"block{i}": f"transformer_blocks.{i}.{attr}" for i in range(len(transformer.transformer_blocks))}


def resolve_blocks(aliases: dict[str, str], names: list[Any], model: str) -> list[str]:
    """Module paths for ``blockL`` aliases, block indices or module paths (order kept, duplicates dropped)."""
    paths = set(aliases.values())
    out: list[str] = []
    for n in names:
        key = f"block{n}" if isinstance(n, int) or str(n).isdigit() else str(n)
        p = aliases.get(key, key)
        if p not in paths:
            close = difflib.get_close_matches(str(n), list(aliases) + sorted(paths), n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            example = next(iter(aliases.values()), "").replace(".0.", ".L.", 1)
            raise LayerError(
                f"unknown {model} layer {n!r}.{hint} {model} layers are block0..block{len(aliases) - 1} ({example})"
            )
        if p not in out:
            out.append(p)
    return out


def load_pipeline(
    pipeline_cls: Any, model: str | os.PathLike, what: str, folders: str, name: str | None = None, **kw: Any
) -> Any:
    """``pipeline_cls.from_pretrained`` on a hub id (cache first) or a local folder, with actionable errors.

    ``folders`` lists what the folder holds and ``name`` the pipeline class a user should have (both for the
    error messages; default: ``pipeline_cls``'s name); ``kw``: ``torch_dtype``, ``revision``, ``variant``."""
    name = name or pipeline_cls.__name__
    where = classify(model)
    if where == "file":
        raise ConfigError(f"{what} needs a diffusers folder or hub id ({folders}); got the single file {model}")
    text = str(Path(str(model)).expanduser()) if where == "folder" else str(model)

    def attempt(local_files_only: bool = False) -> Any:
        with diffusers_errors_only():
            return pipeline_cls.from_pretrained(text, local_files_only=local_files_only, **kw)

    return load_cache_first(
        attempt,
        text,
        where == "folder",
        what,
        f"model='/path/to/{name}-folder'",
        cli_fix=f"a local {name} folder with --model PATH",
        local_hint=f" (expected a {name} folder: {folders})",
    )


def skeleton_blocks(
    transformer_cls: Any, attr: str, model: str | os.PathLike, size: int | None, revision: str | None, what: str
) -> tuple[int, list[AttentionLayer], dict[str, str]]:
    """(size, layers, aliases) of a transformer pipeline read from its configs (meta device: no weights loaded);
    ``size`` None: the model's native size."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL

    from ..bounds import check_size
    from ..errors import ModelNotFoundError
    from .loading import _first_line

    local = classify(model) == "folder"
    text = str(Path(str(model)).expanduser()) if local else str(model)
    kw: dict[str, Any] = {"revision": revision} if revision else {}
    if local:
        kw["local_files_only"] = True
    try:
        cfg = transformer_cls.load_config(text, subfolder="transformer", **kw)
        vcfg = AutoencoderKL.load_config(text, subfolder="vae", **kw)
    except Exception as exc:
        raise ModelNotFoundError(f"could not read the {what} configs of {text!r}: {_first_line(exc)}") from exc
    with init_empty_weights():
        net = transformer_cls.from_config(cfg)
    factor = 2 ** (len(vcfg.get("block_out_channels", [0] * 4)) - 1)
    size = size or int(net.config.sample_size) * factor
    check_size(size, factor * int(net.config.patch_size))
    return size, block_layers(net, attr, size // factor), block_aliases(net, attr)


class BlockTransformerBackbone(LatentDiffusionBackbone):
    """A latent diffusion backbone whose denoiser is a patch transformer read at ``transformer_blocks.L.<attn>``
    (DiT, SD3, PixArt): the ``blockL`` layer table, aliases and metadata."""

    transformer: Any
    #: the attention read in each block (``transformer_blocks.L.<attn_name>``)
    attn_name: ClassVar[str]
    #: what messages call the model
    model_name: ClassVar[str]
    #: the diffusers transformer class (read from its config by ``diffsim layers``)
    transformer_class: ClassVar[str]
    #: the pipeline's text encoders (attribute names; a missing one, e.g. SD3 without T5, is skipped)
    text_encoders: ClassVar[tuple[str, ...]] = ()
    #: keep the VAE in float32 under float16 (the SD3 / SDXL VAEs overflow in fp16; diffusers upcasts them too)
    upcast_vae: ClassVar[bool] = False

    def __init__(
        self, pipe: Any, source: str, device: torch.device, dtype: torch.dtype, identity: str | None = None
    ) -> None:
        """Hold ``pipe``'s transformer, VAE encoder, scheduler and text encoders, frozen on ``device`` in ``dtype``;
        ``identity``: the weights actually loaded (hub commit, or resolved path + file digest), the cache key."""
        self.pipe = pipe
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        self.scheduler = pipe.scheduler
        self.vae.decoder = None  # never decode
        if hasattr(self.vae, "post_quant_conv"):
            self.vae.post_quant_conv = None
        encoders = [getattr(pipe, name, None) for name in self.text_encoders]
        for m in [self.vae, self.transformer, *[e for e in encoders if e is not None]]:
            if next(m.parameters()).dtype != dtype:
                m.to(dtype=dtype)
            m.to(device=device).eval().requires_grad_(False)
        if self.upcast_vae and dtype == torch.float16 and getattr(self.vae.config, "force_upcast", True):
            self.vae.to(dtype=torch.float32)
        self.device, self.dtype, self.source = device, dtype, source
        self.identity = identity or LoadSpec(source).identity()
        self.init_latent_state()
        self.passes = 0

    # ---------------------------------------------------------------- metadata
    @property
    def denoiser(self) -> Any:
        return self.transformer

    @property
    def patch_size(self) -> int:
        return int(self.transformer.config.patch_size)

    @property
    def size_multiple(self) -> int:
        return self.latent_factor * self.patch_size

    @property
    def default_size(self) -> int:
        return int(self.transformer.config.sample_size) * self.latent_factor

    def layers(self, size: int) -> list[AttentionLayer]:
        """Every block's attention with heads, channels and the patch grid at image size ``size``."""
        return block_layers(self.transformer, self.attn_name, size // self.latent_factor)

    def aliases(self) -> dict[str, str]:
        return block_aliases(self.transformer, self.attn_name)

    def resolve(self, names: list[str], kind: str = "self") -> list[str]:
        """Module paths for ``blockL`` aliases, block indices or ``transformer_blocks.L.<attn>`` paths."""
        return resolve_blocks(self.aliases(), names, self.model_name)

    @classmethod
    def skeleton_layers(
        cls, model: str | os.PathLike, size: int | None, revision: str | None
    ) -> tuple[int, list[AttentionLayer], dict[str, str]]:
        """(size, layers, aliases) of ``model`` read from its configs (no weights loaded; size None: native)."""
        import diffusers

        net = getattr(diffusers, cls.transformer_class)
        return skeleton_blocks(net, cls.attn_name, model, size, revision, cls.model_name)

    @classmethod
    def alias_notes(cls, aliases: dict[str, str]) -> list[str]:
        return [f"aliases: block0..block{len(aliases) - 1} = transformer_blocks.L.{cls.attn_name}"]


class TransformerPipelineBackbone(BlockTransformerBackbone):
    """Base of the SD3 and PixArt backbones (see the module docstring)."""

    condition_type = TextCondition
    weights_loaded = True
    #: the pipeline classes it loads; what its folder holds
    pipelines: ClassVar[tuple[str, ...]]
    folders: ClassVar[str]
    default_model: ClassVar[str]
    text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder",)
    upcast_vae = True
    #: the backbone's own load options and their defaults (``LoadSpec.options``; see :func:`.spec.check_options`)
    load_options: ClassVar[dict[str, Any]] = {}

    @classmethod
    def pipeline_kwargs(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments for the checked load ``options`` (none by default)."""
        return {}

    def __init__(
        self, pipe: Any, source: str, device: torch.device, dtype: torch.dtype, identity: str | None = None
    ) -> None:
        super().__init__(pipe, source, device, dtype, identity)
        self._text: dict[str, tuple[torch.Tensor, ...]] = {}

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, share: bool = True, **spec: Any) -> Any:
        """Load (or reuse) the pipeline from a hub id or a diffusers folder; ``spec``: device, dtype, revision,
        variant."""
        return cls.load(LoadSpec(model or cls.default_model, **spec), share)

    @classmethod
    def load(cls, spec: LoadSpec, share: bool = True) -> Any:
        """Load (or reuse) the pipeline ``spec`` names (shared by the weights' identity); its
        ``model_index.json`` names the pipeline class, which must be one of :attr:`pipelines`."""
        from diffusers import DiffusionPipeline

        dev, dt = spec.torch_device, spec.torch_dtype
        options = check_options(spec.options, cls.load_options, f"the {cls.model_name} backbone")
        spec = LoadSpec(spec.model, spec.device, spec.dtype, spec.revision, spec.variant, options=spec.options)

        def load() -> TransformerPipelineBackbone:
            require_kind(spec.model, (cls.kind,), f"the {cls.model_name} backbone", spec.revision)
            logger.info("loading %s %s on %s (%s)", cls.model_name, spec.model, dev, dt)
            kw: dict[str, Any] = {"torch_dtype": dt, "revision": spec.revision, "variant": spec.variant}
            kw.update(cls.pipeline_kwargs(options))
            what = f"{cls.model_name} model"
            pipe = load_pipeline(DiffusionPipeline, spec.model, what, cls.folders, cls.pipelines[0], **kw)
            if type(pipe).__name__ not in cls.pipelines:
                raise ConfigError(f"{spec.model} is a {type(pipe).__name__}, not {' or '.join(cls.pipelines)}")
            return cls(pipe, str(spec.model), dev, dt, spec.identity())

        return shared_model(spec.key(cls.kind), load, share)

    def clear_caches(self) -> None:
        """Forget cached prompt embeddings, noise and clean latents."""
        self._text.clear()
        super().clear_caches()

    # ----------------------------------------------------------------- inputs
    def encode_prompt(self, prompt: str) -> tuple[torch.Tensor, ...]:
        """The pipeline's ``encode_prompt`` on the guidance pair ``["", prompt]`` (its outputs as they come)."""
        raise NotImplementedError

    @torch.no_grad()
    def text_conditioning(self, prompt: str) -> tuple[torch.Tensor, ...]:
        """:meth:`encode_prompt`, once per prompt."""
        if prompt not in self._text:
            self._text[prompt] = tuple(self.encode_prompt(prompt))
        return self._text[prompt]
