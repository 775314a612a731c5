"""Ensemble voting tables on real (tiny, exact) metrics: per-channel mean distances whose votes we control."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffsim import ConfigError, Features, Metric, Settings, create_metric
from diffsim.images import as_list, to_unit_tensor
from diffsim.metrics.ensemble import Ensemble


@dataclasses.dataclass(frozen=True)
class ChannelSettings(Settings):
    channel: int = 0
    distance: bool = False

    @property
    def higher_is_better(self) -> bool:
        return not self.distance


class ChannelMean(Metric):
    """|mean(channel c of a) - mean(channel c of b)| (a distance), or its negative (a similarity)."""

    Settings = ChannelSettings

    def __init__(self, channel: int, distance: bool) -> None:
        super().__init__(ChannelSettings(channel, distance), name=f"chan{channel}")
        self.channel = channel

    def embed(self, images, **kw) -> Features:
        x = torch.stack([to_unit_tensor(im, 4) for im in as_list(images)])
        return Features({"m": x[:, self.channel].mean(dim=(1, 2))}, {"metric": self.name})

    def compare(self, a: Features, b: Features) -> torch.Tensor:
        d = (a.tensors["m"] - b.tensors["m"]).abs()
        return -d if self.higher_is_better else d


def img(r: float, g: float, b: float) -> torch.Tensor:
    return torch.tensor([r, g, b]).view(3, 1, 1).expand(3, 4, 4).clone()


REF = img(0.5, 0.5, 0.5)


@pytest.mark.parametrize("distance", [(False, False, False), (True, True, True), (True, False, True)])
@pytest.mark.parametrize(
    "a,b,votes,decision",
    [
        # channel means of candidates a and b; a channel votes for the candidate closer to 0.5
        ((0.5, 0.5, 0.9), (0.9, 0.9, 0.5), [1, 1, -1], 1),
        ((0.9, 0.5, 0.9), (0.5, 0.9, 0.5), [-1, 1, -1], -1),
        ((0.5, 0.6, 0.6), (0.6, 0.6, 0.9), [1, 0, 1], 1),  # one member ties and abstains
        ((0.5, 0.6, 0.9), (0.9, 0.6, 0.5), [1, 0, -1], 0),  # tie + split: undecided
    ],
)
def test_voting_table(distance, a, b, votes, decision):
    ens = Ensemble([ChannelMean(c, d) for c, d in enumerate(distance)])
    fr, fa, fb = ens.embed(REF), ens.embed(img(*a)), ens.embed(img(*b))
    assert ens.votes_of(fr, fa, fb)[0].tolist() == votes
    assert int(ens.decide(fr, fa, fb)[0]) == decision
    out = ens.vote(REF, img(*a), img(*b))
    assert int(out["decision"][0]) == decision and len(out["votes"]) == 3


def test_batched_decide_and_single_metric_decide():
    ens = Ensemble([ChannelMean(c, c == 1) for c in range(3)])
    refs = torch.stack([REF, REF])
    a = torch.stack([img(0.5, 0.5, 0.9), img(0.9, 0.5, 0.9)])
    b = torch.stack([img(0.9, 0.9, 0.5), img(0.5, 0.9, 0.5)])
    fr, fa, fb = ens.embed(refs), ens.embed(a), ens.embed(b)
    assert ens.decide(fr, fa, fb).tolist() == [1, -1]
    assert ens.decide(fr[0], fa, fb).tolist() == [1, -1]  # one reference broadcasts
    m = ChannelMean(0, distance=True)
    assert m.decide(m.embed(refs), m.embed(a), m.embed(b)).tolist() == [1, -1]


def test_compare_orients_polarity():
    ens = Ensemble([ChannelMean(c, c == 0) for c in range(3)])
    f = ens.embed([REF, img(0.7, 0.7, 0.7)])
    s = ens.compare(f[0], f)
    assert s[0] == 0 and s[1] < 0  # identical is best, a distance member counts negatively


def test_errors():
    with pytest.raises(ConfigError, match="at least three"):
        Ensemble([ChannelMean(0, True), ChannelMean(1, True)])
    ens = Ensemble([ChannelMean(c, True) for c in range(3)])
    plain = ChannelMean(0, True).embed(REF)
    with pytest.raises(ConfigError, match="not come from this ensemble"):
        ens.compare(plain, plain)
    with pytest.raises(ConfigError, match="not members"):
        create_metric("ensemble", members=["clip-i", "dinov2", "lpips"], overrides={"gram": {}})
