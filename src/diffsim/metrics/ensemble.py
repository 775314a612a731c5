"""Hard-vote ensemble (paper Table 1): DiffSim-S, CLIP-I and DINOv2 by default, any 3+ metrics allowed.

The ensemble is a 2AFC decision rule: for a reference and two candidates each member votes for the
candidate it finds closer (polarity-aware: distances vote for the lower value), and the majority wins.

* :meth:`Ensemble.votes` returns the per-member votes (+1: first candidate, -1: second, 0: exact tie);
* :meth:`Ensemble.decide` (the :class:`Metric` 2AFC API every benchmark uses) returns the sign of
  the vote sum: +1, -1, or 0 when the members are split evenly (only possible with abstentions or an
  even member count). A member whose two scores tie exactly abstains (0). The authors' code instead
  counts a tie as a vote for the second candidate; their results treat a final 0 as wrong.
* :meth:`compare` gives a pairwise score so that ``score``/``matrix``/retrieval work: the mean over
  members of each member's polarity-oriented score (distances negated). It does *not* reproduce the
  vote — use ``decide`` for triplets.

``embed`` runs each member once per image; features are kept per member (``"<i>:<key>"``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ConfigError
from ..features import Features
from ..images import ImagesLike
from .base import Metric

DEFAULT_MEMBERS = ("diffsim-s", "clip-i", "dinov2")


class Ensemble(Metric):
    """Majority vote of member metrics (at least three)."""

    name = "ensemble"
    higher_is_better = True

    def __init__(self, members: Sequence[Metric]) -> None:
        members = list(members)
        if len(members) < 3:
            raise ConfigError(f"an ensemble needs at least three metrics; got {len(members)}")
        for m in members:
            if not isinstance(m, Metric):
                raise ConfigError(f"ensemble members must be Metric instances; got {type(m).__name__}")
        self.members = members

    @classmethod
    def from_names(cls, members: Sequence[str] = DEFAULT_MEMBERS, overrides: dict[str, dict] | None = None,
                   **common: Any) -> "Ensemble":
        """Build members from the registry; ``overrides[name]`` are per-member settings, ``common`` shared
        ones (e.g. ``device``)."""
        from ..registry import create_metric

        overrides = overrides or {}
        unknown = set(overrides) - set(members)
        if unknown:
            raise ConfigError(f"overrides for metrics that are not members: {', '.join(sorted(unknown))}")
        return cls([create_metric(n, **{**common, **overrides.get(n, {})}) for n in members])

    @property
    def config(self) -> dict[str, Any]:
        return {"metric": self.name, "members": [m.config for m in self.members], "higher_is_better": True}

    def __repr__(self) -> str:
        return f"Ensemble({', '.join(repr(m) for m in self.members)})"

    def embed(self, images: ImagesLike, **kwargs: Any) -> Features:
        parts = [m.embed(images, **kwargs) for m in self.members]
        tensors = {f"{i}:{k}": v for i, f in enumerate(parts) for k, v in f.tensors.items()}
        cfg = {"metric": self.name, "members": [dict(f.config) for f in parts]}
        return Features(tensors, cfg, parts[0].names)

    def member_features(self, feats: Features, i: int) -> Features:
        prefix = f"{i}:"
        members = feats.config.get("members")
        if not isinstance(members, list) or len(members) != len(self.members):
            raise ConfigError("features do not come from this ensemble; embed them with it")
        t = {k[len(prefix):]: v for k, v in feats.tensors.items() if k.startswith(prefix)}
        return Features(t, members[i], feats.names)

    def member_scores(self, a: Features, b: Features) -> torch.Tensor:
        """Raw member scores (N, members), each in its own units and polarity."""
        return torch.stack([m.compare(self.member_features(a, i), self.member_features(b, i)).float().cpu()
                            for i, m in enumerate(self.members)], dim=1)

    def votes(self, ref: Features, a: Features, b: Features) -> torch.Tensor:
        """Per-member votes (N, members): +1 for ``a`` closer to ``ref``, -1 for ``b``, 0 for an exact tie."""
        return torch.stack([m.decide(self.member_features(ref, i), self.member_features(a, i),
                                     self.member_features(b, i)).cpu()
                            for i, m in enumerate(self.members)], dim=1).to(torch.int8)

    def decide(self, ref: Features, a: Features, b: Features) -> torch.Tensor:
        """Majority decision per triplet: +1 (``a``), -1 (``b``) or 0 (split vote)."""
        return torch.sign(self.votes(ref, a, b).sum(dim=1)).to(torch.int8)

    def vote(self, ref: ImagesLike, a: ImagesLike, b: ImagesLike) -> dict[str, Any]:
        """2AFC on images: {'votes': {member: (N,)}, 'decision': (N,)} (+1 ``a``, -1 ``b``, 0 split)."""
        fr, fa, fb = self.embed(ref), self.embed(a), self.embed(b)
        v = self.votes(fr, fa, fb)
        names = [f"{i}:{m.name}" for i, m in enumerate(self.members)]
        return {"votes": {n: v[:, i] for i, n in enumerate(names)}, "decision": torch.sign(v.sum(1)).to(torch.int8)}

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        """Mean polarity-oriented member score (a convenience for ranking; not the vote)."""
        s = self.member_scores(a, b)
        sign = torch.tensor([1.0 if m.higher_is_better else -1.0 for m in self.members])
        return (s * sign).mean(dim=1)
