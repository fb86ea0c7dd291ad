"""The <Robot>Physical families: payload, friction, motor strength, failed motors, the ood split,
and tasks that change within an episode (single env and batch engine, bit for bit)."""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import metarobot.envs as me
from metarobot.envs.randomization import DisabledActuators, SignedUniform, Task, as_spec

PHYSICAL = (
    "metarobot/AntPhysical-v0",
    "metarobot/HalfCheetahPhysical-v0",
    "metarobot/Walker2dPhysical-v0",
)
CHEETAH = "metarobot/HalfCheetahPhysical-v0"
#: Motors that may fail in training, and those that fail out of distribution.
FAILURES = {
    "metarobot/AntPhysical-v0": (set(range(6)), {6, 7}),
    "metarobot/HalfCheetahPhysical-v0": ({0, 1, 2, 3}, {4, 5}),
    "metarobot/Walker2dPhysical-v0": ({0, 1, 2}, {3, 4, 5}),
}


def tensor(model, b):
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, model.body_iquat[b])
    rot = rot.reshape(3, 3)
    return rot @ np.diag(model.body_inertia[b]) @ rot.T


def point(mass, r):
    r = np.asarray(r, dtype=np.float64)
    return mass * (r @ r * np.eye(3) - np.outer(r, r))


# ---------------------------------------------------------------------------- specs
@pytest.mark.parametrize(
    "make,name",
    [
        (lambda: as_spec("payload_mass", (-0.1, 0.5)), "payload_mass"),
        (lambda: as_spec("payload_com", (0.2, -0.2)), "payload_com"),
        (lambda: as_spec("payload_com", (math.nan, 0.1)), "payload_com"),
        (lambda: as_spec("body_mass", SignedUniform(-1.0, 1.0)), "body_mass"),
        (lambda: SignedUniform(-math.inf, 0.0, name="payload_com"), "payload_com.low"),
        (lambda: Task.make(CHEETAH, {"payload_mass": [-1.0]}), "payload_mass"),
        (lambda: Task.make(CHEETAH, {"payload_com": [0.0, math.inf, 0.0]}), "payload_com"),
        (lambda: DisabledActuators(((0,),), probability=1.5), "disabled_actuators"),
        (lambda: gym.make(CHEETAH, change_step=0), "change_step"),
        (lambda: gym.make(CHEETAH, change_step=2.5), "change_step"),
        (lambda: gym.make(CHEETAH, hazard=1.5), "hazard"),
        (lambda: gym.make(CHEETAH, hazard=-0.1), "hazard"),
        (lambda: gym.make(CHEETAH, change_step=5, change_to="validation"), "split"),
        (lambda: gym.make(CHEETAH, change_to="test"), "change_to"),
        (
            lambda: me.RandomizedDynamics(gym.make("Hopper-v5").unwrapped, payload_body="nope"),
            "payload_body",
        ),
        (
            lambda: me.RandomizedDynamics(gym.make("Hopper-v5").unwrapped, payload_body=99),
            "payload_body",
        ),
    ],
)
def test_bad_values_raise_naming_the_parameter(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_offset_specs_and_payload_values():
    spec = as_spec("payload_com", (-0.15, 0.15))
    assert isinstance(spec, SignedUniform) and spec.name == "payload_com"
    draws = SignedUniform(-0.15, 0.15, per_element=True).sample(np.random.default_rng(0), 3)
    assert draws.shape == (3,) and np.all(np.abs(draws) <= 0.15) and draws.min() < 0
    env = gym.make(CHEETAH)
    with pytest.raises(ValueError, match=r"payload_com.*1 or 3"):
        env.get_wrapper_attr("set_task")(Task.make(CHEETAH, {"payload_com": [0.1, 0.1]}))


@pytest.mark.parametrize("fid", PHYSICAL)
def test_every_split_round_trips_through_json(fid):
    train, test = me.task_split(fid)
    for task in (*train[:5], *test[:3], *me.ood_split(fid)[:3]):
        back = Task.from_json(task.to_json())
        assert back == task and hash(back) == hash(task)


# ---------------------------------------------------------------------------- physics
def test_payload_adds_mass_and_inertia_of_a_point_mass():
    env = gym.make(CHEETAH)
    pristine = gym.make(CHEETAH).unwrapped.model
    model = env.unwrapped.model
    total = pristine.body_mass.sum()
    d = np.array([0.1, -0.05, 0.08])
    task = Task.make(CHEETAH, {"payload_mass": [0.4], "payload_com": d})
    env.reset(seed=0, options={"task": task})
    payload = 0.4 * total
    assert model.body_subtreemass[0] == pytest.approx(1.4 * total, rel=1e-12)
    assert model.body_mass[1] == pytest.approx(pristine.body_mass[1] + payload, rel=1e-12)
    others = np.arange(model.nbody) != 1
    np.testing.assert_array_equal(model.body_mass[others], pristine.body_mass[others])
    # The new centre of mass is the weighted mean of the body's and the payload's.
    c = pristine.body_ipos[1]
    np.testing.assert_allclose(model.body_ipos[1], c + payload * d / model.body_mass[1], rtol=1e-12)
    # Inertia about the old centre of mass: the body's own plus the point mass's.
    shift = model.body_ipos[1] - c
    about_c = tensor(model, 1) + point(model.body_mass[1], shift)
    np.testing.assert_allclose(about_c, tensor(pristine, 1) + point(payload, d), atol=1e-12)
    # Principal axes: a diagonal inertia and a unit quaternion.
    assert np.linalg.norm(model.body_iquat[1]) == pytest.approx(1.0, abs=1e-12)
    # No payload: the pristine body, bit for bit.
    env.reset(seed=0, options={"task": Task.make(CHEETAH, {"payload_com": d})})
    for f in ("body_mass", "body_ipos", "body_iquat", "body_inertia", "body_subtreemass"):
        np.testing.assert_array_equal(getattr(model, f), getattr(pristine, f), err_msg=f)


@pytest.mark.parametrize("fid", PHYSICAL)
def test_payload_offset_moves_the_subtree_centre_of_mass(fid):
    share, d = 0.5, np.array([0.15, -0.1, 0.05])
    coms = {}
    for name, offset in (("centred", np.zeros(3)), ("offset", d)):
        env = gym.make(fid)
        env.reset(
            seed=3,
            options={"task": Task.make(fid, {"payload_mass": [share], "payload_com": offset})},
        )
        model, data = env.unwrapped.model, env.unwrapped.data
        mujoco.mj_forward(model, data)
        coms[name] = data.subtree_com[1].copy()
        xmat = data.xmat[1].reshape(3, 3)
        tree = model.body_subtreemass[1]
    payload = share * model.body_mass.sum() / (1 + share)
    # Same state (same seed), the payload moved by d in the torso frame.
    np.testing.assert_allclose(
        coms["offset"] - coms["centred"], xmat @ d * payload / tree, atol=1e-12
    )


@pytest.mark.parametrize("fid", PHYSICAL)
def test_friction_and_motor_strength_are_applied(fid):
    env = gym.make(fid)
    pristine = gym.make(fid).unwrapped.model
    model, data = env.unwrapped.model, env.unwrapped.data
    task = me.task_split(fid)[0][0]
    env.reset(seed=0, options={"task": task})
    (fr,) = task.scale("geom_friction")
    np.testing.assert_allclose(model.geom_friction, pristine.geom_friction * fr, rtol=1e-15)
    strength = np.asarray(task.scale("actuator_gear"))
    assert strength.shape == (model.nu,)
    action = np.full(model.nu, 0.5, dtype=np.float32)
    env.step(action)
    # Each motor drives one hinge: its generalized force is ctrl × gear × strength.
    dof = [int(model.jnt_dofadr[model.actuator_trnid[i, 0]]) for i in range(model.nu)]
    expected = 0.5 * pristine.actuator_gear[:, 0] * strength
    expected[list(task.disabled_actuators)] = 0.0
    np.testing.assert_allclose(data.qfrc_actuator[dof], expected, rtol=1e-12)


@pytest.mark.parametrize("fid", PHYSICAL)
def test_failed_motor_produces_no_force(fid):
    env = gym.make(fid)
    model, data = env.unwrapped.model, env.unwrapped.data
    dof = [int(model.jnt_dofadr[model.actuator_trnid[i, 0]]) for i in range(model.nu)]
    action = np.full(model.nu, 0.8, dtype=np.float32)
    for task in me.ood_split(fid)[:4]:
        (failed,) = task.disabled_actuators
        env.reset(seed=0, options={"task": task})
        for _ in range(3):
            env.step(action)
        assert data.actuator_force[failed] == 0.0
        assert data.qfrc_actuator[dof[failed]] == 0.0
        assert all(data.actuator_force[i] != 0.0 for i in range(model.nu) if i != failed)


# ---------------------------------------------------------------------------- splits
@pytest.mark.parametrize("fid", PHYSICAL)
def test_ood_split_lies_outside_the_training_ranges_and_is_frozen(fid):
    train, test = me.task_split(fid)
    ood = me.ood_split(fid)
    assert len(ood) == 10 and ood == me.ood_split(fid)
    assert not set(ood) & (set(train) | set(test))
    trained, untrained = FAILURES[fid]
    for t in (*train, *test):
        assert 0.0 <= t.scale("payload_mass")[0] <= 0.5
        assert 0.2 <= t.scale("geom_friction")[0] <= 2.0
        assert set(t.disabled_actuators) <= trained
    assert any(t.disabled_actuators == () for t in train)  # failures are not certain
    for t in ood:
        assert 0.5 <= t.scale("payload_mass")[0] <= 1.0
        assert 0.05 <= t.scale("geom_friction")[0] <= 0.2
        assert len(t.disabled_actuators) == 1 and set(t.disabled_actuators) <= untrained
        assert np.all(np.abs(t.scale("payload_com")) <= 0.15)
    assert {a for t in ood for a in t.disabled_actuators} == untrained
    assert me.find_randomized(gym.make(fid)).splits == ("train", "test", "ood")


def test_a_family_without_ood_overrides_has_no_ood_split():
    fid = "metarobot/HalfCheetahRandParams-v0"
    with pytest.raises(ValueError, match="ood"):
        me.ood_split(fid)
    with pytest.raises(ValueError, match="split"):
        gym.make(fid).get_wrapper_attr("sample_tasks")(2, seed=0, split="ood")
    with pytest.raises(ValueError, match="n must"):
        me.ood_split(CHEETAH, n=0)


# ---------------------------------------------------------------------------- changes in episodes
def model_snapshot(model):
    fields = ("body_mass", "body_inertia", "body_ipos", "body_iquat", "geom_friction")
    fields += ("actuator_gear", "body_subtreemass", "body_invweight0", "dof_invweight0")
    return {f: getattr(model, f).copy() for f in (*fields, "actuator_acc0")}


@pytest.mark.parametrize("fid", PHYSICAL)
def test_change_step_switches_the_task_after_k_steps(fid):
    a, b = me.task_split(fid)[0][:2]
    k = 4
    env = gym.make(fid, change_step=k, change_to=b)
    plain = gym.make(fid)
    ref_b = gym.make(fid)
    ref_b.reset(seed=0, options={"task": b})
    rd = me.find_randomized(env)
    assert rd.change_schedule == {"change_step": k, "hazard": 0.0, "change_to": b}
    acts = np.random.default_rng(0).uniform(-0.3, 0.3, size=(8, env.action_space.shape[0]))
    o1, _ = env.reset(seed=1, options={"task": a})
    o2, _ = plain.reset(seed=1, options={"task": a})
    flags = []
    for t, act in enumerate(acts):
        o1, r1, *_, info = env.step(act)
        o2, r2, *_, info2 = plain.step(act)
        flags.append(info["task_changed"])
        assert "task_changed" not in info2
        if t < k:  # the first k steps run task a: the same as without a schedule
            np.testing.assert_array_equal(o1, o2)
            assert r1 == r2
            assert rd.active_task == a
        if t == k:
            assert info["task"] == b
            assert not np.array_equal(o1, o2)
    assert flags == [t == k for t in range(len(acts))]
    # The model now is task b's, the same as an env reset with b.
    snap, ref = model_snapshot(env.unwrapped.model), model_snapshot(ref_b.unwrapped.model)
    for f in snap:
        np.testing.assert_array_equal(snap[f], ref[f], err_msg=f)
    assert rd.active_task == b and rd.get_task() == a
    # The next reset restores the episode's own task.
    _, info = env.reset(seed=1)
    assert info["task"] == a and rd.active_task == a


def test_change_to_a_split_and_hazard_are_seeded_by_reset():
    def changes(seed, **kw):
        env = gym.make(CHEETAH, **kw)
        env.reset(seed=seed, options={"task": me.task_split(CHEETAH)[0][0]})
        out = []
        for _ in range(60):
            *_, info = env.step(np.zeros(6, dtype=np.float32))
            if info["task_changed"]:
                out.append(info["task"])
        return out

    a = changes(0, hazard=0.1, change_to="ood")
    assert a == changes(0, hazard=0.1, change_to="ood")
    assert a != changes(1, hazard=0.1, change_to="ood")
    assert 1 <= len(a) <= 20
    ood_motors = FAILURES[CHEETAH][1]
    assert all(
        t.scale("payload_mass")[0] >= 0.5 and set(t.disabled_actuators) <= ood_motors for t in a
    )
    assert len(changes(0, hazard=1.0)) == 60
    assert len(changes(0, change_step=10)) == 1


BATCH_CASES = [
    ("metarobot/HalfCheetahPhysical-v0", {"change_step": 7}, None),
    ("metarobot/AntPhysical-v0", {"hazard": 0.05, "change_to": "test"}, None),
    ("metarobot/Walker2dPhysical-v0", {"hazard": 0.05, "change_step": 3}, None),
    ("metarobot/HalfCheetahPhysical-v0", {"hazard": 0.05}, False),  # the generic path
    ("metarobot/HalfCheetahVel-v0", {"change_step": 5}, None),  # a reward that changes
]


@pytest.mark.parametrize("fid,kw,use_kernel", BATCH_CASES)
def test_batched_worlds_match_the_single_env_across_changes(fid, kw, use_kernel):
    tasks = me.task_split(fid)[0][:3]
    n, steps, horizon = len(tasks), 40, 15  # several episodes, several changes
    venv = me.make_batched(
        fid, tasks, nthread=1, use_kernel=use_kernel, max_episode_steps=horizon, **kw
    )
    acts = np.random.default_rng(0).uniform(
        -1, 1, size=(steps, n, venv.single_action_space.shape[0])
    )
    obs, _ = venv.reset(seed=5)
    rows = [(obs.copy(), None, None)]
    for t in range(steps):
        o, r, te, tr, info = venv.step(acts[t])
        rows.append((o.copy(), r.copy(), info["task_changed"].copy()))
        for i in np.flatnonzero(info["_task"]):
            assert info["task"][i] == venv.worlds[i].active_task
    total_changes = 0
    for i in range(n):
        env = gym.make(fid, max_episode_steps=horizon, **kw)
        o, _ = env.reset(seed=5 + i, options={"task": tasks[i]})
        np.testing.assert_array_equal(o, rows[0][0][i])
        done = False
        for t in range(steps):
            if done:  # next-step autoreset: the world resets, reward 0
                o, _ = env.reset()
                r, changed, done = 0.0, False, False
            else:
                o, r, te, tr, info = env.step(acts[t, i])
                changed, done = info["task_changed"], te or tr
            np.testing.assert_array_equal(o, rows[t + 1][0][i], err_msg=f"world {i} step {t}")
            assert r == rows[t + 1][1][i], (i, t)
            assert changed == rows[t + 1][2][i], (i, t)
            total_changes += changed
    assert total_changes >= 2


def test_batched_change_to_reset_option_is_per_world():
    tasks = me.task_split(CHEETAH)[0][:2]
    targets = me.ood_split(CHEETAH)[:2]
    venv = me.make_batched(CHEETAH, tasks, nthread=1, change_step=2)
    venv.reset(seed=0, options={"change_to": targets})
    for _ in range(3):
        *_, info = venv.step(np.zeros((2, 6)))
    assert info["task_changed"].tolist() == [True, True]
    assert list(info["task"]) == targets
    with pytest.raises(ValueError, match="change_to"):
        venv.reset(options={"change_to": targets[:1] * 3})


def test_warp_engine_refuses_changes_within_an_episode():
    pytest.importorskip("mujoco_warp")
    tasks = me.task_split(CHEETAH)[0][:2]
    for kw in ({"change_step": 10}, {"hazard": 0.01}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            me.make_batched(CHEETAH, tasks, engine="warp", device="cpu", **kw)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fid", ["metarobot/HalfCheetahPhysical-v0", "metarobot/Walker2dPhysical-v0"]
)
def test_warp_engine_follows_the_cpu_engine_with_payloads(fid):
    """Payload, friction and motor strength reach every Warp world (fields and constants)."""
    pytest.importorskip("mujoco_warp")
    import warp as wp

    tasks = [*me.task_split(fid)[0][:2], me.ood_split(fid)[0]]
    warp_env = me.make_batched(fid, tasks, engine="warp", device="cpu", as_torch=False)
    cpu_env = me.make_batched(fid, tasks, nthread=1)
    ow, _ = warp_env.reset(seed=3)
    oc, _ = cpu_env.reset(seed=3)
    for i, world in enumerate(cpu_env.worlds):
        host = world.unwrapped.model
        for name in ("body_mass", "body_ipos", "body_iquat", "body_inertia", "body_subtreemass"):
            got = wp.to_torch(getattr(warp_env.model, name))[i].numpy()
            np.testing.assert_allclose(
                got.reshape(getattr(host, name).shape),
                getattr(host, name),
                rtol=2e-5,
                atol=1e-6,
                err_msg=name,
            )
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(-0.5, 0.5, (len(tasks), cpu_env.single_action_space.shape[0]))
        ow, *_ = warp_env.step(a.astype(np.float32))
        oc, *_ = cpu_env.step(a)
        err = np.max(np.abs(ow - oc) / (np.abs(oc) + 1.0), axis=1)
        assert np.all(err[:2] < 1e-3)
        # On the slippery ood floor a foot's slip starts a step apart in float32 now and then
        # (measured: 6e-3 for one step, back under 1e-3 after a few).
        assert err[2] < 2e-2
