"""DiffSim-C (paper Eq. 11, Figure 2): the Aligned Attention Score in a cross-attention layer of
Stable Diffusion 1.5 with IP-Adapter Plus.

For each image X one U-Net pass runs on X's noisy latent with the adapter fed X; at the chosen
``attn2`` the features are Q (the ``norm2`` output through ``to_q``) and that layer's IP keys/values
(``to_k_ip``/``to_v_ip`` of X's 16 image tokens). ``DiffSim-C(A, B) = (AAS(A, B) + AAS(B, A)) / 2``
where AAS(A, B) lets A's queries attend to B's image tokens (text keys do not enter). ``scale`` is the
adapter's weight in every ``attn2`` during the pass (paper: 0.5). Features cache like DiffSim-S.
Foreground masks may weight the query tokens (``mask_keys`` does not apply: the keys are image tokens).

``clip_input``: what the IP-Adapter's CLIP image encoder sees. ``"original"`` (default, as the authors
and diffusers' ``ip_adapter_image``): the CLIP processor gets the original image (shortest side to 224,
bicubic, centre crop), so non-square images keep their aspect ratio; the preprocessing step then packs
the VAE's square and that view into one tensor (:class:`~diffsim.preprocess.WithView`), so the feature
cache's content key covers the original too. ``"square"``: the processor gets the ``size`` x ``size``
image already squashed for the VAE (the earlier behaviour; identical for square inputs up to resampling).
"""

from __future__ import annotations

import dataclasses
import os

from ..backbones.ip_adapter import DEFAULT_IP_ADAPTER, IP_IMAGE_ENCODER, IP_SUBFOLDER, IP_WEIGHTS, IPAdapterBackbone
from ..backbones.loading import DEFAULT_MODEL, resolve_source
from ..bounds import one_of, path_like
from ..errors import ConfigError
from ..preprocess import WithView
from ..settings import load_field, resolved_field, setting
from .attention import AttentionMetric
from .base import Preprocessor
from .conditioning import TextConditioning
from .diffsim_s import DiffSimSettings

CLIP_INPUTS = ("original", "square")
DEFAULT_C_LAYER = "up0.cross"  # up_blocks.1.attentions.2.transformer_blocks.0.attn2: the authors' effective layer


@dataclasses.dataclass(frozen=True)
class DiffSimCSettings(DiffSimSettings):
    """DiffSim-S's settings plus the IP-Adapter (where it is and its scale); layers are ``attn2``."""

    layer: str | tuple[str, ...] = resolved_field(DEFAULT_C_LAYER)
    ip_adapter: str | os.PathLike = load_field(DEFAULT_IP_ADAPTER)  # hub id or local folder in the h94 layout
    ip_subfolder: str = load_field(IP_SUBFOLDER)
    ip_weight_name: str = load_field(IP_WEIGHTS)
    ip_image_encoder: str = load_field(IP_IMAGE_ENCODER)
    scale: float = 0.5  # the adapter's weight in every attn2 (paper: 0.5)
    clip_input: str = setting("original")  # what the CLIP image encoder sees: "original" image or VAE "square"

    def validate(self) -> None:
        super().validate()
        path_like("ip_adapter", self.ip_adapter, optional=False)
        # a missing local folder is refused here, before any model loads (never tried as a Hub id)
        resolve_source(self.ip_adapter, "IP-Adapter", f"{self.ip_subfolder}/{self.ip_weight_name}")
        one_of("clip_input", self.clip_input, CLIP_INPUTS)
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not self.scale >= 0:
            raise ConfigError(f"scale must be a number >= 0 (the IP-Adapter weight; paper 0.5); got {self.scale!r}")
        if self.mask_keys:
            raise ConfigError(
                "mask_keys does not apply to DiffSim-C: its keys are the 16 IP image tokens, not "
                "spatial tokens (masks still weight the query tokens)"
            )


class DiffSimC(AttentionMetric):
    """DiffSim-C: Q at a cross-attention layer against the IP-Adapter image tokens' keys/values."""

    Settings = DiffSimCSettings
    settings: DiffSimCSettings
    default_name = "diffsim-c"
    default_model = DEFAULT_MODEL
    backbone_class = IPAdapterBackbone
    layer_kind = "cross"
    conditioning = TextConditioning(ip_scale="scale")

    @property
    def preprocessor(self) -> Preprocessor:
        """The VAE's square, packed with the CLIP processor's view of the original (``clip_input="original"``)."""
        square = super().preprocessor
        if self.settings.clip_input == "square":
            return square
        return WithView(square, self.backbone.clip_view())
