"""The --step convention (scheduler.timesteps[K] after set_timesteps(1000)) and timestep validation."""

from __future__ import annotations

import pytest
from diffusers import DDIMScheduler, PNDMScheduler

from diffsim.backbones.timesteps import check_timestep, step_table, step_to_timestep
from diffsim.errors import TimestepError

from .tiny_sd import SD15_SCHEDULER_CONFIG


@pytest.fixture(scope="module")
def pndm():
    return PNDMScheduler(**{k: v for k, v in SD15_SCHEDULER_CONFIG.items() if k != "clip_sample"})


@pytest.mark.parametrize(
    "step, t", [(900, 101), (750, 251), (600, 401), (500, 501), (100, 901), (2, 999), (1, 999), (1000, 1)]
)
def test_pndm_steps_follow_the_paper(pndm, step, t):
    assert step_to_timestep(pndm, step) == t


def test_pndm_table_is_the_scheduler_list(pndm):
    table = step_table(pndm)
    assert len(table) == 1001 and table[:4] == [1000, 999, 999, 998] and table[-1] == 1
    assert pndm.timesteps is None or len(pndm.timesteps) != 1001  # the model's scheduler is left untouched


def test_step_zero_is_out_of_range(pndm):
    with pytest.raises(TimestepError, match=r"T=1000 \(from --step 0.*0 <= T <= 999"):
        step_to_timestep(pndm, 0)
    with pytest.raises(TimestepError, match="step must be an integer in 0..1000"):
        step_to_timestep(pndm, 1001)
    with pytest.raises(TimestepError, match="step must be an integer"):
        step_to_timestep(pndm, -1)


def test_other_schedulers_use_their_own_list():
    ddim = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        clip_sample=False,
        set_alpha_to_one=False,
    )
    table = step_table(ddim)
    assert step_to_timestep(ddim, 500) == table[500]
    assert table[1:3] == [999, 998]


def test_timestep_validation(pndm):
    assert check_timestep(pndm, 0) == 0 and check_timestep(pndm, 999) == 999
    for bad in (1000, -1):
        with pytest.raises(TimestepError, match="out of range"):
            check_timestep(pndm, bad)
    with pytest.raises(TimestepError, match="integer"):
        check_timestep(pndm, 1.5)  # type: ignore[arg-type]
