"""Stable Diffusion 3 / 3.5 (``StableDiffusion3Pipeline``: an MM-DiT) as an attention-feature extractor.

For a batch of images at timestep T (1..1000, the transformer's timestep input) the extractor

1. encodes each image with the 16-channel VAE: ``z0 = (mean + std * eps_vae - shift_factor) * scaling_factor``;
2. noises it along the rectified-flow path: ``sigma = T / 1000``, ``x_t = (1 - sigma) * z0 + sigma * eps``
   (``eps_vae`` then ``eps`` from one CPU generator seeded ``seed``, the same for every image; no
   scheduler shift);
3. runs the transformer with ``timestep = T`` (= ``sigma * 1000``, as diffusers' pipeline passes it) on the
   guidance pair ``["", prompt]`` from the pipeline's own ``encode_prompt`` (prompt and pooled embeddings,
   both halves kept), and captures at joint block L (``transformer_blocks.L.attn``) the **image stream's**
   Q/K/V: ``to_q/to_k/to_v`` of the block's ``norm1``-modulated image tokens, split into heads, with
   ``norm_q`` / ``norm_k`` where the model has qk-norm (SD3.5). The text tokens take no part; SD3.5's
   second image-only attention (``attn2``) is not read. The pass stops after the last requested block.

Steps: the paper's index K maps to the unshifted flow-matching table ``T = 1000 - K`` (``sigma = 1 - K/1000``):
step 500 is sigma 0.5, and higher steps are less noisy, as on SD (step 900 -> T = 100).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ..aas import QKV
from ..errors import ConfigError, TimestepError
from ..models import shared_model
from .blocks import block_aliases, block_layers, load_pipeline, resolve_blocks, skeleton_blocks
from .capture import capture, project_qkv
from .detect import require_kind
from .kinds import KindInfo, register_kind
from .latent_diffusion import LatentDiffusionBackbone, guidance_pair
from .layers import AttentionLayer
from .protocol import TextCondition
from .spec import LoadSpec

logger = logging.getLogger(__name__)

SD3 = "sd3"
DEFAULT_SD3 = "stabilityai/stable-diffusion-3-medium-diffusers"
FOLDERS = (
    "model_index.json, transformer/, vae/, scheduler/, text_encoder/, text_encoder_2/, text_encoder_3/, "
    "tokenizer/, tokenizer_2/, tokenizer_3/"
)


def flow_step_table(n: int = 1000) -> list[int]:
    """The paper's step axis on a rectified-flow model: ``T = n - K`` for K in 0..n-1 (sigma = T / n)."""
    return [n - k for k in range(n)]


def image_stream_qkv(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> QKV:
    """Q/K/V of a joint attention's image tokens alone (``hidden_states``; the context stream is ignored),
    with the module's ``norm_q`` / ``norm_k`` applied where it has them."""
    hidden = args[0] if args else kwargs["hidden_states"]
    return project_qkv(module, hidden)


class SD3Backbone(LatentDiffusionBackbone):
    """Holds an SD3 / SD3.5 pipeline's modules; turns pixel batches into per-block image-stream Q/K/V."""

    kind = SD3
    condition_type = TextCondition
    denoiser_name = "SD3 transformer"
    weights_loaded = True

    def __init__(
        self, pipe: Any, source: str, device: torch.device, dtype: torch.dtype, identity: str | None = None
    ) -> None:
        self.pipe = pipe
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        self.scheduler = pipe.scheduler
        self.vae.decoder = None  # never decode
        self.vae.post_quant_conv = None
        encoders = [pipe.text_encoder, pipe.text_encoder_2, pipe.text_encoder_3]
        for m in [self.vae, self.transformer, *[e for e in encoders if e is not None]]:
            if next(m.parameters()).dtype != dtype:
                m.to(dtype=dtype)
            m.to(device=device).eval().requires_grad_(False)
        if dtype == torch.float16 and getattr(self.vae.config, "force_upcast", True):
            self.vae.to(dtype=torch.float32)  # the SD3 VAE overflows in fp16 (diffusers upcasts it too)
        self.device, self.dtype, self.source = device, dtype, source
        self.identity = identity or LoadSpec(source).identity()
        self._text: dict[str, tuple[torch.Tensor, ...]] = {}
        self.init_latent_state()
        self.passes = 0

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike = DEFAULT_SD3, share: bool = True, **spec: Any) -> SD3Backbone:
        """Load (or reuse) an SD3 pipeline from a hub id or a diffusers folder; ``spec``: device, dtype, revision,
        variant."""
        return cls.load(LoadSpec(model, **spec), share)

    @classmethod
    def load(cls, spec: LoadSpec, share: bool = True) -> SD3Backbone:
        """Load (or reuse) the SD3 pipeline ``spec`` names (shared by the weights' identity)."""
        from diffusers import StableDiffusion3Pipeline

        dev, dt = spec.torch_device, spec.torch_dtype
        spec = LoadSpec(spec.model, spec.device, spec.dtype, spec.revision, spec.variant)  # what SD3 reads

        def load() -> SD3Backbone:
            require_kind(spec.model, (SD3,), "the SD3 backbone", spec.revision)
            logger.info("loading SD3 %s on %s (%s)", spec.model, dev, dt)
            kw: dict[str, Any] = {"torch_dtype": dt, "revision": spec.revision, "variant": spec.variant}
            pipe = load_pipeline(StableDiffusion3Pipeline, spec.model, "SD3 model", FOLDERS, **kw)
            return cls(pipe, str(spec.model), dev, dt, spec.identity())

        return shared_model(spec.key(SD3), load, share)

    def clear_caches(self) -> None:
        self._text.clear()
        super().clear_caches()

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

    @property
    def max_size(self) -> int:
        """The largest image side the positional embedding covers (``pos_embed_max_size`` patches)."""
        return int(self.transformer.config.pos_embed_max_size) * self.size_multiple

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    def layers(self, size: int) -> list[AttentionLayer]:
        """Every joint block's attention (image stream) with heads, channels and patch grid at ``size``."""
        return block_layers(self.transformer, "attn", size // self.latent_factor)

    def aliases(self) -> dict[str, str]:
        return block_aliases(self.transformer, "attn")

    def resolve(self, names: list[str], kind: str = "self") -> list[str]:
        """Module paths for ``blockL`` aliases, block indices or ``transformer_blocks.L.attn`` paths."""
        return resolve_blocks(self.aliases(), names, "SD3")

    @classmethod
    def skeleton_layers(
        cls, model: str | os.PathLike, size: int | None, revision: str | None
    ) -> tuple[int, list[AttentionLayer], dict[str, str]]:
        """(size, layers, aliases) of ``model`` read from its configs (no weights loaded; size None: native)."""
        from diffusers import SD3Transformer2DModel

        return skeleton_blocks(SD3Transformer2DModel, "attn", model, size, revision, "SD3")

    @staticmethod
    def alias_notes(aliases: dict[str, str]) -> list[str]:
        return [f"aliases: block0..block{len(aliases) - 1} = transformer_blocks.L.attn"]

    def step_table(self) -> list[int]:
        return flow_step_table(self.num_train_timesteps)

    def timestep(self, timestep: int | None = None, step: int | None = None) -> int:
        """T (sigma = T / 1000) from ``timestep`` or from the paper's ``step`` K (T = 1000 - K)."""
        n = self.num_train_timesteps
        if timestep is not None and step is not None:
            raise ConfigError("give either timestep (the actual T) or step (the paper's index), not both")
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < n:
                raise TimestepError(f"step must be an integer in 0..{n - 1} (SD3: T = {n} - step); got {step!r}")
            return flow_step_table(n)[step]
        if timestep is None:
            raise ValueError("timestep or step is required")
        if isinstance(timestep, bool) or not isinstance(timestep, int) or not 0 <= timestep <= n:
            raise TimestepError(
                f"timestep must be an integer 0 <= T <= {n} (sigma = T / {n} on SD3's flow path); got {timestep!r}"
            )
        return timestep

    # --------------------------------------------------------------- features
    def model_input(self, z0: torch.Tensor, timestep: int, seed: int) -> torch.Tensor:
        """``(1 - sigma) z0 + sigma eps`` with ``sigma = T / 1000`` (the rectified-flow forward process)."""
        side = z0.shape[-1] * self.latent_factor
        if max(z0.shape[-2:]) * self.latent_factor > self.max_size:
            raise ConfigError(f"size {side} is larger than this SD3 model takes ({self.max_size} px)")
        _, eps = self.noise(seed, z0.shape[-1])
        sigma = timestep / self.num_train_timesteps
        return (1.0 - sigma) * z0 + sigma * eps.to(z0.device, z0.dtype)

    @torch.no_grad()
    def text_conditioning(self, prompt: str) -> tuple[torch.Tensor, ...]:
        """(cond, uncond, pooled, uncond_pooled): the pipeline's ``encode_prompt`` (negative ""), once per prompt."""
        if prompt not in self._text:
            self._text[prompt] = tuple(
                self.pipe.encode_prompt(
                    prompt, None, None, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=True
                )
            )
        return self._text[prompt]

    def conditioning(
        self, condition: TextCondition, n: int, branches: int, latents: torch.Tensor, pixels: torch.Tensor | None
    ) -> dict[str, Any]:
        cond, uncond, pooled, uncond_pooled = self.text_conditioning(condition.prompt)
        return {
            "encoder_hidden_states": guidance_pair(cond, uncond, n, branches),
            "pooled_projections": guidance_pair(pooled, uncond_pooled, n, branches),
        }

    def run(
        self, sample: torch.Tensor, t: torch.Tensor, layers: list[str], inputs: dict[str, Any], stop_early: bool
    ) -> dict[str, QKV]:
        return capture(
            self.transformer,
            layers,
            stop_early=stop_early,
            project=image_stream_qkv,
            what=self.denoiser_name,
            hidden_states=sample,
            timestep=t.to(torch.float32),  # sigma * 1000, a float as the pipeline passes it
            return_dict=False,
            **inputs,
        )


register_kind(
    KindInfo(
        SD3,
        "a Stable Diffusion 3 / 3.5 pipeline (StableDiffusion3Pipeline)",
        SD3Backbone,
        "diffsim-s-sd3",
        pipelines=("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline"),
        denoiser="transformer",
        config_rule=lambda t: t.get("_class_name") == "SD3Transformer2DModel",
    )
)
