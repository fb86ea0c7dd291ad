"""Diverging simulations are contained: truncated, flagged, never a non-finite observation.

A motor gear of 10^6 × nominal on HalfCheetah with actions of magnitude >= 0.5 makes MuJoCo
raise its bad-QACC warning (and reset the data) within the first env step, for every initial
state tried; gravity × 10^6 only does so from some initial states, so it is not used here.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import metarobot.envs as me
from metarobot.envs import RandomizedDynamics, Task

FID = "metarobot/HalfCheetahRandParams-v0"
HUGE_GEAR = {"actuator_gear": (1e6,)}


def strong_actions(n_steps, shape, seed=0):
    rng = np.random.default_rng(seed)
    mag = rng.uniform(0.5, 1.0, size=(n_steps, *shape))
    return (mag * rng.choice([-1.0, 1.0], size=mag.shape)).astype(np.float32)


def assert_single_diverges(env, actions):
    obs0, _ = env.reset(seed=0)
    o, r, terminated, truncated, info = env.step(actions[0])
    assert info["diverged"] is True
    assert truncated is True
    assert terminated is False
    assert r == 0.0
    assert np.all(np.isfinite(o))
    np.testing.assert_array_equal(o, obs0)  # the last finite observation


def test_generic_wrapper_flags_divergence():
    env = RandomizedDynamics(gym.make("HalfCheetah-v5").unwrapped, actuator_gear=(1e6, 1e6))
    task = env.sample_tasks(1, seed=0)[0]
    assert task.scale("actuator_gear") == (1e6,)
    env.set_task(task)
    acts = strong_actions(1, env.action_space.shape)
    assert_single_diverges(env, acts)


@pytest.mark.parametrize("seed", range(4))
def test_family_env_flags_divergence_through_the_wrapper_stack(seed):
    env = gym.make(FID)
    obs0, _ = env.reset(seed=seed, options={"task": Task.make(FID, HUGE_GEAR)})
    acts = strong_actions(1, env.action_space.shape, seed=seed)
    o, r, terminated, truncated, info = env.step(acts[0])
    assert info["diverged"] is True
    assert (terminated, truncated, r) == (False, True, 0.0)
    assert np.all(np.isfinite(o))
    np.testing.assert_array_equal(o, obs0)
    # The env recovers: a nominal task runs normally after the reset.
    env.reset(seed=seed, options={"task": me.task_split(FID)[0][0]})
    for a in strong_actions(20, env.action_space.shape, seed=seed):
        o, r, terminated, truncated, info = env.step(a)
        assert info["diverged"] is False
        assert not truncated
        assert np.all(np.isfinite(o))


def test_nominal_run_is_not_flagged():
    env = gym.make(FID)
    env.reset(seed=0, options={"task": me.task_split(FID)[0][0]})
    for a in strong_actions(30, env.action_space.shape):
        *_, truncated, info = env.step(a)
        assert info["diverged"] is False
        assert truncated is False


@pytest.mark.parametrize("env_id", [FID, "HalfCheetah-v5"])
def test_batched_flags_divergence(env_id):
    nominal = me.task_split(FID)[0][0] if env_id == FID else Task.make(env_id)
    huge = Task.make(env_id, HUGE_GEAR)
    venv = me.make_batched(env_id, [nominal, huge, nominal, huge], nthread=1)
    obs0, _ = venv.reset(seed=0)
    acts = strong_actions(3, venv.action_space.shape)
    obs, rew, term, trunc, infos = venv.step(acts[0])
    np.testing.assert_array_equal(infos["diverged"], [False, True, False, True])
    np.testing.assert_array_equal(trunc, [False, True, False, True])
    np.testing.assert_array_equal(term, [False, False, False, False])
    assert np.all(np.isfinite(obs))
    assert np.all(np.isfinite(rew))
    assert rew[1] == 0.0
    assert rew[3] == 0.0
    np.testing.assert_array_equal(obs[[1, 3]], obs0[[1, 3]])  # the last finite observation
    # Next step: the diverged worlds are reset (next_step autoreset), not flagged.
    obs, rew, term, trunc, infos = venv.step(acts[1])
    np.testing.assert_array_equal(infos["diverged"], [False, False, False, False])
    assert not trunc.any()
    assert np.all(np.isfinite(obs))
    assert rew[1] == 0.0
    # And then they diverge again (same task), still contained.
    obs, rew, term, trunc, infos = venv.step(acts[2])
    np.testing.assert_array_equal(infos["diverged"], [False, True, False, True])
    assert np.all(np.isfinite(obs))
    venv.close()


def test_batched_and_single_agree_on_divergence():
    huge = Task.make(FID, HUGE_GEAR)
    n = 3
    venv = me.make_batched(FID, [huge] * n, nthread=1)
    venv.reset(seed=10)
    acts = strong_actions(1, venv.action_space.shape, seed=3)
    _, _, _, trunc, infos = venv.step(acts[0])
    for i in range(n):
        env = gym.make(FID)
        env.reset(seed=10 + i, options={"task": huge})
        *_, s_trunc, s_info = env.step(acts[0][i])
        assert s_info["diverged"] == bool(infos["diverged"][i]) is True
        assert s_trunc == bool(trunc[i])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_batched_rejects_non_finite_actions(bad):
    venv = me.make_batched(FID, me.task_split(FID)[0][:2], nthread=1)
    venv.reset(seed=0)
    acts = np.zeros(venv.action_space.shape, dtype=np.float32)
    acts[1, 2] = bad
    with pytest.raises(ValueError, match="finite"):
        venv.step(acts)
    # The env is still usable.
    obs, *_ = venv.step(np.zeros(venv.action_space.shape, dtype=np.float32))
    assert np.all(np.isfinite(obs))
