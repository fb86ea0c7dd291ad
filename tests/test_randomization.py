"""Parameter specs and the Task value object (metarobot.envs.randomization)."""

from __future__ import annotations

import dataclasses
import json
import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from metarobot.envs.randomization import (
    DYNAMICS_FIELDS,
    SIGN_FIELDS,
    Choice,
    DisabledActuators,
    LogUniform,
    Task,
    Uniform,
    as_spec,
    pearl_log_uniform,
)

FAMILY = "metarobot/HalfCheetahRandParams-v0"
BAD_NUMBERS = [-1.0, -1e-12, math.nan, math.inf, -math.inf, "abc", None]


# ---------------------------------------------------------------------------- specs
@pytest.mark.parametrize("spec_cls", [Uniform, LogUniform])
def test_low_above_high_raises_naming_parameter(spec_cls):
    with pytest.raises(ValueError, match=r"body_mass.*low.*high"):
        spec_cls(2.0, 1.0, name="body_mass")


@pytest.mark.parametrize("spec_cls", [Uniform, LogUniform])
@pytest.mark.parametrize("bad", BAD_NUMBERS)
@pytest.mark.parametrize("side", ["low", "high"])
def test_bad_bound_raises_naming_parameter(spec_cls, bad, side):
    kwargs = {"low": 0.5, "high": 2.0, side: bad}
    with pytest.raises(ValueError, match=rf"dof_damping\.{side}"):
        spec_cls(**kwargs, name="dof_damping")


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_as_spec_tuple_with_bad_values_names_parameter(bad):
    with pytest.raises(ValueError, match="geom_friction"):
        as_spec("geom_friction", (bad, 2.0))
    with pytest.raises(ValueError, match="geom_friction"):
        as_spec("geom_friction", (0.5, bad))


def test_as_spec_low_above_high_names_parameter():
    with pytest.raises(ValueError, match="actuator_gear"):
        as_spec("actuator_gear", (3.0, 1.0))


@pytest.mark.parametrize("low", [0.0, -0.5])
def test_log_uniform_needs_positive_low(low):
    with pytest.raises(ValueError, match="gravity"):
        LogUniform(low, 2.0, name="gravity")
    with pytest.raises(ValueError):
        LogUniform(low, 2.0)


@pytest.mark.parametrize(
    "garbage", [None, 1.0, "ab", "lohi", (1.0,), (1.0, 2.0, 3.0), [], {"low": 1, "high": 2}]
)
def test_as_spec_rejects_garbage(garbage):
    with pytest.raises(ValueError, match="body_mass"):
        as_spec("body_mass", garbage)


def test_as_spec_tuple_is_shared_uniform_scale_range():
    spec = as_spec("body_mass", (0.5, 2.0))
    assert isinstance(spec, Uniform)
    assert (spec.low, spec.high, spec.per_element) == (0.5, 2.0, False)
    assert spec.name == "body_mass"
    # A spec object is accepted as is (only renamed for messages).
    lu = as_spec("dof_damping", LogUniform(0.5, 2.0, per_element=True))
    assert isinstance(lu, LogUniform)
    assert lu == LogUniform(0.5, 2.0, per_element=True)
    assert lu.name == "dof_damping"


def test_zero_width_and_zero_ranges_are_valid():
    assert Uniform(0.0, 0.0).sample(np.random.default_rng(0), 3).tolist() == [0.0]
    assert LogUniform(2.0, 2.0).sample(np.random.default_rng(0), 3) == pytest.approx([2.0])


def test_specs_are_frozen():
    spec = Uniform(0.5, 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.low = 0.1  # type: ignore[misc]


@pytest.mark.parametrize("low,high", [(0.1, 10.0), (1.5**-3, 1.5**3), (1e-3, 1e-3 * 1.0001)])
def test_log_uniform_samples_lie_in_range_and_are_log_uniform(low, high):
    spec = LogUniform(low, high, per_element=True)
    rng = np.random.default_rng(123)
    s = spec.sample(rng, 20_000)
    assert s.shape == (20_000,)
    tol = 1e-12 * high
    assert np.all(s >= low - tol)
    assert np.all(s <= high + tol)
    assert spec.contains(s)
    # Log-uniform: log(s) is uniform on [log low, log high]; its mean is the mid point.
    mid = 0.5 * (math.log(low) + math.log(high))
    width = math.log(high) - math.log(low)
    assert np.mean(np.log(s)) == pytest.approx(mid, abs=0.02 * width + 1e-12)
    assert np.std(np.log(s)) == pytest.approx(width / math.sqrt(12), rel=0.03)


def test_uniform_samples_lie_in_range_and_are_uniform():
    spec = Uniform(0.5, 2.0, per_element=True)
    s = spec.sample(np.random.default_rng(1), 20_000)
    assert np.all((s >= 0.5) & (s <= 2.0))
    assert np.mean(s) == pytest.approx(1.25, abs=0.02)


def test_per_element_flag_controls_sample_length():
    rng = np.random.default_rng(0)
    assert LogUniform(0.5, 2.0).sample(rng, 7).shape == (1,)
    assert LogUniform(0.5, 2.0, per_element=True).sample(rng, 7).shape == (7,)
    assert Uniform(0.5, 2.0).sample(rng, 7).shape == (1,)
    assert Uniform(0.5, 2.0, per_element=True).sample(rng, 7).shape == (7,)


def test_samples_depend_only_on_generator_seed():
    spec = LogUniform(0.1, 10.0, per_element=True)
    a = spec.sample(np.random.default_rng(5), 10)
    b = spec.sample(np.random.default_rng(5), 10)
    c = spec.sample(np.random.default_rng(6), 10)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pearl_log_uniform_range():
    spec = pearl_log_uniform(1.5)
    assert isinstance(spec, LogUniform)
    assert (spec.low, spec.high) == (1.5**-3, 1.5**3)
    assert spec.per_element
    spec2 = pearl_log_uniform(1.3, limit=2.0, per_element=False)
    assert (spec2.low, spec2.high, spec2.per_element) == (1.3**-2, 1.3**2, False)


@pytest.mark.parametrize("base", [1.0, 0.5, -2.0, math.inf, math.nan])
def test_pearl_log_uniform_rejects_bad_base(base):
    with pytest.raises(ValueError, match="base"):
        pearl_log_uniform(base)


@pytest.mark.parametrize("limit", [-1.0, math.inf, math.nan])
def test_pearl_log_uniform_rejects_bad_limit(limit):
    with pytest.raises(ValueError, match="limit"):
        pearl_log_uniform(1.5, limit)


def test_choice_validation_and_sampling():
    with pytest.raises(ValueError, match="direction"):
        Choice((), name="direction")
    with pytest.raises(ValueError, match="direction"):
        Choice((1.0, math.nan), name="direction")
    c = Choice((-1, 1))
    draws = {float(c.sample(np.random.default_rng(s))[0]) for s in range(50)}
    assert draws == {-1.0, 1.0}
    assert c.contains([1.0, -1.0])
    assert not c.contains([0.5])


def test_disabled_actuators_validation_and_sampling():
    with pytest.raises(ValueError, match="disabled_actuators"):
        DisabledActuators(())
    with pytest.raises(ValueError, match="disabled_actuators"):
        DisabledActuators(((0, -1),))
    with pytest.raises(ValueError, match="disabled_actuators"):
        DisabledActuators(((),))
    with pytest.raises(ValueError, match="count"):
        DisabledActuators(((0,), (1,)), count=3)
    with pytest.raises(ValueError, match="count"):
        DisabledActuators(((0,), (1,)), count=-1)
    spec = DisabledActuators(((0, 1), (2, 3), (4, 5)), count=1)
    seen = {spec.sample(np.random.default_rng(s)) for s in range(60)}
    assert seen == {(0, 1), (2, 3), (4, 5)}
    two = DisabledActuators((0, 1, 2), count=2)  # plain ints are single-actuator groups
    for s in range(20):
        picked = two.sample(np.random.default_rng(s))
        assert len(picked) == 2
        assert set(picked) <= {0, 1, 2}
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        spec.check_indices(4)
    spec.check_indices(6)


# ---------------------------------------------------------------------------- Task
def test_task_make_unknown_field_names_allowed_names():
    with pytest.raises(ValueError) as err:
        Task.make(FAMILY, {"body_mas": [1.0]})
    msg = str(err.value)
    assert "body_mas" in msg
    for name in DYNAMICS_FIELDS:
        assert name in msg


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "abc"])
def test_task_make_rejects_bad_scale_values(bad):
    with pytest.raises(ValueError, match="body_mass"):
        Task.make(FAMILY, {"body_mass": [1.0, bad]})


@pytest.mark.parametrize("bad", [0.0, 0.5, 2.0, -0.5, math.nan])
def test_task_make_direction_values_must_be_signs(bad):
    with pytest.raises(ValueError, match="actuator_direction"):
        Task.make(FAMILY, {"actuator_direction": [1.0, bad]})
    t = Task.make(FAMILY, {"actuator_direction": [-1, 1]})
    assert t.scale("actuator_direction") == (-1.0, 1.0)
    assert Task.from_json(t.to_json()) == t


def test_as_spec_choice():
    # A Choice of signs is accepted for sign fields only; a Choice of scales anywhere.
    sign = as_spec("actuator_direction", Choice((-1.0, 1.0)))
    assert isinstance(sign, Choice)
    assert sign.name == "actuator_direction"
    with pytest.raises(ValueError, match="body_mass"):
        as_spec("body_mass", Choice((-1.0, 1.0)))
    scale = as_spec("body_mass", Choice((0.5, 2.0)))
    assert scale.values == (0.5, 2.0)


def test_task_make_rejects_negative_actuator_index():
    with pytest.raises(ValueError, match="disabled_actuators"):
        Task.make(FAMILY, disabled_actuators=[-1])


def test_task_make_rejects_non_finite_goal():
    with pytest.raises(ValueError, match="velocity"):
        Task.make(FAMILY, goal={"velocity": [math.inf]})


def test_task_normalizes_its_fields():
    t = Task.make(
        FAMILY,
        {"dof_damping": np.array([1.0, 2.0]), "body_mass": 0.5},
        disabled_actuators=[3, 1, 3],
        goal={"velocity": 1},
    )
    assert t.scales == (("body_mass", (0.5,)), ("dof_damping", (1.0, 2.0)))
    assert t.disabled_actuators == (1, 3)
    assert t.goal == (("velocity", (1.0,)),)
    assert t.scale("body_mass") == (0.5,)
    assert t.scale("geom_friction") is None
    assert t.goal_value("velocity") == (1.0,)
    assert all(type(v) is float for _, vals in t.scales for v in vals)
    # Construction order of the mapping does not matter.
    t2 = Task.make(FAMILY, {"body_mass": [0.5], "dof_damping": [1.0, 2.0]}, (1, 3), {"velocity": 1})
    assert t == t2
    assert hash(t) == hash(t2)


def test_task_is_frozen_and_hashable():
    t = Task.make(FAMILY, {"body_mass": [1.0, 2.0]}, [1], {"velocity": [0.5]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.family = "other"  # type: ignore[misc]
    same = Task.make(FAMILY, {"body_mass": [1.0, 2.0]}, [1], {"velocity": [0.5]})
    other = Task.make(FAMILY, {"body_mass": [1.0, 2.5]}, [1], {"velocity": [0.5]})
    assert {t, same, other} == {t, other}
    assert len({t: 1, same: 2}) == 1
    assert t != other
    assert t != Task.make(
        "metarobot/AntRandParams-v0", {"body_mass": [1.0, 2.0]}, [1], {"velocity": [0.5]}
    )


def test_task_json_round_trip_and_format():
    t = Task.make(
        FAMILY,
        {"body_mass": [1.5**-3, 0.1 + 0.2, 3.375], "gravity": [1.0]},
        [0, 5],
        {"velocity": [2.0 / 3.0]},
    )
    s = t.to_json()
    assert json.loads(s)["family"] == FAMILY
    back = Task.from_json(s)
    assert back == t
    assert hash(back) == hash(t)
    assert back.to_json() == s


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "{",
        "[1, 2]",
        "null",
        "3",
        '"a string"',
        "{}",
        '{"scales": {}}',
        '{"family": "x", "unknown_key": 1}',
        '{"family": "x", "scales": {"bogus_field": [1.0]}}',
        '{"family": "x", "scales": {"body_mass": [-1.0]}}',
        '{"family": "x", "scales": {"body_mass": [NaN]}}',
        '{"family": "x", "scales": {"body_mass": [Infinity]}}',
        '{"family": "x", "scales": {"body_mass": "abc"}}',
        '{"family": "x", "scales": {"body_mass": {}}}',
        '{"family": "x", "disabled_actuators": [-2]}',
        '{"family": "x", "goal": {"velocity": "fast"}}',
    ],
)
def test_bad_json_raises_value_error(text):
    with pytest.raises(ValueError):
        Task.from_json(text)


# A JSON record of the wrong shape is a ValueError, never another exception type.
@pytest.mark.parametrize(
    "text",
    [
        '{"family": "x", "scales": [1.0]}',
        '{"family": "x", "goal": [1.0]}',
        '{"family": "x", "disabled_actuators": 3}',
        '{"family": "x", "disabled_actuators": [[1]]}',
        '{"family": "x", "disabled_actuators": [null]}',
    ],
)
def test_malformed_json_record_raises_value_error(text):
    with pytest.raises(ValueError):
        Task.from_json(text)


finite_nonneg = st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False)
finite_any = st.floats(allow_nan=False, allow_infinity=False)
SCALE_FIELDS = [f for f in DYNAMICS_FIELDS if f not in SIGN_FIELDS]


@st.composite
def scale_dicts(draw, max_size=12):
    """Random valid ``scales`` mappings: non-negative scales (positive masses), ±1 for signs."""
    out = draw(
        st.dictionaries(
            st.sampled_from(SCALE_FIELDS), st.lists(finite_nonneg, min_size=1, max_size=max_size)
        )
    )
    if "body_mass" in out:
        out["body_mass"] = [v if v > 0 else 1e-3 for v in out["body_mass"]]
    for name in SIGN_FIELDS:
        if draw(st.booleans()):
            out[name] = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=1, max_size=8))
    return out


task_strategy = st.builds(
    Task.make,
    family=st.sampled_from(
        [FAMILY, "metarobot/AntCrippled-v0", "metarobot/ReacherRandParams-v0", "Swimmer-v5"]
    ),
    scales=scale_dicts(),
    disabled_actuators=st.lists(st.integers(min_value=0, max_value=64), max_size=4),
    goal=st.dictionaries(
        st.sampled_from(["velocity", "direction", "angle"]),
        st.lists(finite_any, min_size=1, max_size=3),
    ),
)


@settings(max_examples=200, deadline=None, database=None)
@given(task=task_strategy)
def test_task_json_round_trip_property(task):
    back = Task.from_json(task.to_json())
    assert back == task
    assert hash(back) == hash(task)
    assert back.to_json() == task.to_json()


@settings(max_examples=100, deadline=None, database=None)
@given(scales=scale_dicts(max_size=8))
def test_task_from_scale_dict_equal_and_hash_equal(scales):
    a = Task.make(FAMILY, scales)
    # Same values given as numpy arrays, in reversed key order: the same task.
    b = Task.make(FAMILY, {k: np.asarray(v) for k, v in reversed(list(scales.items()))})
    assert a == b
    assert hash(a) == hash(b)
    for name, values in scales.items():
        assert a.scale(name) == tuple(float(v) for v in values)
    back = Task.from_json(a.to_json())
    assert back == a
    assert hash(back) == hash(a)


# ---------------------------------------------------------------------------- the task validator
def test_n_elements_counts_each_field():
    import mujoco

    from metarobot.envs.randomization import DYNAMICS_FIELDS, n_elements

    model = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body><joint name='j'/><geom size='.1'/><geom size='.1' pos='1 0 0'/>"
        "</body></worldbody><actuator><motor joint='j'/></actuator></mujoco>"
    )
    expected = {
        "body_mass": 2,
        "geom_friction": 2,
        "dof_damping": 1,
        "gravity": 3,
        "actuator_gear": 1,
        "actuator_direction": 1,
        "payload_mass": 1,
        "payload_com": 3,
    }
    assert {f: n_elements(model, f) for f in DYNAMICS_FIELDS} == expected
    with pytest.raises(ValueError, match="body_inertia"):
        n_elements(model, "body_inertia")


@pytest.mark.parametrize(
    "name,bad",
    [
        ("body_mass", 0.0),
        ("body_mass", -1.0),
        ("dof_damping", -0.1),
        ("geom_friction", float("nan")),
        ("gravity", float("inf")),
        ("actuator_direction", 0.5),
    ],
)
def test_one_rule_for_specs_tasks_and_the_wrapper(name, bad):
    import gymnasium as gym

    from metarobot.envs import RandomizedDynamics
    from metarobot.envs.randomization import check_scale_values

    with pytest.raises(ValueError, match=name):
        check_scale_values(name, [bad])
    with pytest.raises(ValueError, match=name):
        Task.make("x", {name: [bad]})
    env = RandomizedDynamics(gym.make("Swimmer-v5").unwrapped, family="x")
    task = Task("x", ((name, (bad,)),))  # bypasses Task.make: the wrapper checks on its own
    with pytest.raises(ValueError, match=name):
        env.validate_task(task)
    if math.isfinite(bad):  # a spec that could draw the value is refused up front
        with pytest.raises(ValueError, match=name):
            as_spec(name, Choice((bad, 1.0)))


def test_check_scale_values_checks_lengths_against_the_model():
    from metarobot.envs.randomization import check_scale_values

    assert check_scale_values("dof_damping", [1.0], n=5) == (1.0,)
    assert check_scale_values("dof_damping", [1.0] * 5, n=5) == (1.0,) * 5
    with pytest.raises(ValueError, match=r"dof_damping.*1 or 5"):
        check_scale_values("dof_damping", [1.0] * 3, n=5)


def test_check_disabled_actuators_names_the_allowed_range():
    from metarobot.envs.randomization import check_disabled_actuators

    assert check_disabled_actuators([2, 0, 2.0]) == (0, 2)
    with pytest.raises(ValueError, match=r"disabled_actuators.*\[0, 3\]"):
        check_disabled_actuators([4], nu=4)
    with pytest.raises(ValueError, match="disabled_actuators"):
        check_disabled_actuators([-1])
