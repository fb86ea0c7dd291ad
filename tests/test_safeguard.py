"""adapt's safeguard: an adaptation is kept only if it does not lower the validation return."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarobot import adapt_many, make_policy
from metarobot.adaptation import DEFAULT_VALIDATION_EPISODES, VALIDATION_SEED_OFFSET
from metarobot.envs import task_split
from metarobot.rma import train_rma
from metarobot.rollout import episode_returns

PENDULUM = "metarobot/InvertedPendulumRandParams-v0"
FAST = {"device": "cpu", "nthread": 1}


@pytest.fixture(scope="module")
def tasks():
    return task_split(PENDULUM)[1][:4]


@pytest.fixture(scope="module")
def mlp():
    return make_policy(PENDULUM, hidden=(8, 8), seed=3)


@pytest.fixture(scope="module")
def rma():
    return train_rma(
        PENDULUM,
        teacher_steps=800,
        student_steps=800,
        seed=1,
        n_envs=4,
        student_envs=4,
        nthread=1,
        hidden=(8, 8),
        z_dim=2,
        history=3,
        phi_hidden=(16,),
        student_epochs=2,
    )


def validation_episode_returns(policies, tasks, seed, episodes):
    seeds = [seed + i + VALIDATION_SEED_OFFSET for i in range(len(tasks))]
    rets, _, _, _ = episode_returns(
        policies, PENDULUM, tasks, episodes=episodes, seeds=seeds, nthread=1
    )
    return rets


def validation_returns(policies, tasks, seed, episodes):
    return validation_episode_returns(policies, tasks, seed, episodes).mean(1)


def same_params(a, b):
    return all(torch.equal(a.params[k], b.params[k]) for k in a.params)


@pytest.mark.parametrize("lr", [0.05, 50.0])
def test_returned_mlp_policy_is_never_worse_on_the_validation_episodes(mlp, tasks, lr):
    out = adapt_many(mlp, PENDULUM, tasks, episodes=2, lr=lr, seed=7, **FAST)
    v = DEFAULT_VALIDATION_EPISODES
    assert all(p.meta["adapted"]["validation_episodes"] == v for p in out)
    got = validation_returns(out, tasks, 7, v)
    ref = validation_returns([mlp] * len(tasks), tasks, 7, v)
    assert np.all(got >= ref)
    for p, r in zip(out, ref, strict=True):
        info = p.meta["adapted"]
        assert info["validation_return_original"] == pytest.approx(r)
        if not info["accepted"]:
            assert same_params(p, mlp)


def test_a_destructive_update_is_rejected(mlp, tasks):
    raw = adapt_many(mlp, PENDULUM, tasks, episodes=2, lr=1e4, seed=7, safe=False, **FAST)
    kept = adapt_many(mlp, PENDULUM, tasks, episodes=2, lr=1e4, seed=7, **FAST)
    v = DEFAULT_VALIDATION_EPISODES
    worse = validation_returns(raw, tasks, 7, v) < validation_returns([mlp] * 4, tasks, 7, v)
    assert worse.any()  # the huge step does hurt somewhere ...
    for i in np.flatnonzero(worse):  # ... and there the original comes back
        assert not kept[i].meta["adapted"]["accepted"]
        assert same_params(kept[i], mlp)


def test_unsafe_adaptation_returns_the_update(mlp, tasks):
    out = adapt_many(mlp, PENDULUM, tasks[:1], episodes=1, lr=0.05, seed=1, safe=False, **FAST)
    assert not same_params(out[0], mlp)
    assert "accepted" not in out[0].meta["adapted"]


def test_validation_episodes_can_be_set(mlp, tasks):
    out = adapt_many(mlp, PENDULUM, tasks[:1], episodes=1, seed=1, validation_episodes=3, **FAST)
    assert out[0].meta["adapted"]["validation_episodes"] == 3
    with pytest.raises(ValueError, match="validation_episodes"):
        adapt_many(mlp, PENDULUM, tasks[:1], episodes=1, validation_episodes=0, **FAST)
    with pytest.raises(ValueError, match="validation_episodes must be >= 2 when margin > 0"):
        adapt_many(mlp, PENDULUM, tasks[:1], episodes=1, validation_episodes=1, **FAST)
    one = adapt_many(
        mlp, PENDULUM, tasks[:1], episodes=1, seed=1, validation_episodes=1, margin=0, **FAST
    )
    assert one[0].meta["adapted"]["validation_margin"] == 0


@pytest.mark.parametrize("margin", [-1.0, float("nan"), float("inf"), "1", True])
def test_bad_margin_is_refused(mlp, tasks, margin):
    with pytest.raises(ValueError, match="margin must be a finite number >= 0"):
        adapt_many(mlp, PENDULUM, tasks[:1], episodes=1, margin=margin, **FAST)


@pytest.mark.parametrize("margin", [0.0, 1.0, 3.0])
def test_an_update_is_kept_exactly_when_its_paired_gain_clears_the_margin(mlp, tasks, margin):
    # The rule: keep iff mean(d) - margin * std(d) / sqrt(V) >= 0 over the V paired episodes.
    v = 5
    raw = adapt_many(mlp, PENDULUM, tasks, episodes=2, lr=0.01, seed=4, safe=False, **FAST)
    kept = adapt_many(
        mlp,
        PENDULUM,
        tasks,
        episodes=2,
        lr=0.01,
        seed=4,
        validation_episodes=v,
        margin=margin,
        **FAST,
    )
    n = len(tasks)
    # both policies run task i's validation episodes from the same start states
    rets = np.concatenate(
        [
            validation_episode_returns([mlp] * n, tasks, 4, v),
            validation_episode_returns(raw, tasks, 4, v),
        ]
    )
    gain = rets[n:] - rets[:n]
    lower = gain.mean(1) - margin * gain.std(1, ddof=1) / np.sqrt(v)
    if margin == 0:  # the case checks both verdicts
        assert (lower >= 0).any() and (lower < 0).any()
    for i, p in enumerate(kept):
        info = p.meta["adapted"]
        assert info["validation_gain_lower_bound"] == pytest.approx(lower[i])
        assert info["accepted"] == bool(lower[i] >= 0)
        assert same_params(p, raw[i] if info["accepted"] else mlp)


def test_context_policy_adaptation_is_guarded_too(rma, tasks):
    out = adapt_many(rma, PENDULUM, tasks, episodes=1, seed=11, **FAST)
    v = DEFAULT_VALIDATION_EPISODES
    got = validation_returns(out, tasks, 11, v)
    ref = validation_returns([rma] * len(tasks), tasks, 11, v)
    assert np.all(got >= ref)
    for p in out:
        assert p.meta["adapted"]["update"] == "fixed latent"
        assert (p.z_fixed is not None) == p.meta["adapted"]["accepted"]
