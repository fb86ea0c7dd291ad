"""Every registered family: Gymnasium API, tasks, determinism, physics edits, documentation."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metarobot.envs as me

FAMILY_IDS = me.FAMILY_IDS
CHEAP = "metarobot/InvertedPendulumRandParams-v0"

#: Model fields a task may write, plus fields MuJoCo derives from them in mj_setConst.
WRITTEN = (
    "body_mass",
    "body_inertia",
    "body_ipos",
    "body_iquat",
    "geom_friction",
    "dof_damping",
    "actuator_gear",
    "actuator_gainprm",
    "actuator_biasprm",
)
DERIVED = ("body_subtreemass", "body_invweight0", "dof_invweight0", "actuator_acc0")

PEARL = {
    "body_mass": (1.5**-3, 1.5**3, "nbody"),
    "dof_damping": (1.3**-3, 1.3**3, "nv"),
    "geom_friction": (1.5**-3, 1.5**3, "ngeom"),
}


def physical(train_motors, nu):
    """What a <Robot>Physical docstring promises (train/test column)."""
    return {
        "scales": {
            "payload_mass": (0.0, 0.5, 1),
            "payload_com": (-0.15, 0.15, 3),
            "geom_friction": (0.2, 2.0, 1),
            "actuator_gear": (0.3, 1.2, nu),
        },
        # A failed motor in about half of the tasks, one of the training motors.
        "disabled": {s: {(), *((i,) for i in train_motors)} for s in ("train", "test")},
    }


#: What each family's docstring promises: scale ranges and element counts, disabled actuator
#: groups per split, goal ranges.
EXPECTED: dict[str, dict] = {
    "metarobot/HalfCheetahRandParams-v0": {"scales": PEARL},
    "metarobot/HalfCheetahCrippled-v0": {
        "scales": {"body_mass": (0.8, 1.25, 1)},
        "disabled": {"train": {(0,), (1,), (2,), (3,)}, "test": {(4,), (5,)}},
    },
    "metarobot/HalfCheetahVel-v0": {"goal": {"velocity": (0.0, 2.0)}},
    "metarobot/HalfCheetahReversed-v0": {
        "scales": {"body_mass": (0.8, 1.25, 1), "actuator_direction": ({-1.0, 1.0}, "nu")}
    },
    "metarobot/HalfCheetahReversedIID-v0": {
        "scales": {"body_mass": (0.8, 1.25, 1), "actuator_direction": ({-1.0, 1.0}, "nu")}
    },
    "metarobot/HalfCheetahDir-v0": {"goal": {"direction": {-1.0, 1.0}}},
    "metarobot/HopperRandParams-v0": {"scales": PEARL},
    "metarobot/Walker2dRandParams-v0": {"scales": PEARL},
    "metarobot/AntRandParams-v0": {"scales": PEARL},
    "metarobot/AntCrippled-v0": {
        "scales": {"body_mass": (0.8, 1.25, 1)},
        "disabled": {"train": {(0, 1), (2, 3), (4, 5)}, "test": {(6, 7)}},
    },
    "metarobot/AntDir-v0": {"goal": {"angle": (0.0, 2.0 * math.pi)}},
    "metarobot/AntPhysical-v0": physical(range(6), 8),
    "metarobot/HalfCheetahPhysical-v0": physical(range(4), 6),
    "metarobot/Walker2dPhysical-v0": physical(range(3), 6),
    "metarobot/InvertedPendulumRandParams-v0": {
        "scales": {
            "body_mass": (0.25, 4.0, "nbody"),
            "dof_damping": (1.3**-3, 1.3**3, "nv"),
            "actuator_gear": (0.5, 2.0, 1),
            "actuator_direction": ({-1.0, 1.0}, 1),
        }
    },
    "metarobot/InvertedDoublePendulumRandParams-v0": {
        "scales": {
            "body_mass": (0.5, 2.0, "nbody"),
            "dof_damping": (1.3**-3, 1.3**3, "nv"),
            "actuator_gear": (0.5, 2.0, 1),
            "actuator_direction": ({-1.0, 1.0}, 1),
        }
    },
    "metarobot/ReacherRandParams-v0": {
        "scales": {
            "body_mass": (1 / 3, 3.0, "nbody"),
            "dof_damping": (1 / 3, 3.0, "nv"),
            "actuator_gear": (1 / 3, 3.0, "nu"),
        }
    },
}

CHECK_ENV_WARNINGS = [
    "ignore:.*infinity.*",
    "ignore:.*symmetric and normalized space.*",
    "ignore:.*different from the unwrapped version.*",
]


def snapshot(model) -> dict[str, np.ndarray]:
    snap = {f: getattr(model, f).copy() for f in (*WRITTEN, *DERIVED)}
    snap["gravity"] = model.opt.gravity.copy()
    snap["meaninertia"] = np.array([model.stat.meaninertia])
    return snap


def assert_same_snapshot(a, b) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def two_tasks(fid):
    train, _ = me.task_split(fid)
    return train[0], train[1]


def fixed_actions(env, n, seed=0):
    space = env.action_space
    rng = np.random.default_rng(seed)
    return rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(np.float32)


def run(env, actions, seed=None, task=None):
    """Reset (optionally with seed/task), step until done; return obs, rewards, flags."""
    options = {"task": task} if task is not None else None
    obs, _ = env.reset(seed=seed, options=options)
    return steps(env, actions, first=obs)


def steps(env, actions, first=None):
    obs_l = [] if first is None else [np.array(first)]
    rew, flags = [], []
    for a in actions:
        o, r, te, tr, _ = env.step(a)
        obs_l.append(np.array(o))
        rew.append(float(r))
        flags.append((bool(te), bool(tr)))
        if te or tr:
            break
    return np.array(obs_l), np.array(rew), flags


# ---------------------------------------------------------------------------- API
@pytest.mark.parametrize("fid", FAMILY_IDS)
@pytest.mark.filterwarnings(*CHECK_ENV_WARNINGS)
def test_check_env_unwrapped(fid):
    check_env(gym.make(fid).unwrapped, skip_render_check=True)


@pytest.mark.parametrize("fid", FAMILY_IDS)
@pytest.mark.filterwarnings(*CHECK_ENV_WARNINGS)
def test_check_env_full_stack(fid):
    # gym.make(id): TimeLimit > OrderEnforcing > PassiveEnvChecker > family wrapper > robot.
    env = gym.make(fid)
    assert isinstance(me.find_randomized(env), me.RandomizedDynamics)
    check_env(env, skip_render_check=True)
    check_env(me.find_randomized(gym.make(fid)), skip_render_check=True)


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_registration_and_horizon(fid):
    spec = gym.spec(fid)
    env = gym.make(fid)
    fam = type(me.find_randomized(env))
    assert fid == fam.ID
    assert spec.max_episode_steps == fam.HORIZON
    assert (50 if "Reacher" in fid else 200) == fam.HORIZON
    assert me.find_randomized(env).family == fid


def test_time_limit_truncates_at_horizon():
    env = gym.make("metarobot/ReacherRandParams-v0")
    env.reset(seed=0)
    for k in range(1, 51):
        _, _, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
        assert not terminated
        assert truncated == (k == 50)
        assert info["diverged"] is False


# ---------------------------------------------------------------------------- tasks
@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_sample_tasks_deterministic_through_wrappers(fid):
    env = gym.make(fid)
    sample = env.get_wrapper_attr("sample_tasks")
    a = sample(6, seed=3)
    b = sample(6, seed=3)
    c = gym.make(fid).get_wrapper_attr("sample_tasks")(6, seed=3)
    assert a == b == c
    assert len(a) == 6
    assert all(isinstance(t, me.Task) and t.family == fid for t in a)
    assert sample(6, seed=4) != a
    assert len(set(sample(16, seed=0))) > 1
    for bad_n in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n must"):
            sample(bad_n, seed=0)
    with pytest.raises(ValueError, match="split"):
        sample(2, seed=0, split="validation")


@pytest.mark.parametrize("fid", FAMILY_IDS)
@pytest.mark.parametrize("split", ["train", "test"])
def test_sampled_tasks_follow_documented_distribution(fid, split):
    env = gym.make(fid)
    model = env.unwrapped.model
    exp = EXPECTED[fid]
    tasks = env.get_wrapper_attr("sample_tasks")(30, seed=11, split=split)
    for t in tasks:
        scales = dict(t.scales)
        assert set(scales) == set(exp.get("scales", {}))
        for name, (*rng, n) in exp.get("scales", {}).items():
            n = getattr(model, n) if isinstance(n, str) else n
            vals = np.array(scales[name])
            assert vals.shape == (n,), name
            if isinstance(rng[0], set):  # a finite choice
                assert set(vals.tolist()) <= rng[0], name
            else:
                lo, hi = rng
                assert np.all(vals >= lo * (1 - 1e-12)), name
                assert np.all(vals <= hi * (1 + 1e-12)), name
        groups = exp.get("disabled", {}).get(split, {()})
        assert t.disabled_actuators in groups
        goal = dict(t.goal)
        assert set(goal) == set(exp.get("goal", {}))
        for name, rng in exp.get("goal", {}).items():
            (v,) = goal[name]
            if isinstance(rng, set):
                assert v in rng
            else:
                assert rng[0] <= v <= rng[1]
    if "disabled" in exp:  # every documented group shows up
        assert {t.disabled_actuators for t in tasks} == exp["disabled"][split]
    for name, (*rng, _) in exp.get("scales", {}).items():
        if isinstance(rng[0], set):  # every documented value shows up
            assert {v for t in tasks for v in t.scale(name)} == rng[0]


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_set_task_get_task_and_reset_info(fid):
    env = gym.make(fid)
    a, b = two_tasks(fid)
    env.get_wrapper_attr("set_task")(a)
    assert env.get_wrapper_attr("get_task")() == a
    _, info = env.reset(seed=0)
    assert info["task"] == a
    assert env.get_wrapper_attr("get_task")() == a
    _, info = env.reset(seed=0, options={"task": b})
    assert info["task"] == b
    assert env.get_wrapper_attr("get_task")() == b
    assert env.get_wrapper_attr("active_task") == b
    # Without a new task the task stays.
    _, info = env.reset()
    assert info["task"] == b
    # A round-tripped task is the same task.
    _, info = env.reset(options={"task": me.Task.from_json(a.to_json())})
    assert info["task"] == a


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_task_changes_only_at_reset(fid):
    a, b = two_tasks(fid)
    e1, e2 = gym.make(fid), gym.make(fid)
    acts = fixed_actions(e1, 15, seed=1)
    e1.reset(seed=1, options={"task": a})
    e2.reset(seed=1, options={"task": a})
    model = e2.unwrapped.model
    before = snapshot(model)
    r1 = steps(e1, acts[:5])
    r2 = steps(e2, acts[:5])
    e2.get_wrapper_attr("set_task")(b)
    assert e2.get_wrapper_attr("get_task")() == b
    assert e2.get_wrapper_attr("active_task") == a
    assert_same_snapshot(snapshot(model), before)
    if not any(te or tr for te, tr in r1[2]):
        # The rest of the episode runs with task a: same as the env never given b.
        r1 = steps(e1, acts[5:])
        r2 = steps(e2, acts[5:])
        np.testing.assert_array_equal(r1[0], r2[0])
        np.testing.assert_array_equal(r1[1], r2[1])
        assert r1[2] == r2[2]
        assert_same_snapshot(snapshot(model), before)
    # At reset b takes effect: same as a fresh env reset with b.
    _, info = e2.reset(seed=2)
    assert info["task"] == b
    e3 = gym.make(fid)
    e3.reset(options={"task": b})
    assert_same_snapshot(snapshot(model), snapshot(e3.unwrapped.model))
    with_b = run(e2, acts, seed=2)
    np.testing.assert_array_equal(with_b[1], run(e3, acts, seed=2)[1])
    with_a = run(e1, acts, seed=2, task=a)
    n = min(len(with_a[1]), len(with_b[1]))
    assert not (
        np.array_equal(with_a[0][:n], with_b[0][:n])
        and np.array_equal(with_a[1][:n], with_b[1][:n])
    ), "tasks a and b gave the same rollout"


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_task_of_another_family_is_refused(fid):
    env = gym.make(fid)
    own = two_tasks(fid)[0]
    other_id = next(f for f in FAMILY_IDS if f != fid)
    for foreign in (dataclasses.replace(own, family=other_id), me.task_split(other_id)[0][0]):
        with pytest.raises(ValueError, match="family"):
            env.get_wrapper_attr("set_task")(foreign)
        with pytest.raises(ValueError, match="family"):
            env.reset(options={"task": foreign})
    # Nothing refused became pending.
    assert env.get_wrapper_attr("get_task")() == env.get_wrapper_attr("nominal_task")()
    with pytest.raises(ValueError):
        env.get_wrapper_attr("set_task")("not a task")


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_task_that_does_not_fit_the_model_is_refused(fid):
    env = gym.make(fid)
    nu = env.unwrapped.model.nu
    bad_len = me.Task.make(fid, {"dof_damping": [1.0] * (env.unwrapped.model.nv + 1)})
    with pytest.raises(ValueError, match="dof_damping"):
        env.get_wrapper_attr("set_task")(bad_len)
    bad_idx = me.Task.make(fid, disabled_actuators=[nu])
    with pytest.raises(ValueError, match="disabled_actuators"):
        env.get_wrapper_attr("set_task")(bad_idx)


# ---------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_same_seed_and_task_give_identical_rollouts(fid):
    a, b = two_tasks(fid)
    e1 = gym.make(fid)
    acts = fixed_actions(e1, 30, seed=2)
    r1 = run(e1, acts, seed=3, task=a)
    # A second env that first ran another task and another seed.
    e2 = gym.make(fid)
    run(e2, fixed_actions(e2, 10, seed=9), seed=99, task=b)
    r2 = run(e2, acts, seed=3, task=a)
    np.testing.assert_array_equal(r1[0], r2[0])
    np.testing.assert_array_equal(r1[1], r2[1])
    assert r1[2] == r2[2]
    assert len(r1[1]) >= 1
    # And the same env run again.
    r3 = run(e1, acts, seed=3, task=a)
    np.testing.assert_array_equal(r1[0], r3[0])
    np.testing.assert_array_equal(r1[1], r3[1])
    # A different seed gives a different start.
    obs_other, _ = e1.reset(seed=4, options={"task": a})
    assert not np.array_equal(obs_other, r1[0][0])


# ---------------------------------------------------------------------------- physics edits
def inertia_tensor(model, b):
    """Body b's inertia tensor about its centre of mass, in the body frame."""
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, model.body_iquat[b])
    rot = rot.reshape(3, 3)
    return rot @ np.diag(model.body_inertia[b]) @ rot.T


def expected_model(pristine, task):
    """Nominal × scale, written out from the documented semantics.

    A payload (point mass ``p`` at ``d`` from the nominal centre of mass ``c`` of body 1) makes
    body 1's mass ``M + p``, its centre of mass ``c + p d / (M + p)`` and its inertia tensor
    about that point the sum of both parts' (parallel-axis theorem): the entry
    ``payload_tensor`` (the principal axes themselves are the solver's choice).
    """

    def scale(name, n):
        v = task.scale(name)
        return np.ones(n) if v is None else np.broadcast_to(np.asarray(v), (n,))

    m = scale("body_mass", pristine.nbody)
    sign = scale("actuator_direction", pristine.nu)
    gear = pristine.actuator_gear * (scale("actuator_gear", pristine.nu) * sign)[:, None]
    gain = pristine.actuator_gainprm.copy()
    bias = pristine.actuator_biasprm.copy()
    for i in task.disabled_actuators:
        gear[i] = 0.0
        gain[i] = 0.0
        bias[i] = 0.0
    mass = pristine.body_mass * m
    inertia = pristine.body_inertia * m[:, None]
    ipos, iquat = pristine.body_ipos.copy(), pristine.body_iquat.copy()
    extra = {}
    share = task.scale("payload_mass")
    payload = share[0] * pristine.body_mass.sum() if share else 0.0
    if payload > 0:
        d = scale("payload_com", 3) if task.scale("payload_com") else np.zeros(3)
        big, c = mass[1], pristine.body_ipos[1]
        new_c = c + payload * d / (big + payload)
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, pristine.body_iquat[1])
        rot = rot.reshape(3, 3)
        tensor = rot @ np.diag(inertia[1]) @ rot.T
        for mm, r in ((big, c - new_c), (payload, c + d - new_c)):
            tensor = tensor + mm * (r @ r * np.eye(3) - np.outer(r, r))
        mass[1] += payload
        ipos[1] = new_c
        extra["payload_tensor"] = tensor
        inertia, iquat = None, None
    out = {
        "body_mass": mass,
        "body_inertia": inertia,
        "body_ipos": ipos,
        "body_iquat": iquat,
        "geom_friction": pristine.geom_friction * scale("geom_friction", pristine.ngeom)[:, None],
        "dof_damping": pristine.dof_damping * scale("dof_damping", pristine.nv),
        "gravity": pristine.opt.gravity * scale("gravity", 3),
        "actuator_gear": gear,
        "actuator_gainprm": gain,
        "actuator_biasprm": bias,
        **extra,
    }
    return {k: v for k, v in out.items() if v is not None}


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_task_values_are_nominal_times_scale(fid):
    pristine = gym.make(fid).unwrapped.model
    env = gym.make(fid)
    model = env.unwrapped.model
    for task in (*me.task_split(fid)[0][:3], me.task_split(fid)[1][0]):
        env.reset(seed=0, options={"task": task})
        exp = expected_model(pristine, task)
        if "payload_tensor" in exp:
            np.testing.assert_allclose(
                inertia_tensor(model, 1), exp.pop("payload_tensor"), rtol=1e-9, atol=1e-12
            )
            others = np.arange(model.nbody) != 1
            np.testing.assert_array_equal(model.body_iquat[others], pristine.body_iquat[others])
            np.testing.assert_allclose(
                model.body_inertia[others],
                pristine.body_inertia[others] * np.asarray(task.scale("body_mass") or (1.0,)),
                rtol=1e-12,
            )
        for name, value in exp.items():
            got = model.opt.gravity if name == "gravity" else getattr(model, name)
            # The payload's centre of mass is a weighted mean: equal up to rounding.
            rtol = 1e-12 if name != "body_ipos" else 1e-9
            np.testing.assert_allclose(got, value, rtol=rtol, atol=1e-15, err_msg=name)


@pytest.mark.parametrize(
    "fid", [f for f in FAMILY_IDS if "body_mass" in EXPECTED[f].get("scales", {})]
)
def test_mass_scaling_scales_inertia_by_the_same_factor(fid):
    pristine = gym.make(fid).unwrapped.model
    env = gym.make(fid)
    model = env.unwrapped.model
    task = me.task_split(fid)[0][0]
    env.reset(seed=0, options={"task": task})
    has_mass = pristine.body_mass > 0
    mass_ratio = model.body_mass[has_mass] / pristine.body_mass[has_mass]
    assert not np.allclose(mass_ratio, 1.0)
    inertia_ratio = model.body_inertia[has_mass] / pristine.body_inertia[has_mass]
    np.testing.assert_allclose(inertia_ratio, np.repeat(mass_ratio[:, None], 3, 1), rtol=1e-12)
    # mj_setConst ran: derived quantities follow the new masses.
    np.testing.assert_allclose(model.body_subtreemass[0], model.body_mass.sum(), rtol=1e-12)


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_no_drift_after_many_resets(fid):
    n = 2000 if fid == CHEAP else 500
    env = gym.make(fid)
    model = env.unwrapped.model
    a, b = two_tasks(fid)
    acts = fixed_actions(env, 3, seed=0)
    env.reset(seed=0, options={"task": a})
    snap_a = snapshot(model)
    env.reset(seed=0, options={"task": b})
    snap_b = snapshot(model)
    set_task = env.get_wrapper_attr("set_task")
    for k in range(n):
        task = a if k % 2 == 0 else b
        if k % 3 == 0:
            set_task(task)
            env.reset(seed=k)
        else:
            env.reset(seed=k, options={"task": task})
        if k % 100 == 0:
            steps(env, acts)
    env.reset(seed=1, options={"task": a})
    assert_same_snapshot(snapshot(model), snap_a)
    env.reset(seed=1, options={"task": b})
    assert_same_snapshot(snapshot(model), snap_b)


@pytest.mark.parametrize(
    "fid,tasks",
    [
        ("metarobot/AntCrippled-v0", "train"),
        ("metarobot/AntCrippled-v0", "test"),
        ("metarobot/HalfCheetahCrippled-v0", "train"),
        ("metarobot/HalfCheetahCrippled-v0", "test"),
    ],
)
def test_disabled_actuator_produces_no_force(fid, tasks):
    train, test = me.task_split(fid)
    pool = train if tasks == "train" else test
    env = gym.make(fid)
    model, data = env.unwrapped.model, env.unwrapped.data
    nu = model.nu
    dof = [int(model.jnt_dofadr[model.actuator_trnid[i, 0]]) for i in range(nu)]
    action = np.full(nu, 0.8, dtype=np.float32)
    seen = set()
    for task in pool[:8]:
        disabled = set(task.disabled_actuators)
        assert disabled
        seen |= disabled
        env.reset(seed=0, options={"task": task})
        for _ in range(3):
            env.step(action)
        for i in range(nu):
            if i in disabled:
                assert data.actuator_force[i] == 0.0
                assert data.qfrc_actuator[dof[i]] == 0.0
            else:
                assert data.actuator_force[i] != 0.0
                assert data.qfrc_actuator[dof[i]] != 0.0
    # A later task without the failure gets the motor back.
    fresh = me.Task.make(fid, dict(pool[0].scales))
    env.reset(seed=0, options={"task": fresh})
    env.step(action)
    for i in seen:
        assert data.actuator_force[i] != 0.0
        assert data.qfrc_actuator[dof[i]] != 0.0


@pytest.mark.parametrize("fid", [CHEAP, "metarobot/InvertedDoublePendulumRandParams-v0"])
def test_reversed_motor_pushes_the_other_way(fid):
    env = gym.make(fid)
    model, data = env.unwrapped.model, env.unwrapped.data
    base = dict(me.task_split(fid)[0][0].scales)
    forces = {}
    for sign in (1.0, -1.0):
        task = me.Task.make(fid, {**base, "actuator_direction": [sign]})
        env.reset(seed=0, options={"task": task})
        env.step(np.array([1.0], dtype=np.float32))
        dof = int(model.jnt_dofadr[model.actuator_trnid[0, 0]])
        forces[sign] = data.qfrc_actuator[dof]
        assert np.sign(model.actuator_gear[0, 0]) == sign
    assert forces[1.0] > 0
    assert forces[-1.0] == pytest.approx(-forces[1.0], rel=1e-9)
    train, test = me.task_split(fid)
    for split in (train, test):  # both polarities are trained and tested
        assert {t.scale("actuator_direction")[0] for t in split} == {-1.0, 1.0}


GOAL_REWARD = {
    "metarobot/HalfCheetahVel-v0": lambda info, a, g, te: (
        -abs(info["x_velocity"] - g["velocity"][0]) - 0.05 * np.sum(np.square(a))
    ),
    "metarobot/HalfCheetahDir-v0": lambda info, a, g, te: (
        g["direction"][0] * info["x_velocity"] - 0.05 * np.sum(np.square(a))
    ),
    "metarobot/AntDir-v0": lambda info, a, g, te: (
        math.cos(g["angle"][0]) * info["x_velocity"]
        + math.sin(g["angle"][0]) * info["y_velocity"]
        + (0.0 if te else 1.0)
        - 0.5 * np.sum(np.square(a))
    ),
}


@pytest.mark.parametrize("fid", sorted(GOAL_REWARD))
def test_goal_reward_follows_docstring(fid):
    env = gym.make(fid)
    for task in me.task_split(fid)[0][:2]:
        goal = dict(task.goal)
        env.reset(seed=0, options={"task": task})
        for a in fixed_actions(env, 15, seed=4):
            _, r, te, tr, info = env.step(a)
            assert r == pytest.approx(GOAL_REWARD[fid](info, a, goal, te), abs=1e-6)
            if te or tr:
                break


# ---------------------------------------------------------------------------- docs
@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_family_docstring_sections(fid):
    cls = type(me.find_randomized(gym.make(fid)))
    doc = cls.__doc__ or ""
    for section in ("## Description", "## Randomized parameters", "## Reward", "## Episode end"):
        assert section in doc, f"{cls.__name__} lacks {section}"
    assert f"after {cls.HORIZON} steps" in " ".join(doc.split())


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_registered_family_domain_randomization(fid):
    def tasks_of_resets(seed):
        env = gym.make(fid, resample_on_reset=True)
        out = [env.reset(seed=seed)[1]["task"]]
        out += [env.reset()[1]["task"] for _ in range(5)]
        return out

    seq = tasks_of_resets(0)
    assert all(t.family == fid for t in seq)
    assert len(set(seq)) > 1
    assert tasks_of_resets(0) == seq
    assert tasks_of_resets(1) != seq
