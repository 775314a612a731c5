"""The functional core: pure, differentiable score functions over batched image tensors.

No Pillow, no hashing, no feature cache: tensors in [0, 1] go to the backbone's device, are resized
there (``F.interpolate``, antialiased bicubic) when they are not at the working size, and every step
keeps the autograd graph, so a score can be a training loss (:mod:`diffsim.loss`) or scored on GPU
batches inside a training loop. On pixels already at the working size the scores equal the cached
``metric.score``.

    from diffsim import functional as DF
    s = DF.diffsim_s(x, y, metric.backbone, layer="up0", step=500, prompt="High quality image", seed=2334)
    s = metric.differentiable_scores(x, y)   # a metric with is_differentiable, with its own settings
"""

from .diffusion import diffusion_qkv, fresh_noise, gradient_checkpointing, seeded_noise
from .resize import resize_crop, resize_square
from .scores import diffsim_c, diffsim_s, diffusion_features, lpips, vit_aas

__all__ = [
    "diffsim_c",
    "diffsim_s",
    "diffusion_features",
    "diffusion_qkv",
    "fresh_noise",
    "gradient_checkpointing",
    "lpips",
    "resize_crop",
    "resize_square",
    "seeded_noise",
    "vit_aas",
]
