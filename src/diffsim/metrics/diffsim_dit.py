"""DiffSim on DiT (``facebook/DiT-XL-2-256`` / ``-512``): the Aligned Attention Score in a DiT block.

Features are Q/K/V of ``transformer_blocks.L.attn1`` (alias ``blockL``; input: the adaLN-Zero-modulated
``norm1`` output) for the guidance pair ``[class c, null class]``; the score is DiffSim-S's
``(AAS(A,B) + AAS(B,A)) / 2``. ``class_label`` is an ImageNet id or a label name (the pipeline's
``id2label``), default 1 (goldfish) as the authors used. Noise: the DiT's own schedule at the actual T,
and the model is told that T (see :mod:`diffsim.backbones.dit` for how the authors' code differs).
"""

from __future__ import annotations

import dataclasses
import os

from ..backbones.dit import DEFAULT_CLASS, DEFAULT_DIT, DiTBackbone
from ..bounds import check_size
from ..errors import ConfigError
from ..settings import load_field, resolved_field
from .attention import AttentionMetric
from .attention_settings import AttentionSettings
from .conditioning import ClassConditioning

DEFAULT_DIT_LAYER = "block14"  # the middle of DiT-XL/2's 28 blocks (the authors published no setting)


@dataclasses.dataclass(frozen=True)
class DiTSettings(AttentionSettings):
    """Settings of DiffSim on a DiT: the attention settings plus the class label."""

    model: str | os.PathLike | None = load_field(DEFAULT_DIT)
    layer: str | tuple[str, ...] = resolved_field(DEFAULT_DIT_LAYER)  # blockL, an index, or transformer_blocks.L.attn1
    class_label: int | str = resolved_field(DEFAULT_CLASS)  # ImageNet id or label name
    size: int | None = resolved_field(None)  # None: the model's native size (256 or 512)

    def normalise(self) -> None:
        if isinstance(self.layer, (list, tuple)):
            self._set("layer", tuple(str(x) for x in self.layer))
        elif isinstance(self.layer, int) and not isinstance(self.layer, bool):
            self._set("layer", f"block{self.layer}")
        super().normalise()

    def validate(self) -> None:
        super().validate()
        if isinstance(self.class_label, bool) or not isinstance(self.class_label, (int, str)):
            raise ConfigError(f"class_label must be an ImageNet class id or label name; got {self.class_label!r}")
        if self.size is not None:
            check_size(self.size, 1, 32, "the latent must give at least 2 x 2 patches")


class DiffSimDiT(AttentionMetric):
    """DiffSim on a DiT's self-attention (class-conditioned: ``class_label``, no prompt, no masks)."""

    Settings = DiTSettings
    settings: DiTSettings
    default_name = "diffsim-dit"
    default_model = DEFAULT_DIT
    backbone_class = DiTBackbone
    conditioning = ClassConditioning()
