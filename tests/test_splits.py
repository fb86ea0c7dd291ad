"""Frozen train/test task splits (metarobot.envs.splits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import gymnasium as gym
import pytest

import metarobot.envs as me

FAMILY_IDS = me.FAMILY_IDS
DIR = "metarobot/HalfCheetahDir-v0"


def family_class(fid):
    return type(me.find_randomized(gym.make(fid)))


def as_json(tasks):
    return sorted(t.to_json() for t in tasks)


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_split_sizes_and_membership(fid):
    train, test = me.task_split(fid)
    if fid == DIR:
        assert (len(train), len(test)) == (2, 2)
    else:
        assert (len(train), len(test)) == (40, 10)
    assert all(isinstance(t, me.Task) and t.family == fid for t in train + test)
    # Every split task is accepted by its family env.
    set_task = gym.make(fid).get_wrapper_attr("set_task")
    for t in train + test:
        set_task(t)


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_disjoint_split_flag(fid):
    assert family_class(fid).DISJOINT_SPLIT is (fid != DIR)


@pytest.mark.parametrize("fid", [f for f in FAMILY_IDS if f != DIR])
def test_splits_are_disjoint_and_tasks_distinct(fid):
    train, test = me.task_split(fid)
    assert set(train) & set(test) == set()
    assert len(set(train)) == len(train)
    assert len(set(test)) == len(test)
    # Also disjoint by value after a JSON round trip.
    assert set(as_json(train)) & set(as_json(test)) == set()


def test_half_cheetah_dir_split_holds_both_directions_in_both_splits():
    train, test = me.task_split(DIR)
    assert train == test
    assert sorted(t.goal_value("direction")[0] for t in train) == [-1.0, 1.0]


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_split_is_frozen(fid):
    train, test = me.task_split(fid)
    train2, test2 = me.task_split(fid)
    assert (train, test) == (train2, test2)
    assert as_json(train) == as_json(train2)
    assert as_json(test) == as_json(test2)
    # The returned lists are the caller's: mutating them does not change the split.
    train2.clear()
    test2.append(train[0])
    assert me.task_split(fid) == (train, test)


def test_split_is_the_same_in_another_process(tmp_path):
    fids = [FAMILY_IDS[0], "metarobot/AntCrippled-v0", "metarobot/ReacherRandParams-v0"]
    code = (
        "import json, metarobot.envs as me\n"
        f"fids = {fids!r}\n"
        "print(json.dumps({f: [[t.to_json() for t in s] for s in me.task_split(f)] "
        "for f in fids}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=tmp_path,
    ).stdout
    other = json.loads(out.strip().splitlines()[-1])
    for f in fids:
        assert other[f] == [[t.to_json() for t in s] for s in me.task_split(f)]


@pytest.mark.parametrize("fid", FAMILY_IDS)
def test_split_differs_between_families(fid):
    train = me.task_split(fid)[0]
    for other in FAMILY_IDS:
        if other != fid:
            assert set(train).isdisjoint(me.task_split(other)[0])


def test_ant_crippled_split_follows_grbal():
    train, test = me.task_split("metarobot/AntCrippled-v0")
    for t in train:
        assert len(t.disabled_actuators) == 2
        assert set(t.disabled_actuators) <= set(range(6))
        assert t.disabled_actuators in {(0, 1), (2, 3), (4, 5)}
    # Every training leg shows up in 40 tasks.
    assert {t.disabled_actuators for t in train} == {(0, 1), (2, 3), (4, 5)}
    for t in test:
        assert t.disabled_actuators == (6, 7)


def test_half_cheetah_crippled_split_never_tests_a_trained_joint():
    train, test = me.task_split("metarobot/HalfCheetahCrippled-v0")
    assert {t.disabled_actuators for t in train} == {(0,), (1,), (2,), (3,)}
    assert {t.disabled_actuators for t in test} <= {(4,), (5,)}


def test_custom_sizes():
    fid = "metarobot/ReacherRandParams-v0"
    train, test = me.task_split(fid, n_train=5, n_test=3)
    assert (len(train), len(test)) == (5, 3)
    assert set(train).isdisjoint(test)
    assert me.task_split(fid, 5, 3) == (train, test)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", None, True])
@pytest.mark.parametrize("which", ["n_train", "n_test"])
def test_bad_counts_raise(bad, which):
    with pytest.raises(ValueError, match=which):
        me.task_split(FAMILY_IDS[0], **{which: bad})


@pytest.mark.parametrize("bad_id", ["HalfCheetah-v5", "CartPole-v1", "", "metarobot"])
def test_non_family_id_raises(bad_id):
    with pytest.raises(ValueError):
        me.task_split(bad_id)


# An id nobody registered is a ValueError naming it, in any namespace.
@pytest.mark.parametrize("bad_id", ["metarobot/NoSuchFamily-v0", "user/NoSuchFamily-v0"])
def test_unregistered_id_raises_value_error_naming_it(bad_id):
    with pytest.raises(ValueError, match=bad_id):
        me.task_split(bad_id)


# ---------------------------------------------------------------------------- user families
USER_ID = "test_splits/SwimmerRand-v0"
REGISTER = (
    "import gymnasium as gym, metarobot.envs as me\n"
    f"gym.register({USER_ID!r}, entry_point=lambda **kw: me.RandomizedDynamics("
    "gym.make('Swimmer-v5', max_episode_steps=200), body_mass=me.LogUniform(0.5, 2.0, "
    "per_element=True), dof_damping=(0.5, 2.0)))\n"
)


@pytest.fixture(scope="module")
def user_family():
    exec(REGISTER, {})  # the same registration the subprocess test runs
    yield USER_ID
    del gym.registry[USER_ID]


def test_user_family_has_a_40_10_split_drawn_from_its_specs(user_family):
    train, test = me.task_split(user_family)
    assert (len(train), len(test)) == (40, 10)
    assert set(train).isdisjoint(test)
    rd = me.find_randomized(gym.make(user_family))
    for t in train + test:
        rd.validate_task(t)
        assert set(dict(t.scales)) == {"body_mass", "dof_damping"}
    assert me.task_split(user_family) == (train, test)


def test_user_family_split_is_the_same_in_another_process(user_family, tmp_path):
    code = REGISTER + (
        f"print(' '.join(t.to_json() for s in me.task_split({USER_ID!r}) for t in s))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "999"},
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    mine = " ".join(t.to_json() for s in me.task_split(user_family) for t in s)
    assert out.splitlines()[-1] == mine


def test_check_family_accepts_registered_randomized_ids(user_family):
    for fid in (*FAMILY_IDS, user_family):
        assert me.check_family(fid) is None


@pytest.mark.parametrize("bad_id", ["HalfCheetah-v5", "CartPole-v1", "user/Nope-v0", ""])
def test_check_family_refuses_ids_without_a_task_distribution(bad_id):
    with pytest.raises(ValueError, match=f"env_id {bad_id!r}"):
        me.check_family(bad_id)
