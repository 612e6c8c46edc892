import math

import numpy as np
import pytest

from model.lrfind import smooth, suggest, sweep_lrs
from model.schedules import Schedule
from toolchain.config import load_config


def sched(*overrides, total=1000, mom=0.9):
    cfg = load_config(None, list(overrides))
    return Schedule(cfg.train.lr_schedule, total, base_momentum=mom)


def test_constant():
    s = sched("train.lr_schedule.policy=constant", "train.lr_schedule.lr=0.01")
    assert {s.lr(t) for t in (0, 10, 999)} == {0.01} and s.momentum(5) is None


def test_time_decay_is_the_tutorials_formula():
    s = sched("train.lr_schedule.policy=time_decay", "train.lr_schedule.lr=0.01",
              "train.lr_schedule.decay=0.001")
    for t in (0, 1, 100, 999):
        assert s.lr(t) == pytest.approx(0.01 / (1 + 0.001 * t))


def test_onecycle_shape():
    s = sched("train.lr_schedule.policy=onecycle", "train.lr_schedule.lr=0.01",
              "train.lr_schedule.pct_start=0.3", "train.lr_schedule.div_factor=25",
              "train.lr_schedule.final_div_factor=1000",
              "train.lr_schedule.momentum_range=[0.85, 0.95]")
    lrs = np.array([s.lr(t) for t in range(1000)])
    moms = np.array([s.momentum(t) for t in range(1000)])
    peak = int(np.argmax(lrs))
    assert peak == 300
    assert lrs[0] == pytest.approx(0.01 / 25)
    assert lrs[peak] == pytest.approx(0.01)
    assert lrs[-1] == pytest.approx(0.01 / 25 / 1000, rel=1e-6)
    assert np.all(np.diff(lrs[:peak + 1]) > 0) and np.all(np.diff(lrs[peak:]) < 0)
    # momentum moves inversely: high -> low at the lr peak -> high
    assert moms[0] == pytest.approx(0.95) and moms[peak] == pytest.approx(0.85)
    assert moms[-1] == pytest.approx(0.95)
    assert np.corrcoef(lrs, moms)[0, 1] < -0.99


def test_onecycle_without_momentum_cycling():
    s = sched("train.lr_schedule.momentum_range=null")
    assert s.momentum(10) is None


def test_lr_sweep_and_suggestion():
    lrs = sweep_lrs(1e-6, 1.0, 300)
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log(lrs)), math.log(1e6) / 299)
    # synthetic loss curve: flat, falls between 1e-4 and 1e-2, explodes after 1e-1
    x = np.log10(lrs)
    loss = 3 - 2 / (1 + np.exp(-(x + 3) * 4)) + np.where(x > -1, (x + 1) ** 2 * 20, 0)
    sm = smooth(loss, 0.9)
    suggestion, steepest = suggest(lrs, sm)
    assert 1e-3 < suggestion < 3e-2
    assert 3e-4 < steepest < 3e-3
