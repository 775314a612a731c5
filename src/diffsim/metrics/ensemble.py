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

``embed`` runs each member once per image; features are kept per member (``"<i>:<key>"``). The
registry assembles ensembles from member names (``create_metric("ensemble", members=..., overrides=...)``);
this module does not know the registry: it is handed a ``builder`` (name, settings) -> metric.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..errors import ConfigError
from ..features import Features
from ..images import ImagesLike
from ..settings import Settings
from .base import Metric

DEFAULT_MEMBERS = ("diffsim-s", "clip-i", "dinov2")
Builder = Callable[..., Metric]


@dataclasses.dataclass(frozen=True)
class EnsembleSettings(Settings):
    members: tuple[str, ...] = DEFAULT_MEMBERS  # registered metric names
    overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # per-member settings
    common: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # settings given to every member

    def normalise(self) -> None:
        self._set("members", tuple(self.members))
        self._set("overrides", {str(k): dict(v) for k, v in dict(self.overrides).items()})
        self._set("common", dict(self.common))

    def validate(self) -> None:
        if len(self.members) < 3:
            raise ConfigError(f"an ensemble needs at least three metrics; got {len(self.members)}")
        unknown = set(self.overrides) - set(self.members)
        if unknown:
            raise ConfigError(f"overrides for metrics that are not members: {', '.join(sorted(unknown))}")


class Ensemble(Metric):
    """Majority vote of member metrics (at least three)."""

    Settings = EnsembleSettings
    settings: EnsembleSettings
    default_name = "ensemble"
    votes = True

    def __init__(
        self,
        members: Sequence[Metric],
        settings: EnsembleSettings | None = None,
        *,
        builder: Builder | None = None,
        name: str | None = None,
    ) -> None:
        members = list(members)
        for m in members:
            if not isinstance(m, Metric):
                raise ConfigError(f"ensemble members must be Metric instances; got {type(m).__name__}")
        if settings is None:
            settings = EnsembleSettings.create("ensemble", members=tuple(m.name for m in members))
        super().__init__(settings, name=name)
        if len(members) != len(settings.members):
            raise ConfigError(f"{len(members)} member metrics for {len(settings.members)} member names")
        self.members = members
        self.builder = builder

    @classmethod
    def build(cls, builder: Builder, name: str | None = None, **settings: Any) -> Ensemble:
        """Members built by ``builder(member_name, **common, **overrides[member_name])``."""
        s = EnsembleSettings.create("ensemble", **settings)
        members = [builder(n, **{**s.common, **s.overrides.get(n, {})}) for n in s.members]
        return cls(members, s, builder=builder, name=name)

    def with_settings(self, **changes: Any) -> Ensemble:
        """Rebuild with other members or member settings (needs the registry's builder)."""
        if self.builder is None:
            raise ConfigError("this ensemble was built from metric instances; build a new Ensemble instead")
        new = self.settings.replace(self.name, **changes)
        return Ensemble.build(self.builder, self.name, **new.to_dict())

    @property
    def config(self) -> dict[str, Any]:
        return {"metric": self.name, "members": [m.config for m in self.members], "higher_is_better": True}

    def embed(self, images: ImagesLike, progress: bool = False, **options: Any) -> Features:
        parts = []
        for m in self.members:
            kw = {k: v for k, v in options.items() if k != "prompt" or m.accepts_prompt}
            parts.append(m.embed(images, progress=progress, **kw))
        tensors = {f"{i}:{k}": v for i, f in enumerate(parts) for k, v in f.tensors.items()}
        cfg = {"metric": self.name, "members": [dict(f.config) for f in parts]}
        return Features(tensors, cfg, parts[0].names)

    def member_features(self, feats: Features, i: int) -> Features:
        prefix = f"{i}:"
        members = feats.config.get("members")
        if not isinstance(members, list) or len(members) != len(self.members):
            raise ConfigError("features do not come from this ensemble; embed them with it")
        t = {k[len(prefix) :]: v for k, v in feats.tensors.items() if k.startswith(prefix)}
        return Features(t, members[i], feats.names)

    def member_scores(self, a: Features, b: Features) -> torch.Tensor:
        """Raw member scores (N, members), each in its own units and polarity."""
        return torch.stack(
            [
                m.compare(self.member_features(a, i), self.member_features(b, i)).float().cpu()
                for i, m in enumerate(self.members)
            ],
            dim=1,
        )

    def votes_of(self, ref: Features, a: Features, b: Features) -> torch.Tensor:
        """Per-member votes (N, members): +1 for ``a`` closer to ``ref``, -1 for ``b``, 0 for an exact tie."""
        return torch.stack(
            [
                m.decide(self.member_features(ref, i), self.member_features(a, i), self.member_features(b, i)).cpu()
                for i, m in enumerate(self.members)
            ],
            dim=1,
        ).to(torch.int8)

    def decide(self, ref: Features, a: Features, b: Features) -> torch.Tensor:
        """Majority decision per triplet: +1 (``a``), -1 (``b``) or 0 (split vote)."""
        return torch.sign(self.votes_of(ref, a, b).sum(dim=1)).to(torch.int8)

    def vote(self, ref: ImagesLike, a: ImagesLike, b: ImagesLike) -> dict[str, Any]:
        """2AFC on images: {'votes': {member: (N,)}, 'decision': (N,)} (+1 ``a``, -1 ``b``, 0 split)."""
        fr, fa, fb = self.embed(ref), self.embed(a), self.embed(b)
        v = self.votes_of(fr, fa, fb)
        names = [f"{i}:{m.name}" for i, m in enumerate(self.members)]
        return {"votes": {n: v[:, i] for i, n in enumerate(names)}, "decision": torch.sign(v.sum(1)).to(torch.int8)}

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        """Mean polarity-oriented member score (a convenience for ranking; not the vote)."""
        s = self.member_scores(a, b)
        sign = torch.tensor([1.0 if m.higher_is_better else -1.0 for m in self.members])
        return (s * sign).mean(dim=1)
