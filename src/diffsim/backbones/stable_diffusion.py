"""Stable Diffusion 1.x / 2.x (any ``UNet2DConditionModel`` pipeline) as an attention-feature extractor.

For a batch of images at timestep T the extractor

1. encodes each image with the VAE: ``z0 = scaling_factor * (mean + std * eps_vae)``;
2. noises it: ``x_t = scheduler.add_noise(z0, eps, T)``, where ``eps_vae`` then ``eps`` are drawn from
   ``torch.Generator("cpu").manual_seed(seed)`` in float32, identical for every image (so features
   depend on the image alone: cacheable and symmetric);
3. runs the U-Net on the guidance pair [unconditional "", prompt] (or the prompt branch alone) and
   captures Q/K/V at the requested attention layers, stopping right after the last one.

Step 3 uses the explicit truncated forward of :mod:`.unet_forward` (no hooks, no exceptions, so it can
be compiled whole); U-Nets it cannot step through (see that module) and ``stop_early=False`` use the
hook path of :mod:`.capture`. Options: ``compile`` (``torch.compile`` of the truncated U-Net and the VAE
encoder; batches are padded to a power of two, and after a second batch size torch recompiles once
with a dynamic batch dimension, so at most two compilations per layer set), ``channels_last`` (U-Net
memory format; the VAE always runs channels_last), ``inference_mode`` (``torch.inference_mode`` instead
of ``no_grad``). Noising and every reduction stay float32 whatever the model dtype.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

import torch

from ..aas import QKV
from ..errors import ConfigError
from ..models import shared_model
from .identity import model_identity
from .kinds import KindInfo, register_kind
from .latent_diffusion import LatentDiffusionBackbone, gradient_checkpointing, guidance_pair
from .layers import AttentionLayer, alias_table, list_attention_layers, resolve_layers
from .loading import DEFAULT_MODEL, SDComponents, load_components, load_unet_skeleton
from .protocol import TextCondition
from .spec import LoadSpec
from .timesteps import resolve_timestep, step_table
from .unet_forward import TruncatedUNet, UnsupportedLayout, plan_truncation

logger = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode(compile: bool | str | None) -> str | None:
    """``compile`` option -> a ``torch.compile`` mode or None (eager)."""
    if compile is None or compile is False:
        return None
    if compile is True:
        return "default"
    if compile in COMPILE_MODES:
        return str(compile)
    raise ConfigError(f"compile must be True, False or one of {', '.join(COMPILE_MODES)}; got {compile!r}")


class _VaeMoments(torch.nn.Module):
    """``pixels -> (mean, std)`` of the VAE posterior (a plain function of tensors, for torch.compile)."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        post = self.vae.encode(x).latent_dist
        return post.mean, post.std


def _bucket(n: int) -> int:
    """The next power of two >= n (compiled passes pad partial batches to it)."""
    return 1 << max(0, (n - 1).bit_length())


def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
    """Repeat the last row of ``x`` up to ``n`` rows (every op is per image, so rows stay independent)."""
    return x if x.shape[0] >= n else torch.cat([x, x[-1:].expand(n - x.shape[0], *x.shape[1:])])


class StableDiffusionBackbone(LatentDiffusionBackbone):
    """Holds the loaded modules; turns pixel batches into per-layer Q/K/V features."""

    kind = "sd"
    condition_type = TextCondition
    default_size = 512  # the paper's setting for SD 1.x (and this library's default for SD 2.x)
    per_transformer = False  # aliases for every transformer block (SDXL)
    weights_loaded = True  # (a LazyStableDiffusion says False until it loads)
    #: extraction through the explicit truncated U-Net where it serves (False: always the hook path; the
    #: benchmarks switch it per instance)
    explicit = True

    def __init__(
        self,
        parts: SDComponents,
        device: torch.device,
        dtype: torch.dtype,
        identity: str | None = None,
        *,
        compile: bool | str = False,
        channels_last: bool = False,
        inference_mode: bool = False,
    ) -> None:
        self.parts = parts
        self.device = device
        self.dtype = dtype
        self.source = parts.source
        #: the weights actually loaded (hub commit, or resolved path + file digest): the feature cache key
        self.identity = identity or model_identity(parts.source)
        self._text: dict[str, torch.Tensor] = {}
        self.init_latent_state()  # seeded noise, clean-latent LRU, images_encoded, cache_latents
        self.passes = 0  # number of U-Net forward passes (for tests and benchmarks)
        self.last_path = ""  # "explicit" or "hooks": how the last U-Net pass ran (for tests and benchmarks)
        self.compile = compile_mode(compile)
        self.channels_last = bool(channels_last)
        self.inference_mode = bool(inference_mode)
        self._runners: dict[tuple[str, ...], Any] = {}
        self._fallback_logged: set[tuple[str, ...]] = set()
        self._timed: set[tuple] = set()
        parts.vae.to(memory_format=torch.channels_last)  # ~25% faster convolutions on CPU
        if self.channels_last:
            parts.unet.to(memory_format=torch.channels_last)
        self._moments: Any = _VaeMoments(parts.vae)
        if self.compile:
            self._moments = torch.compile(self._moments, mode=self.compile)

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, model: str | os.PathLike = DEFAULT_MODEL, share: bool = True, **spec: Any) -> Any:
        """Load (or reuse, with ``share=True``) a backbone for ``model``; ``spec``: the :class:`LoadSpec`
        fields (device, dtype, revision, variant, single_file_config, and the backbone's own options)."""
        return cls.load(LoadSpec(model, **spec), share)

    @classmethod
    def load(cls, spec: LoadSpec, share: bool = True) -> StableDiffusionBackbone:
        """Load (or reuse, with ``share=True``) the backbone ``spec`` names.

        ``compile``: True or a ``torch.compile`` mode (``"reduce-overhead"`` adds CUDA graphs);
        ``channels_last``: U-Net memory format; ``inference_mode``: ``torch.inference_mode`` for passes.
        """
        dev, dt = spec.torch_device, spec.torch_dtype
        mode = compile_mode(spec.compile)

        def load() -> StableDiffusionBackbone:
            logger.info("loading %s on %s (%s)", spec.model, dev, dt)
            parts = load_components(
                spec.model,
                dtype=dt,
                device=dev,
                revision=spec.revision,
                variant=spec.variant,
                single_file_config=spec.single_file_config,
            )
            full = spec.identity()  # after the load: a Hub id just downloaded has its commit now
            logger.debug("model identity (feature cache key): %s", full)
            return cls(
                parts,
                dev,
                dt,
                full,
                compile=mode or False,
                channels_last=spec.channels_last,
                inference_mode=spec.inference_mode,
            )

        return shared_model(cls.shared_key(spec), load, share)

    @classmethod
    def shared_key(cls, spec: LoadSpec) -> tuple:
        """The shared-model key: the kind, weights identity, device, dtype and the speed options."""
        options = (compile_mode(spec.compile), bool(spec.channels_last), bool(spec.inference_mode))
        return spec.replace(vae=None, ip_adapter=None).key(cls.kind, *options)

    @classmethod
    def find_loaded(cls, spec: LoadSpec) -> StableDiffusionBackbone | None:
        """The shared backbone for ``spec`` if it is in memory already (None: not loaded)."""
        from ..models import loaded_models

        key = cls.shared_key(spec)
        return shared_model(key, lambda: None) if key in loaded_models() else None

    def clear_caches(self) -> None:
        """Forget cached prompt embeddings, noise and clean latents (benchmarks start each row cold)."""
        self._text.clear()
        super().clear_caches()

    # ---------------------------------------------------------------- metadata
    @property
    def unet(self) -> Any:
        return self.parts.unet

    @property
    def scheduler(self) -> Any:
        return self.parts.scheduler

    @property
    def vae(self) -> Any:
        return self.parts.vae

    @property
    def latent_factor(self) -> int:
        return 2 ** (len(self.parts.vae.config.block_out_channels) - 1)

    def layers(self, size: int) -> list[AttentionLayer]:
        """Every attention layer with its heads, channels and token grid at image size ``size``."""
        return list_attention_layers(self.unet, size // self.latent_factor, self.per_transformer)

    def aliases(self) -> dict[str, str]:
        return alias_table(self.unet, self.per_transformer)

    def resolve(self, names: list[str], kind: str = "self") -> list[str]:
        """Module paths for layer names or aliases (order kept, duplicates dropped)."""
        return resolve_layers(self.unet, names, kind, self.per_transformer)

    @classmethod
    def skeleton_layers(
        cls, model: str | os.PathLike, size: int | None, revision: str | None
    ) -> tuple[int, list[AttentionLayer], dict[str, str]]:
        """(size, layers, aliases) of ``model`` read from its configs (meta device: no weights loaded)."""
        from ..bounds import check_size

        net, factor = cls.unet_skeleton(model, revision)
        size = size or cls.default_size
        check_size(size, factor)
        return (
            size,
            list_attention_layers(net, size // factor, cls.per_transformer),
            alias_table(net, cls.per_transformer),
        )

    @classmethod
    def unet_skeleton(cls, model: str | os.PathLike, revision: str | None) -> tuple[Any, int]:
        return load_unet_skeleton(model, revision)

    @staticmethod
    def alias_notes(aliases: dict[str, str]) -> list[str]:
        """What ``diffsim layers`` prints under the table about the aliases."""
        short = {a: p for a, p in aliases.items() if not a.endswith(".cross") and ".a" not in a}
        return [
            "aliases (the last self-attention of each block; add '.cross' for its attn2): "
            + ", ".join(f"{a}={p}" for a, p in short.items())
        ]

    def timestep(self, timestep: int | None = None, step: int | None = None) -> int:
        """The actual timestep T from either ``timestep`` or the paper's ``step`` index."""
        return resolve_timestep(self.scheduler, timestep, step)

    def step_table(self) -> list[int]:
        return step_table(self.scheduler)

    # ----------------------------------------------------------------- inputs
    def no_grad(self) -> contextlib.AbstractContextManager:
        """``torch.inference_mode()`` with ``inference_mode=True``, else ``torch.no_grad()``."""
        return torch.inference_mode() if self.inference_mode else torch.no_grad()

    def prompt_embedding(self, prompt: str) -> torch.Tensor:
        """Last hidden state of the text encoder for ``prompt``, (1, 77, D); computed once per prompt."""
        if prompt not in self._text:
            tok = self.parts.tokenizer
            ids = tok(
                prompt, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
            ).input_ids.to(self.device)
            with torch.no_grad():  # not inference mode: the embedding is reused outside it
                self._text[prompt] = self.parts.text_encoder(ids)[0]
        return self._text[prompt]

    def _encode(self, pixels: torch.Tensor, seed: int) -> torch.Tensor:
        self.images_encoded += pixels.shape[0]
        vae = self.parts.vae
        n = pixels.shape[0]
        x = pixels.to(self.device, self.dtype, non_blocking=True)
        if self.compile:
            x = _pad(x, _bucket(n))
        x = x.contiguous(memory_format=torch.channels_last)
        with self.no_grad():
            mean, std = self._timed_call("VAE encoder", self._moments, x)
        mean, std = mean[:n].float(), std[:n].float()
        eps_vae, _ = self.noise(seed, mean.shape[-1])
        z = mean + std * eps_vae.to(self.device)
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (z - shift) * float(vae.config.scaling_factor)

    def add_noise(self, z0: torch.Tensor, timestep: int, seed: int) -> torch.Tensor:
        """Forward diffusion to timestep T in float32 with the model's own scheduler."""
        _, eps = self.noise(seed, z0.shape[-1])
        t = torch.full((z0.shape[0],), timestep, dtype=torch.long, device=z0.device)
        return self.scheduler.add_noise(z0, eps.to(z0.device).expand_as(z0), t)

    # --------------------------------------------------------------- features
    @property
    def denoiser(self) -> Any:
        return self.parts.unet

    def model_input(self, z0: torch.Tensor, timestep: int, seed: int) -> torch.Tensor:
        return self.add_noise(z0, timestep, seed)  # DDPM-style schedulers: scale_model_input is the identity

    def conditioning(
        self, condition: TextCondition, n: int, branches: int, latents: torch.Tensor, pixels: torch.Tensor | None
    ) -> dict[str, Any]:
        cond = self.prompt_embedding(condition.prompt)
        uncond = cond if branches == 1 else self.prompt_embedding("")
        return {"encoder_hidden_states": guidance_pair(cond, uncond, n, branches)}

    def pad_latents(self, z0: torch.Tensor, layers: tuple[str, ...], stop_early: bool) -> torch.Tensor:
        if self.compile and stop_early and self._runner(layers) is not None:
            return _pad(z0, _bucket(z0.shape[0]))
        return z0

    @property
    def copy_outputs(self) -> bool:
        return self.compile == "reduce-overhead"

    def run(
        self, sample: torch.Tensor, t: torch.Tensor, layers: list[str], inputs: dict[str, Any], stop_early: bool
    ) -> dict[str, QKV]:
        """The explicit truncated forward where it serves (see :mod:`.unet_forward`), else the hook path."""
        if self.channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        emb = inputs["encoder_hidden_states"]
        runner = self._runner(tuple(layers)) if stop_early else None
        if runner is not None:
            self.last_path = "explicit"
            raw = self._timed_call("truncated U-Net", runner, sample, t, emb)
            return {p: QKV(*raw[p]) for p in layers}
        self.last_path = "hooks"
        return super().run(sample, t, layers, inputs, stop_early)

    def run_differentiable(
        self,
        sample: torch.Tensor,
        t: torch.Tensor,
        layers: list[str],
        inputs: dict[str, Any],
        stop_early: bool,
        checkpoint: bool,
    ) -> dict[str, QKV]:
        """The explicit truncated U-Net, eager and keeping the graph (SD and SDXL; ``checkpoint``: gradient
        checkpointing of the blocks that run whole); the hook path where it cannot serve."""
        if self.channels_last:
            sample = sample.contiguous(memory_format=torch.channels_last)
        try:
            if not stop_early:
                raise UnsupportedLayout("the explicit U-Net always stops after the last layer")
            plan_truncation(self.unet, tuple(layers))
        except UnsupportedLayout as exc:
            if checkpoint:
                raise ConfigError(f"gradient checkpointing needs the explicit truncated U-Net: {exc}") from exc
            return LatentDiffusionBackbone.run_differentiable(self, sample, t, layers, inputs, stop_early, False)
        runner = TruncatedUNet(self.unet, tuple(layers))
        with gradient_checkpointing(self.unet, enabled=checkpoint):
            raw = runner(sample, t, inputs["encoder_hidden_states"], inputs.get("added_cond_kwargs"))
        return {p: QKV(*raw[p]) for p in layers}

    def _runner(self, layers: tuple[str, ...]) -> Any:
        """The (compiled) explicit truncated forward for ``layers``, or None where only hooks can serve.

        Checked on every call (cheap): hooks registered on the path since the last call force the hook path.
        """
        if not self.explicit:
            return None
        try:
            plan_truncation(self.unet, layers)
        except UnsupportedLayout as exc:
            if layers not in self._fallback_logged:
                logger.info("hook path for %s: %s", ", ".join(layers), exc)
                self._fallback_logged.add(layers)
            return None
        if layers not in self._runners:
            runner: Any = TruncatedUNet(self.unet, layers)
            if self.compile:
                runner = torch.compile(runner, mode=self.compile, fullgraph=True)
            self._runners[layers] = runner
        return self._runners[layers]

    def _timed_call(self, what: str, fn: Any, *args: torch.Tensor) -> Any:
        """Call ``fn``; with ``compile``, log how long each new input shape took (compilation) once."""
        if not self.compile:
            return fn(*args)
        key = (what, id(fn), tuple(tuple(a.shape) for a in args))
        if key in self._timed:
            return fn(*args)
        start = time.perf_counter()
        out = fn(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        first = not any(k[0] == what for k in self._timed)
        self._timed.add(key)
        logger.log(
            logging.INFO if first else logging.DEBUG,
            "compiled %s for input shapes %s in %.1f s",
            what,
            key[2],
            time.perf_counter() - start,
        )
        return out

    def auto_batch_size(
        self, size: int, layers: list[str], single_branch: bool = False, fallback: int = 4, limit: int = 256
    ) -> int:
        """The largest batch of ``size`` px images whose extraction fits the free GPU memory (CPU: ``fallback``)."""
        from ..loader import auto_batch_size

        t = min(500, int(self.scheduler.config.num_train_timesteps) - 1)

        def probe(b: int) -> None:
            self.extract(torch.zeros(b, 3, size, size), layers, t, "", 0, 1 if single_branch else 2)

        return auto_batch_size(probe, self.device, fallback=fallback, limit=limit)


register_kind(
    KindInfo(
        "sd",
        "a Stable Diffusion 1.x/2.x pipeline (StableDiffusionPipeline)",
        StableDiffusionBackbone,
        "diffsim-s",
        "diffsim-s (or diffsim-c with an IP-Adapter)",
        pipelines=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"),
        config_rule=lambda unet: True,  # any other U-Net (after SDXL's rule)
        file_keys=("v1", "v2"),
        fallback=True,
    )
)
