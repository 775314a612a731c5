"""IntroStyle (Kumar, Mu and Vasconcelos, ICCV 2025, arXiv 2412.14432): a training-free style distance.

On the Stable Diffusion backbone DiffSim-S uses (the same loaded model, the same seeded noise and
encoding, the same feature cache and gallery store):

1. the image, resized to ``size`` (centred square crop by default, as the authors), to [-1, 1];
2. VAE-encoded and noised to timestep ``timestep`` (the actual DDPM T; the authors' ``t = 25``) with the
   seeded draws of DiffSim-S, seeds ``seed .. seed + ensemble - 1``;
3. one U-Net pass on the prompt branch alone (``prompt``: the authors' ``"a photo of"``), reading the
   **output** (hidden states, not Q/K/V) of up block ``up_block`` (the authors' ``up_ft_index = 1``);
   the ``ensemble`` feature maps are averaged (the authors average 4 noisy copies);
4. per channel c, the spatial mean mu_c and standard deviation sigma_c (population, over H x W).

The distance is the 2-Wasserstein distance between the diagonal Gaussians N(mu_a, diag sigma_a^2) and
N(mu_b, diag sigma_b^2): ``sqrt(||mu_a - mu_b||^2 + ||sigma_a - sigma_b||^2)``; lower is more similar, 0
for identical images. It is differentiable in the pixels (:meth:`IntroStyle.differentiable_scores`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from ..backbones.detect import require_kind
from ..backbones.latents import Noise
from ..backbones.lazy import LazyStableDiffusion
from ..backbones.protocol import TextCondition
from ..backbones.spec import LoadSpec
from ..bounds import MIN_LATENT_SIZE, check_crop, check_int, check_seed, check_size, positive_int
from ..defaults import DEFAULT_MODEL, DEFAULT_SEED
from ..errors import ConfigError, LayerError
from ..features import Features
from ..preprocess import Resize
from ..settings import load_field, per_call_field
from .base import FeatureMetric, FeatureSettings, Preprocessor

PAPER_TIMESTEP = 25  # the authors' t
PAPER_UP_BLOCK = 1  # the authors' up_ft_index
PAPER_PROMPT = "a photo of"
PAPER_ENSEMBLE = 4


@dataclasses.dataclass(frozen=True)
class IntroStyleSettings(FeatureSettings):
    """Settings of IntroStyle (defaults: the authors' release)."""

    model: str | os.PathLike | None = load_field(DEFAULT_MODEL)
    up_block: int = PAPER_UP_BLOCK  # U-Net up block whose output is read (0: the lowest resolution)
    timestep: int = PAPER_TIMESTEP  # the actual DDPM timestep T
    prompt: str = per_call_field(PAPER_PROMPT)  # embed(images, prompt=...) overrides it per call
    ensemble: int = PAPER_ENSEMBLE  # noise draws (seeds seed, seed+1, ...) whose feature maps are averaged
    size: int = 512
    seed: int = DEFAULT_SEED
    crop: str = "center"  # the authors' resize + centre crop; "none" squashes to the square
    variant: str | None = load_field(None)
    single_file_config: str | None = load_field(None)

    def validate(self) -> None:
        super().validate()
        check_int("up_block", self.up_block)
        if self.up_block < 0:
            raise LayerError(f"up_block must be a non-negative integer; got {self.up_block!r}")
        check_int("timestep", self.timestep)
        if not isinstance(self.prompt, str):
            raise ConfigError(f"prompt must be a string; got {type(self.prompt).__name__}")
        positive_int("ensemble", self.ensemble)
        check_size(self.size, 8, MIN_LATENT_SIZE, "the 8x-downsampled latent must be at least 8 x 8")
        check_seed("seed", self.seed)
        check_seed("seed + ensemble - 1", self.seed + self.ensemble - 1)
        check_crop(self.crop)

    @property
    def higher_is_better(self) -> bool:
        return False  # a distance


def channel_stats(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel spatial mean and population standard deviation of (N, C, H, W) maps, in float32."""
    x = maps.float().flatten(2)
    return x.mean(-1), x.std(-1, correction=0)


def w2_rows(mu_a: torch.Tensor, sd_a: torch.Tensor, mu_b: torch.Tensor, sd_b: torch.Tensor) -> torch.Tensor:
    """Paired 2-Wasserstein distances (N,) between diagonal Gaussians (a batch of one broadcasts).

    The square root has a zero gradient where the distance is exactly 0 (identical images), not NaN."""
    sq = ((torch.cat([mu_a, sd_a], dim=-1) - torch.cat([mu_b, sd_b], dim=-1)) ** 2).sum(-1)
    pos = sq > 0
    return torch.where(pos, sq, torch.ones_like(sq)).sqrt() * pos


def w2_matrix(mu_a: torch.Tensor, sd_a: torch.Tensor, mu_b: torch.Tensor, sd_b: torch.Tensor) -> torch.Tensor:
    """All-pairs 2-Wasserstein distances (len(a), len(b)): the paired formula on row blocks of at most
    ``2**24`` differences at a time (identical images give exactly 0, as :func:`w2_rows`)."""
    a, b = torch.cat([mu_a, sd_a], dim=1), torch.cat([mu_b, sd_b], dim=1)
    step = max(1, (1 << 24) // max(1, b.shape[0] * b.shape[1]))
    blocks = [((a[i : i + step, None] - b[None]) ** 2).sum(-1).sqrt() for i in range(0, a.shape[0], step)]
    return torch.cat(blocks) if blocks else a.new_zeros(0, b.shape[0])


class IntroStyle(FeatureMetric):
    """IntroStyle's style distance on a Stable Diffusion 1.x/2.x U-Net (see the module docstring)."""

    Settings = IntroStyleSettings
    settings: IntroStyleSettings
    default_name = "introstyle"
    default_model = DEFAULT_MODEL
    accepts_prompt = True

    @classmethod
    def load_backbone(cls, settings: IntroStyleSettings) -> Any:
        spec = LoadSpec.of(settings.load_dict(), cls.default_model)
        require_kind(spec.model, ("sd",), cls.default_name, spec.revision)
        return LazyStableDiffusion.load(spec)  # the DiffSim-S backbone (shared with it)

    def setup(self) -> None:
        s, bb = self.settings, self.backbone
        check_size(s.size, bb.size_multiple)
        blocks = len(bb.denoiser_config.up_block_types)
        if s.up_block >= blocks:
            raise LayerError(f"up_block must be in [0, {blocks - 1}] for this U-Net ({blocks} up blocks)")
        self.block = f"up_blocks.{s.up_block}"
        self.timestep = bb.timestep(timestep=s.timestep)

    def resolved(self) -> dict[str, Any]:
        return {"block": self.block, "timestep": self.timestep}

    def feature_resolved(self) -> dict[str, Any]:
        return self.resolved()

    @property
    def preprocessor(self) -> Preprocessor:
        return Resize(self.settings.size, self.settings.crop, signed=True)

    # ------------------------------------------------------------------ embed
    def feature_maps(
        self,
        pixels: torch.Tensor,
        grad: bool = False,
        noise: Noise | None = None,
        checkpoint: bool = False,
        prompt: str | None = None,
    ) -> torch.Tensor:
        """The up block's output (N, C, H, W) for pixels in [-1, 1], averaged over the ensemble's seeds
        (``noise``: one explicit ``(eps_vae, eps)`` for every member, differentiable path only; ``prompt``:
        None, the metric's)."""
        s = self.settings
        cond = TextCondition(s.prompt if prompt is None else prompt)
        total: torch.Tensor | None = None
        for k in range(s.ensemble):
            out = self.backbone.extract_outputs(
                pixels, [self.block], self.timestep, cond, s.seed + k, 1, grad=grad, noise=noise, checkpoint=checkpoint
            )[self.block][:, 0].float()
            total = out if total is None else total + out
        assert total is not None
        return total / s.ensemble

    def forward(self, pixels: torch.Tensor, *args: Any, **call: Any) -> Features:
        mean, std = channel_stats(self.feature_maps(pixels, prompt=call.get("prompt")))
        return Features({"mean": mean, "std": std})

    # ---------------------------------------------------------------- compare
    def compare(self, a: Features, b: Features) -> torch.Tensor:
        self.check_pair(a, b)
        return w2_rows(a.tensors["mean"], a.tensors["std"], b.tensors["mean"], b.tensors["std"])

    def compare_matrix(self, a: Features, b: Features) -> torch.Tensor:
        self.check_pair(a, b)
        return w2_matrix(a.tensors["mean"], a.tensors["std"], b.tensors["mean"], b.tensors["std"])

    # --------------------------------------------------------- differentiable
    is_differentiable = True

    def differentiable_scores(
        self, x: torch.Tensor, y: torch.Tensor, noise: Noise | None = None, checkpoint: bool = False
    ) -> torch.Tensor:
        """Distances (N,) for image tensors (N, 3, H, W) in [0, 1], keeping the graph to ``x`` and ``y``
        (equal to :meth:`score` on pixels already at the working size; other sizes are resized on the tensor's
        device with Pillow's Lanczos filter). ``noise``: one ``(eps_vae, eps)`` for every ensemble member
        instead of the seeded draws; ``checkpoint``: gradient checkpointing in the U-Net and the VAE."""
        from ..functional.resize import check_batch, resize_square

        x, y = check_batch(x, "x"), check_batch(y, "y")
        if len(x) != len(y) and 1 not in (len(x), len(y)):
            raise ConfigError(f"cannot pair {len(x)} images with {len(y)}")
        side = self.settings.size

        def stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            px = resize_square(images.to(self.device), side, crop=self.settings.crop) * 2.0 - 1.0
            return channel_stats(self.feature_maps(px, grad=True, noise=noise, checkpoint=checkpoint))

        (ma, sa), (mb, sb) = stats(x), stats(y)
        return w2_rows(ma, sa, mb, sb)
