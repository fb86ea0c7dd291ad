"""RandomizedDynamics on plain Gymnasium MuJoCo envs (no family)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from metarobot.envs import (
    Choice,
    DisabledActuators,
    LogUniform,
    RandomizedDynamics,
    Task,
    Uniform,
    find_randomized,
)


def swimmer(**kwargs):
    specs = {"body_mass": (0.5, 2.0), "dof_damping": LogUniform(0.5, 2, per_element=True)}
    return RandomizedDynamics(gym.make("Swimmer-v5").unwrapped, **{**specs, **kwargs})


def pristine(env_id):
    return gym.make(env_id).unwrapped.model


# Swimmer-v5 has zero joint damping, so HalfCheetah-v5 (non-zero damping) is run as well.
@pytest.mark.parametrize("env_id", ["Swimmer-v5", "HalfCheetah-v5"])
def test_tasks_are_sampled_and_applied_at_reset(env_id):
    env = RandomizedDynamics(
        gym.make(env_id).unwrapped,
        body_mass=(0.5, 2.0),
        dof_damping=LogUniform(0.5, 2, per_element=True),
    )
    nominal = pristine(env_id)
    model = env.unwrapped.model
    assert env.family == env_id
    # Until a task is given, the model is nominal.
    np.testing.assert_array_equal(model.body_mass, nominal.body_mass)
    np.testing.assert_array_equal(model.dof_damping, nominal.dof_damping)

    tasks = env.sample_tasks(5, seed=0)
    assert tasks == env.sample_tasks(5, seed=0)
    assert tasks != env.sample_tasks(5, seed=1)
    assert len(set(tasks)) == 5
    for t in tasks:
        assert t.family == env_id
        (m,) = t.scale("body_mass")
        assert 0.5 <= m <= 2.0
        d = np.array(t.scale("dof_damping"))
        assert d.shape == (model.nv,)
        assert np.all((d >= 0.5 * (1 - 1e-12)) & (d <= 2.0 * (1 + 1e-12)))
        assert len(np.unique(d)) == model.nv  # drawn per element
        assert t.scale("geom_friction") is None

        env.set_task(t)
        # Not applied before the reset.
        assert not np.array_equal(model.body_mass, nominal.body_mass * m) or m == 1.0
        _obs, info = env.reset(seed=0)
        assert info["task"] == t
        np.testing.assert_allclose(model.body_mass, nominal.body_mass * m, rtol=1e-12)
        np.testing.assert_allclose(model.body_inertia, nominal.body_inertia * m, rtol=1e-12)
        np.testing.assert_allclose(model.dof_damping, nominal.dof_damping * d, rtol=1e-12)
        np.testing.assert_array_equal(model.geom_friction, nominal.geom_friction)
        np.testing.assert_array_equal(model.opt.gravity, nominal.opt.gravity)
        np.testing.assert_array_equal(model.actuator_gear, nominal.actuator_gear)
        o, _r, _te, _tr, info = env.step(env.action_space.sample())
        assert np.all(np.isfinite(o))
        assert info["diverged"] is False
    if env_id == "HalfCheetah-v5":
        assert not np.array_equal(model.dof_damping, nominal.dof_damping)


def test_round_trip_task_applies_identically():
    env = swimmer()
    t = env.sample_tasks(1, seed=3)[0]
    back = Task.from_json(t.to_json())
    assert back == t
    env.reset(seed=0, options={"task": t})
    mass, damp = env.unwrapped.model.body_mass.copy(), env.unwrapped.model.dof_damping.copy()
    acts = np.random.default_rng(0).uniform(-1, 1, size=(10, 2))
    r1 = [env.step(a)[0] for a in acts]
    other = swimmer()
    other.reset(seed=0, options={"task": back})
    np.testing.assert_array_equal(other.unwrapped.model.body_mass, mass)
    np.testing.assert_array_equal(other.unwrapped.model.dof_damping, damp)
    r2 = [other.step(a)[0] for a in acts]
    np.testing.assert_array_equal(np.array(r1), np.array(r2))


def test_all_fields_and_disabled_actuators():
    env = RandomizedDynamics(
        gym.make("HalfCheetah-v5").unwrapped,
        body_mass=Uniform(0.5, 2.0, per_element=True),
        geom_friction=(0.5, 1.5),
        dof_damping=(0.5, 1.5),
        gravity=(0.5, 1.5),
        actuator_gear=LogUniform(0.5, 2.0, per_element=True),
        disabled_actuators=DisabledActuators(((0,), (3, 4)), 1),
    )
    nominal = pristine("HalfCheetah-v5")
    model = env.unwrapped.model
    for t in env.sample_tasks(4, seed=0):
        assert t.disabled_actuators in {(0,), (3, 4)}
        env.reset(options={"task": t})
        (g,) = t.scale("gravity")
        np.testing.assert_allclose(model.opt.gravity, nominal.opt.gravity * g, rtol=1e-12)
        (f,) = t.scale("geom_friction")
        np.testing.assert_allclose(model.geom_friction, nominal.geom_friction * f, rtol=1e-12)
        gear = np.array(t.scale("actuator_gear"))
        for i in range(model.nu):
            if i in t.disabled_actuators:
                assert np.all(model.actuator_gear[i] == 0)
                assert np.all(model.actuator_gainprm[i] == 0)
            else:
                np.testing.assert_allclose(
                    model.actuator_gear[i], nominal.actuator_gear[i] * gear[i], rtol=1e-12
                )
                np.testing.assert_array_equal(
                    model.actuator_gainprm[i], nominal.actuator_gainprm[i]
                )


def test_wraps_a_wrapped_env_and_is_found():
    env = RandomizedDynamics(gym.make("Swimmer-v5"), body_mass=(0.5, 2.0))
    assert env.family == "Swimmer-v5"
    outer = gym.wrappers.RecordEpisodeStatistics(env)
    assert find_randomized(outer) is env
    t = outer.get_wrapper_attr("sample_tasks")(1, seed=0)[0]
    _, info = outer.reset(seed=0, options={"task": t})
    assert info["task"] == t
    with pytest.raises(ValueError):
        find_randomized(gym.make("Swimmer-v5"))


def test_family_name_can_be_given():
    env = swimmer(family="my/Swimmer-v0")
    assert env.sample_tasks(1, seed=0)[0].family == "my/Swimmer-v0"
    with pytest.raises(ValueError, match="family"):
        env.set_task(Task.make("Swimmer-v5"))


def test_unknown_keyword_raises_naming_it():
    with pytest.raises(ValueError, match="body_masss"):
        RandomizedDynamics(gym.make("Swimmer-v5").unwrapped, body_masss=(0.5, 2.0))
    with pytest.raises(ValueError, match="viscosity"):
        RandomizedDynamics(gym.make("Swimmer-v5").unwrapped, viscosity=(0.5, 2.0))


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"body_mass": (2.0, 0.5)}, "body_mass"),
        ({"geom_friction": (-1.0, 2.0)}, "geom_friction"),
        ({"dof_damping": (0.5, float("nan"))}, "dof_damping"),
        ({"gravity": (0.5, float("inf"))}, "gravity"),
        ({"actuator_gear": "strong"}, "actuator_gear"),
        ({"disabled_actuators": (0, 7)}, "disabled_actuators"),
        ({"disabled_actuators": "leg"}, "disabled_actuators"),
        ({"test_overrides": {"viscosity": (1.0, 2.0)}}, "viscosity"),
    ],
)
def test_bad_specs_raise_naming_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        RandomizedDynamics(gym.make("HalfCheetah-v5").unwrapped, **kwargs)


def test_non_mujoco_env_raises():
    with pytest.raises(ValueError, match="MuJoCo"):
        RandomizedDynamics(gym.make("CartPole-v1").unwrapped, body_mass=(0.5, 2.0))
    with pytest.raises(ValueError, match="MuJoCo"):
        RandomizedDynamics(gym.make("CartPole-v1"))


def test_task_not_fitting_the_model_is_refused():
    env = swimmer()
    nv = env.unwrapped.model.nv
    with pytest.raises(ValueError, match="dof_damping"):
        env.set_task(Task.make("Swimmer-v5", {"dof_damping": [1.0] * (nv + 1)}))
    with pytest.raises(ValueError, match="disabled_actuators"):
        env.set_task(Task.make("Swimmer-v5", disabled_actuators=[2]))
    with pytest.raises(ValueError, match="goal"):
        env.set_task(Task.make("Swimmer-v5", goal={"velocity": [1.0]}))


def test_resample_on_reset():
    def tasks_after_resets(seed, n=4):
        env = swimmer(resample_on_reset=True)
        model = env.unwrapped.model
        nominal = pristine("Swimmer-v5")
        out = []
        _, info = env.reset(seed=seed)
        out.append(info["task"])
        for _ in range(n - 1):
            _, info = env.reset()
            out.append(info["task"])
            (m,) = info["task"].scale("body_mass")
            np.testing.assert_allclose(model.body_mass, nominal.body_mass * m, rtol=1e-12)
        return out

    seq = tasks_after_resets(7)
    assert len(set(seq)) == len(seq)
    assert tasks_after_resets(7) == seq
    assert tasks_after_resets(8) != seq

    # A given task wins over the draw, for that episode only.
    env = swimmer(resample_on_reset=True)
    fixed = env.sample_tasks(1, seed=100)[0]
    env.reset(seed=7)
    _, info = env.reset(options={"task": fixed})
    assert info["task"] == fixed
    _, info = env.reset()
    assert info["task"] != fixed
    env.set_task(fixed)
    _, info = env.reset()
    assert info["task"] == fixed


def test_without_resample_the_task_persists():
    env = swimmer()
    t = env.sample_tasks(1, seed=0)[0]
    env.reset(seed=0, options={"task": t})
    for s in range(3):
        assert env.reset(seed=s)[1]["task"] == t
    assert env.get_task() == t
    assert env.nominal_task() == Task.make("Swimmer-v5")


def test_actuator_direction_reverses_motors():
    env = RandomizedDynamics(
        gym.make("HalfCheetah-v5").unwrapped,
        actuator_gear=(0.5, 2.0),
        actuator_direction=Choice((-1.0, 1.0)),
    )
    nominal = pristine("HalfCheetah-v5")
    model = env.unwrapped.model
    tasks = env.sample_tasks(12, seed=0)
    assert {t.scale("actuator_direction") for t in tasks} == {(-1.0,), (1.0,)}
    for t in tasks[:4]:
        env.reset(options={"task": t})
        (g,), (d,) = t.scale("actuator_gear"), t.scale("actuator_direction")
        np.testing.assert_allclose(model.actuator_gear, nominal.actuator_gear * g * d, rtol=1e-12)
    assert env.nominal_task().scale("actuator_direction") is None
    env.reset(options={"task": env.nominal_task()})
    np.testing.assert_array_equal(model.actuator_gear, nominal.actuator_gear)


@pytest.mark.parametrize("bad", [(0.5, 2.0), Choice((-1.0, 0.5)), Choice((0.0,)), "reverse"])
def test_bad_actuator_direction_raises(bad):
    with pytest.raises(ValueError, match="actuator_direction"):
        RandomizedDynamics(gym.make("HalfCheetah-v5").unwrapped, actuator_direction=bad)


# Test overrides are checked at construction like the keywords they replace.
@pytest.mark.parametrize("bad", [(0.5, 2.0), Choice((-1.0, 0.5))])
def test_bad_actuator_direction_test_override_raises_at_construction(bad):
    with pytest.raises(ValueError, match="actuator_direction"):
        RandomizedDynamics(
            gym.make("HalfCheetah-v5").unwrapped,
            actuator_direction=Choice((-1.0, 1.0)),
            test_overrides={"actuator_direction": bad},
        )


# ---------------------------------------------------------------------------- gymnasium conventions
def wrapped_swimmer():
    return RandomizedDynamics(
        gym.make("Swimmer-v5"),
        body_mass=LogUniform(0.5, 2.0, per_element=True),
        dof_damping=(0.5, 2.0),
    )


def test_spec_records_the_wrapper_and_gym_make_rebuilds_it():
    env = wrapped_swimmer()
    spec = env.spec
    assert spec.id == "Swimmer-v5"
    (wrapper,) = spec.additional_wrappers
    assert wrapper.entry_point == "metarobot.envs.randomized:RandomizedDynamics"
    assert wrapper.kwargs["dof_damping"] == (0.5, 2.0)
    again = gym.make(spec)
    rd = find_randomized(again)
    assert rd.specs == env.specs
    assert rd.sample_tasks(3, seed=0) == env.sample_tasks(3, seed=0)


def test_check_env_passes_on_a_wrapped_gym_make_env():
    from gymnasium.utils.env_checker import check_env

    check_env(wrapped_swimmer(), skip_render_check=True)


def test_wrapped_env_pickles_with_its_task():
    import pickle

    env = wrapped_swimmer()
    task = env.sample_tasks(1, seed=4)[0]
    obs, _ = env.reset(seed=1, options={"task": task})
    copy = pickle.loads(pickle.dumps(env))
    assert copy.get_task() == task
    np.testing.assert_array_equal(copy.reset(seed=1, options={"task": task})[0], obs)


def test_public_spec_accessors():
    env = wrapped_swimmer()
    assert set(env.specs) == {"body_mass", "dof_damping"}
    assert env.disabled_spec is None
    assert env.test_overrides == {}
    env.specs.clear()  # a copy: the wrapper keeps its specs
    assert set(env.specs) == {"body_mass", "dof_damping"}
