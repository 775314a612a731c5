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
from typing import Any

import torch

from ..errors import ConfigError
from ..models import shared_model
from .blocks import BlockTransformerBackbone, load_pipeline
from .detect import require_kind
from .kinds import KindInfo, register_kind
from .latent_diffusion import guidance_pair
from .protocol import ClassCondition
from .spec import LoadSpec
from .timesteps import resolve_timestep, step_table

logger = logging.getLogger(__name__)

DEFAULT_DIT = "facebook/DiT-XL-2-256"
DEFAULT_CLASS = 1  # goldfish, as the authors used


def _load_pipeline(model: str | os.PathLike, dtype: torch.dtype, revision: str | None) -> Any:
    from diffusers import DiTPipeline

    kw: dict[str, Any] = {"torch_dtype": dtype, **({"revision": revision} if revision else {})}
    return load_pipeline(DiTPipeline, model, "DiT model", "model_index.json, transformer/, vae/, scheduler/", **kw)


class DiTBackbone(BlockTransformerBackbone):
    """Holds a DiT pipeline's modules; turns pixel batches into per-block Q/K/V features."""

    kind = "dit"
    condition_type = ClassCondition
    denoiser_name = model_name = "DiT"
    attn_name = "attn1"
    transformer_class = "DiTTransformer2DModel"
    weights_loaded = True  # loaded eagerly (as the SD backbone; the lazy SD loader says False until it loads)

    def __init__(
        self, pipe: Any, source: str, device: torch.device, dtype: torch.dtype, identity: str | None = None
    ) -> None:
        super().__init__(pipe, source, device, dtype, identity)
        self.labels: dict[str, int] = dict(getattr(pipe, "labels", {}) or {})

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike = DEFAULT_DIT, share: bool = True, **spec: Any) -> DiTBackbone:
        """Load (or reuse) a DiT pipeline from a hub id or a diffusers folder; ``spec``: device, dtype, revision."""
        return cls.load(LoadSpec(model, **spec), share)

    @classmethod
    def load(cls, spec: LoadSpec, share: bool = True) -> DiTBackbone:
        """Load (or reuse) the DiT pipeline ``spec`` names (shared by the weights' identity)."""
        dev, dt = spec.torch_device, spec.torch_dtype
        spec = LoadSpec(spec.model, spec.device, spec.dtype, spec.revision)  # what a DiT reads

        def load() -> DiTBackbone:
            require_kind(spec.model, ("dit",), "the DiT backbone", spec.revision)
            logger.info("loading DiT %s on %s (%s)", spec.model, dev, dt)
            pipe = _load_pipeline(spec.model, dt, spec.revision)
            return cls(pipe, str(spec.model), dev, dt, spec.identity())

        return shared_model(spec.key("dit"), load, share)

    # ---------------------------------------------------------------- metadata
    @property
    def num_classes(self) -> int:
        return int(self.transformer.config.num_embeds_ada_norm)

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
    def conditioning(
        self, condition: ClassCondition, n: int, branches: int, latents: torch.Tensor, pixels: torch.Tensor | None
    ) -> dict[str, Any]:
        """Class labels ``[class c, null class]`` (the pipeline's own order), or ``[c]`` for one branch."""
        c = torch.tensor([self.class_id(condition.label)], dtype=torch.long, device=self.device)
        null = torch.tensor([self.num_classes], dtype=torch.long, device=self.device)
        return {"class_labels": guidance_pair(c, null, n, branches, cond_first=True)}


register_kind(
    KindInfo(
        "dit",
        "a DiT pipeline (DiTPipeline)",
        DiTBackbone,
        "diffsim-dit",
        pipelines=("DiTPipeline",),
        denoiser="transformer",
        config_rule=lambda t: t.get("_class_name") == "DiTTransformer2DModel" or t.get("norm_type") == "ada_norm_zero",
    )
)
