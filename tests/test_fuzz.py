"""Property-based fuzzing: only documented errors (ValueError) escape from bad input."""

import math

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import metarobot.envs as me
from metarobot.cli import build_parser
from metarobot.envs.randomization import DYNAMICS_FIELDS

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 5),
    st.just(0.0),
    st.text(max_size=3),
    st.none(),
)
VALUES = st.one_of(FLOATS, st.lists(FLOATS, max_size=6))
FAMILY = "metarobot/InvertedPendulumRandParams-v0"


@settings(max_examples=300, deadline=None)
@given(low=FLOATS, high=FLOATS, per_element=st.booleans(), log=st.booleans())
@example(low=0.0, high=-0.0, per_element=False, log=False)  # a signed zero is zero
def test_spec_construction(low, high, per_element, log):
    cls = me.LogUniform if log else me.Uniform
    try:
        spec = cls(low, high, per_element)
    except ValueError:
        return
    assert math.isfinite(spec.low) and math.isfinite(spec.high) and 0 <= spec.low <= spec.high
    sample = spec.sample(np.random.default_rng(0), 4)
    assert spec.contains(sample)


@settings(max_examples=300, deadline=None)
@given(
    scales=st.dictionaries(
        st.one_of(st.sampled_from(DYNAMICS_FIELDS), st.text(max_size=4)), VALUES, max_size=4
    ),
    disabled=st.one_of(
        st.lists(st.one_of(st.integers(-2, 10), st.floats(), st.text(max_size=2)), max_size=3),
        st.integers(),
        st.none(),
    ),
    goal=st.one_of(st.dictionaries(st.text(max_size=4), VALUES, max_size=2), st.lists(FLOATS)),
)
def test_task_make_and_round_trip(scales, disabled, goal):
    try:
        task = me.Task.make("fam", scales, disabled if disabled is not None else (), goal)
    except ValueError:
        return
    assert me.Task.from_json(task.to_json()) == task
    assert hash(me.Task.from_json(task.to_json())) == hash(task)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scales=st.dictionaries(
        st.sampled_from(DYNAMICS_FIELDS),
        st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=3),
        max_size=3,
    ),
    disabled=st.lists(st.integers(0, 2), max_size=2),
    seed=st.integers(0, 2**16),
)
def test_any_valid_looking_task_resets_or_raises_value_error(scales, disabled, seed):
    env = gym.make(FAMILY)
    scales = dict(scales)
    if "actuator_direction" in scales:
        scales["actuator_direction"] = [
            1.0 if v > 0.5 else -1.0 for v in scales["actuator_direction"]
        ]
    try:
        task = me.Task.make(FAMILY, scales, disabled)
        obs, info = env.reset(seed=seed, options={"task": task})
    except ValueError:
        return
    assert info["task"] == task
    for _ in range(3):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        assert np.all(np.isfinite(obs)) and np.isfinite(r)
        if term or trunc:
            break


@settings(max_examples=100, deadline=None)
@given(
    kwargs=st.dictionaries(
        st.one_of(
            st.sampled_from([*DYNAMICS_FIELDS, "disabled_actuators"]),
            # Unknown names; the wrapper's own non-randomization arguments are not fuzzed here.
            st.text(max_size=5).filter(lambda k: k not in {"env", "goal", "family"}),
        ),
        st.one_of(st.tuples(FLOATS, FLOATS), FLOATS, st.lists(st.integers(-1, 3), max_size=2)),
        max_size=3,
    )
)
def test_wrapper_construction(kwargs):
    try:
        env = me.RandomizedDynamics(gym.make("Swimmer-v5").unwrapped, **kwargs)
    except ValueError:
        return
    tasks = env.sample_tasks(2, seed=0)
    env.reset(seed=0, options={"task": tasks[0]})


@settings(max_examples=300, deadline=None)
@given(
    argv=st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "run",
                    "train",
                    "evaluate",
                    "adapt",
                    "bench",
                    "--episodes",
                    "--ks",
                    "-1",
                    "0",
                    "x",
                    "--algo",
                    "maml",
                    "--env",
                    "--out",
                    "--task-index",
                    "--seeds",
                    "--workers",
                    "--backend",
                    "ray",
                    "--help-me",
                ]
            ),
            st.text(max_size=6),
        ),
        max_size=8,
    )
)
def test_cli_argument_parsing_only_exits_cleanly(argv):
    parser = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        assert exc.code in (0, 2)


def test_zero_mass_is_rejected_and_env_stays_usable():
    # Found by experiments/fuzz_tasks.py: a zero mass made mj_setConst raise mujoco.FatalError.
    with pytest.raises(ValueError, match="body_mass"):
        me.Task.make("metarobot/ReacherRandParams-v0", {"body_mass": [0.0]})
    env = gym.make("metarobot/ReacherRandParams-v0")
    bad = me.Task("metarobot/ReacherRandParams-v0", (("body_mass", (0.0,)),))
    with pytest.raises(ValueError, match="body_mass"):
        env.reset(seed=0, options={"task": bad})
    obs, _ = env.reset(seed=0)
    assert np.all(np.isfinite(obs))


@pytest.mark.parametrize("bad", [(0.0, 0.0), [True], ("a",), 3.5])
def test_disabled_actuator_candidates_must_be_indices(bad):
    # Found by test_wrapper_construction: (0.0, 0.0) raised TypeError instead of ValueError.
    with pytest.raises(ValueError, match="disabled_actuators"):
        me.RandomizedDynamics(gym.make("Swimmer-v5").unwrapped, disabled_actuators=bad)
