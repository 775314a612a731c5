"""Projected compact features: a PCA over each stored tensor's channels, optional token pooling, then int8.

A store built with ``compact="pca{R}-int8"`` (or ``"pca{R}-pool{P}-int8"``) keeps, for every Q/K/V tensor
``(N, *group, T, D)`` of every layer, ``R`` principal components of its channel vectors instead of the
channels. A token's channel vector is the last group dimension (the heads) times ``D``, i.e. the layer's
channel count as the model computes it (1280 at SD 1.5's ``up_blocks.0``); the other group dimensions (the
guidance branches) and the tokens are samples. With ``pool{P}`` the square token grid is first averaged
in ``P x P`` cells. The components are then int8 codes with one fp16 scale per channel over the tokens
(:func:`quantise_int8`, also the plain ``int8`` mode's codec).

The projection (per tensor: the mean ``(C,)`` and the basis ``(C, R)``) is fitted on a sample of the
gallery (:class:`Projection.fit`: the streamed sums ``sum x`` and ``sum x x^T`` in float64, so a fit holds
``C x C`` numbers per tensor, not the tokens) and saved in the store (:data:`PROJECTION_FILE`).

Decoding gives the stored tensor back in its original shape: ``codes * scale @ basis^T + mean``, each
pooled token repeated over its ``P x P`` cell. The metric's ``compare`` then runs unchanged. Comparing in
the projected space is not equivalent (the attention products are per head and scaled by ``sqrt(D)``, and
the mean is not removed), so the features are reconstructed. The repeated tokens are exact-equivalent to
scoring the pooled tokens themselves: a key repeated ``P^2`` times with one value leaves the softmax
weights of the distinct keys unchanged, and repeating every query token scales the cosine's dot product
and both norms alike.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..bounds import check_int
from ..errors import ConfigError, StoreError
from ..features import Features

#: the modes without a fitted projection
BASIC_MODES = ("none", "fp16", "int8")
PROJECTION_FILE = "projection.safetensors"
MAX_DIMS = 4096
MAX_POOL = 8
#: a build fits the projection on its first ``FIT_IMAGES`` embedded images, or fewer when their features
#: reach ``FIT_BYTES`` (they are held in memory until the projection is fitted, then written)
FIT_IMAGES = 64
FIT_BYTES = 256 * 1024**2
_MODE_RE = re.compile(r"^pca(\d+)(?:-pool(\d+))?-int8$")
_MEAN, _BASIS = "#mean", "#basis"
#: int8 stores: ``KEY`` holds the int8 codes, ``KEY + SCALE_SUFFIX`` the fp16 scale of each channel
SCALE_SUFFIX = "#scale"


def quantise_int8(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 codes of ``v`` (..., tokens, channels), one fp16 scale per channel over the tokens."""
    x = v.float()
    scale = (x.abs().amax(dim=-2, keepdim=True) / 127.0).to(torch.float16).float()
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round(x / safe).clamp_(-127, 127).to(torch.int8)
    return codes, scale.to(torch.float16)


@dataclass(frozen=True)
class CompactMode:
    """A parsed compact mode: ``dims`` PCA components (None: no projection), ``pool`` x ``pool`` token cells."""

    name: str
    dims: int | None = None
    pool: int = 1

    @property
    def projected(self) -> bool:
        return self.dims is not None


def parse_mode(mode: object) -> CompactMode:
    """The :class:`CompactMode` of a mode name; a :class:`ConfigError` naming the accepted forms otherwise."""
    if mode in BASIC_MODES:
        return CompactMode(str(mode))
    m = _MODE_RE.match(mode) if isinstance(mode, str) else None
    if m is None:
        raise ConfigError(
            f"compact must be none, fp16, int8, pcaR-int8 or pcaR-poolP-int8 (e.g. pca64-pool2-int8); got {mode!r}"
        )
    dims = check_int("compact PCA dimensions R", int(m.group(1)), 1, MAX_DIMS)
    pool = 1 if m.group(2) is None else check_int("compact token pooling P", int(m.group(2)), 2, MAX_POOL)
    return CompactMode(str(mode), dims, pool)


def projected_keys(feats: Features) -> list[str]:
    """The tensors a projection compresses: floating point, with a token and a channel dimension."""
    return [k for k, v in feats.tensors.items() if v.is_floating_point() and v.dim() >= 3]


def channels_last(v: torch.Tensor) -> torch.Tensor:
    """``(N, *G0, H, T, D)`` -> ``(N, *G0, T, H*D)`` (``(N, T, D)`` is unchanged)."""
    if v.dim() < 4:
        return v
    v = v.movedim(-2, -3)
    return v.reshape(*v.shape[:-2], -1)


def restore_heads(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`channels_last` for one image's stored shape ``(*G, T, D)``."""
    if len(shape) < 3:
        return x
    h, d = shape[-3], shape[-1]
    return x.reshape(*x.shape[:-1], h, d).movedim(-3, -2)


def _grid(tokens: int, pool: int, key: str) -> int:
    side = math.isqrt(tokens)
    if side * side != tokens or side % pool:
        raise ConfigError(
            f"token pooling {pool}x{pool} needs a square token grid whose side is a multiple of {pool}; "
            f"{key} has {tokens} tokens: use a mode without -pool{pool}"
        )
    return side


def pool_tokens(x: torch.Tensor, pool: int, key: str = "features") -> torch.Tensor:
    """``(..., T, C)`` -> ``(..., T / pool^2, C)``: the square token grid averaged in ``pool x pool`` cells."""
    if pool == 1:
        return x
    s = _grid(x.shape[-2], pool, key) // pool
    cells = x.reshape(*x.shape[:-2], s, pool, s, pool, x.shape[-1])
    return cells.mean(dim=(-4, -2)).reshape(*x.shape[:-2], s * s, x.shape[-1])


def unpool_tokens(x: torch.Tensor, pool: int) -> torch.Tensor:
    """``(..., T / pool^2, C)`` -> ``(..., T, C)``: every pooled token repeated over its cell."""
    if pool == 1:
        return x
    s = math.isqrt(x.shape[-2])
    lead, c = x.shape[:-2], x.shape[-1]
    grid = x.reshape(*lead, s, 1, s, 1, c).expand(*lead, s, pool, s, pool, c)
    return grid.reshape(*lead, s * s * pool * pool, c)


def _eigenvectors(cov: torch.Tensor) -> torch.Tensor:
    """Eigenvectors of a symmetric matrix as columns, largest eigenvalue first.

    One torch thread: a C x C eigendecomposition (C ~ 1,000) gains little from threads and, measured on a
    loaded 2-core machine, took 28 s with two threads against 1.2 s with one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    finally:
        torch.set_num_threads(before)
    return vecs.flip(-1)


@dataclass
class Projection:
    """Per projected tensor: the channel mean ``(C,)``, the basis ``(C, R)`` and one image's shape ``(*G, T, D)``."""

    mode: CompactMode
    means: dict[str, torch.Tensor]
    bases: dict[str, torch.Tensor]
    shapes: dict[str, tuple[int, ...]]
    sample: int  # images it was fitted on

    @classmethod
    def fit(cls, mode: CompactMode | str, batches: Iterable[Features]) -> Projection:
        """Fit on the images of ``batches`` (streamed: the float64 sums of ``x`` and ``x x^T`` per tensor)."""
        mode = parse_mode(mode) if isinstance(mode, str) else mode
        if not mode.projected or mode.dims is None:
            raise ConfigError(f"compact mode {mode.name!r} has no projection to fit")
        sums: dict[str, torch.Tensor] = {}
        grams: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        images = 0
        for feats in batches:
            images += len(feats)
            for key in projected_keys(feats):
                v = feats.tensors[key]
                shape = tuple(v.shape[1:])
                if shapes.setdefault(key, shape) != shape:
                    raise ConfigError(f"cannot fit a projection: {key} has shapes {shapes[key]} and {shape}")
                x = pool_tokens(channels_last(v.detach().cpu().double()), mode.pool, key)
                x = x.reshape(-1, x.shape[-1])
                sums[key] = sums.get(key, 0) + x.sum(0)
                grams[key] = grams.get(key, 0) + x.T @ x
                counts[key] = counts.get(key, 0) + x.shape[0]
        if not shapes:
            raise ConfigError("cannot fit a projection: no image features with tokens and channels were given")
        means, bases = {}, {}
        for key, s in sums.items():
            mean = s / counts[key]
            vecs = _eigenvectors(grams[key] / counts[key] - torch.outer(mean, mean))
            means[key] = mean.float()
            bases[key] = vecs[:, : min(mode.dims, vecs.shape[1])].float().contiguous()
        return cls(mode, means, bases, shapes, images)

    def truncate(self, mode: CompactMode | str) -> Projection:
        """The projection of ``mode`` (same pooling, at most as many components) from this one's leading
        components: a PCA's first R components do not depend on how many more were kept."""
        mode = parse_mode(mode) if isinstance(mode, str) else mode
        if mode.dims is None or mode.pool != self.mode.pool:
            raise ConfigError(f"cannot derive {mode.name} from a {self.mode.name} projection")
        if any(mode.dims > b.shape[1] and b.shape[1] < b.shape[0] for b in self.bases.values()):
            raise ConfigError(f"cannot derive {mode.name} from a {self.mode.name} projection: too few components")
        bases = {k: b[:, : mode.dims].contiguous() for k, b in self.bases.items()}
        return Projection(mode, dict(self.means), bases, dict(self.shapes), self.sample)

    @property
    def dims(self) -> dict[str, int]:
        return {k: int(b.shape[1]) for k, b in self.bases.items()}

    def project(self, key: str, v: torch.Tensor) -> torch.Tensor:
        """Stored tensor ``(N, *G, T, D)`` -> components ``(N, *G0, T / pool^2, R)`` (float32)."""
        self._check(key, v)
        x = pool_tokens(channels_last(v.detach().cpu().float()), self.mode.pool, key)
        return (x - self.means[key]) @ self.bases[key]

    def reconstruct(self, key: str, z: torch.Tensor) -> torch.Tensor:
        """Components -> the stored tensor's shape ``(N, *G, T, D)``, float32."""
        x = z.float() @ self.bases[key].T + self.means[key]
        return restore_heads(unpool_tokens(x, self.mode.pool), self.shapes[key])

    def encode(self, feats: Features) -> dict[str, torch.Tensor]:
        """The tensors a shard stores: int8 components plus ``KEY#scale`` for projected tensors, others as given."""
        out: dict[str, torch.Tensor] = {}
        for k, v in feats.tensors.items():
            if k in self.bases:
                out[k], out[k + SCALE_SUFFIX] = quantise_int8(self.project(k, v))
            else:
                out[k] = v.detach().cpu()
        return out

    def _check(self, key: str, v: torch.Tensor) -> None:
        if key not in self.bases or tuple(v.shape[1:]) != self.shapes[key]:
            raise StoreError(
                f"features {key} {tuple(v.shape[1:])} do not fit the store's projection "
                f"(fitted for {self.shapes.get(key)}); build another store"
            )

    # ------------------------------------------------------------------ file
    def save(self, path: str | Path) -> None:
        """Write as safetensors (``KEY#mean``, ``KEY#basis``; mode, sample and shapes in the metadata)."""
        from safetensors.torch import save_file

        tensors = {k + _MEAN: m for k, m in self.means.items()} | {k + _BASIS: b for k, b in self.bases.items()}
        meta = {"mode": self.mode.name, "sample": str(self.sample), "shapes": json.dumps(self.shapes)}
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> Projection:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not iterable)
            shapes = {k: tuple(s) for k, s in json.loads(meta["shapes"]).items()}
            means = {k: tensors[k + _MEAN] for k in shapes}
            bases = {k: tensors[k + _BASIS] for k in shapes}
            return cls(parse_mode(meta["mode"]), means, bases, shapes, int(meta["sample"]))
        except FileNotFoundError:
            raise StoreError(f"the store's projection file {path} is missing; build the store again") from None
        except Exception as exc:  # noqa: BLE001 - any parse error: name the file
            raise StoreError(f"cannot read the store's projection {path}: {exc}") from exc

    def token_bytes(self) -> int:
        """Bytes of one image's projected tensors as stored (int8 components + fp16 scales)."""
        total = 0
        for k, shape in self.shapes.items():
            lead = math.prod(shape[:-3]) if len(shape) >= 3 else 1
            tokens = shape[-2] // (self.mode.pool**2)
            r = self.dims[k]
            total += lead * tokens * r + lead * r * 2
        return total
