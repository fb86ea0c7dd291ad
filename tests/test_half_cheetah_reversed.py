"""HalfCheetahReversed: reversed-motor subsets, physics of a reversed motor, OOD split, seeding."""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import metarobot.envs as me
from metarobot.envs.families.half_cheetah_reversed import (
    HalfCheetahReversed,
    HalfCheetahReversedIID,
    ReversedMotors,
)

FID = HalfCheetahReversed.ID
NU = 6


def n_reversed(task: me.Task) -> int:
    return list(task.scale("actuator_direction")).count(-1.0)


def test_train_tasks_reverse_random_subsets_of_at_most_two_motors():
    env = gym.make(FID)
    tasks = env.get_wrapper_attr("sample_tasks")(300, seed=3)
    counts = [n_reversed(t) for t in tasks]
    assert set(counts) == {0, 1, 2}
    for t in tasks:
        signs = t.scale("actuator_direction")
        assert len(signs) == NU and set(signs) <= {-1.0, 1.0}
    # Every motor is reversed in some task, and the subsets vary (not one fixed pattern).
    reversed_any = {i for t in tasks for i, s in enumerate(t.scale("actuator_direction")) if s < 0}
    assert reversed_any == set(range(NU))
    assert len({t.scale("actuator_direction") for t in tasks}) == 1 + 6 + 15
    # Counts follow Binomial(6, 1/4) conditioned on <= 2 (0.21, 0.43, 0.36), within 4 sigma.
    probs = ReversedMotors(probability=0.25, counts=(0, 1, 2)).count_probabilities(NU)
    for k, p in zip((0, 1, 2), probs, strict=True):
        freq = counts.count(k) / len(counts)
        assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / len(counts))


def test_test_split_is_out_of_distribution():
    train, test = me.task_split(FID)
    assert all(n_reversed(t) <= 2 for t in train)
    assert all(n_reversed(t) == 3 for t in test)
    train_patterns = {t.scale("actuator_direction") for t in train}
    assert not train_patterns & {t.scale("actuator_direction") for t in test}


def test_iid_variant_tests_on_the_training_distribution():
    train, test = me.task_split(HalfCheetahReversedIID.ID)
    assert all(n_reversed(t) <= 2 for t in [*train, *test])
    assert {n_reversed(t) for t in test} > {0} and not set(train) & set(test)
    # the same robot and training distribution as the OOD family, under its own id
    env = gym.make(HalfCheetahReversedIID.ID)
    assert env.get_wrapper_attr("get_task")().family == HalfCheetahReversedIID.ID


@pytest.mark.parametrize("motor", range(NU))
def test_reversed_motor_gives_opposite_joint_acceleration(motor):
    env = gym.make(FID)
    model, data = env.unwrapped.model, env.unwrapped.data
    dof = int(model.jnt_dofadr[model.actuator_trnid[motor, 0]])
    response, force = {}, {}
    for sign in (1.0, -1.0):
        signs = [1.0] * NU
        signs[motor] = sign
        task = me.Task.make(FID, {"body_mass": [1.0], "actuator_direction": signs})
        env.reset(seed=0, options={"task": task})
        qacc = []
        for ctrl in (0.0, 0.5):  # the motor's own effect: acceleration with minus without it
            data.ctrl[:] = 0.0
            data.ctrl[motor] = ctrl
            mujoco.mj_forward(model, data)
            qacc.append(data.qacc[dof])
        response[sign] = qacc[1] - qacc[0]
        force[sign] = data.qfrc_actuator[dof]
    # The joint torque is exactly negated; the acceleration flips sign (its size differs a
    # little because ground contacts respond nonlinearly).
    assert force[1.0] > 0
    assert force[-1.0] == pytest.approx(-force[1.0], rel=1e-12)
    assert response[1.0] > 0 > response[-1.0]


def test_same_action_moves_a_reversed_joint_the_other_way_in_an_episode():
    env = gym.make(FID)
    model, data = env.unwrapped.model, env.unwrapped.data
    action = np.zeros(NU, dtype=np.float32)
    action[3] = 1.0  # front thigh
    dof = int(model.jnt_dofadr[model.actuator_trnid[3, 0]])
    vel = {}
    for sign in (1.0, -1.0):
        signs = [1.0] * NU
        signs[3] = sign
        env.reset(seed=0, options={"task": me.Task.make(FID, {"actuator_direction": signs})})
        env.step(action)
        vel[sign] = data.qvel[dof]
    assert vel[1.0] > 0 > vel[-1.0]


def test_make_is_deterministic_under_a_seed():
    def rollout(seed: int) -> tuple[list[me.Task], np.ndarray]:
        env = gym.make(FID)
        tasks = env.get_wrapper_attr("sample_tasks")(3, seed=seed, split="test")
        env.reset(seed=seed, options={"task": tasks[0]})
        rng = np.random.default_rng(seed)
        obs = [env.step(rng.uniform(-1, 1, NU).astype(np.float32))[0] for _ in range(20)]
        return tasks, np.array(obs)

    tasks_a, obs_a = rollout(5)
    tasks_b, obs_b = rollout(5)
    assert tasks_a == tasks_b
    np.testing.assert_array_equal(obs_a, obs_b)
    assert rollout(6)[0] != tasks_a
    assert me.Task.from_json(tasks_a[0].to_json()) == tasks_a[0]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"probability": 0.0}, r"probability must be a number in \(0, 1\)"),
        ({"probability": 1.5}, r"probability must be a number in \(0, 1\)"),
        ({"counts": ()}, r"counts must be a non-empty tuple of integers >= 0"),
        ({"counts": (-1,)}, r"counts must be a non-empty tuple of integers >= 0"),
        ({"values": (0.5, 1.0)}, r"values must be \(-1.0, 1.0\)"),
    ],
)
def test_bad_spec_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReversedMotors(**kwargs)


def test_count_larger_than_the_model_is_refused():
    spec = ReversedMotors(counts=(7,))
    with pytest.raises(ValueError, match=r"counts must lie in \[0, 6\]"):
        spec.sample(np.random.default_rng(0), NU)
