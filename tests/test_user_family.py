"""A robot the project does not ship goes through the whole loop (experiments/examples)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import metarobot.envs as me

EXAMPLE = Path(__file__).resolve().parents[1] / "experiments" / "examples" / "user_robot_family.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("user_robot_family", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_registering_makes_it_a_family(example):
    assert example.ENV_ID in gym.registry
    me.check_family(example.ENV_ID)
    train, test = me.task_split(example.ENV_ID)
    assert (len(train), len(test)) == (40, 10)


def test_batched_simulator_runs_it_on_the_kernel_path(example):
    venv = me.make_batched(example.ENV_ID, me.task_split(example.ENV_ID)[0][:3], nthread=1)
    assert venv.kernel is not None
    assert venv.max_episode_steps == 100
    obs, _ = venv.reset(seed=0)
    assert np.all(np.isfinite(obs))
    venv.close()


def test_the_whole_loop_runs_at_a_tiny_budget(example):
    out = example.main(iterations=2, seed=0)
    assert set(out) == {"meta_policy", "adapted"}
    assert all(math.isfinite(v) for v in out.values())


def test_batched_simulator_adds_a_change_schedule_the_entry_point_does_not_know(example):
    tasks = me.task_split(example.ENV_ID)[1][:2]
    venv = me.make_batched(example.ENV_ID, tasks, nthread=1, change_step=5, change_to="train")
    try:
        venv.reset(seed=0)
        act = np.zeros((2, venv.single_action_space.shape[0]))
        flags = [venv.step(act)[4]["task_changed"] for _ in range(6)]
    finally:
        venv.close()
    assert [bool(f.all()) for f in flags] == [False] * 5 + [True]
