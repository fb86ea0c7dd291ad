"""BatchedMujocoEnv: N worlds through mujoco.batch, checked against Gymnasium's own envs.

Every comparison is exact (bit for bit), which the simulator guarantees on any CPU: each world
is its own MuJoCo computation on its own data (``mujoco.batch`` documents bit-identity with a
loop over one MjData per world), and the vectorized kernels apply the same float64 operations
in the same order as Gymnasium's per-env code. Whole-episode parity per family is in
test_parity.py.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import metarobot.envs as me

FAMILY_IDS = me.FAMILY_IDS
REACHER = "metarobot/ReacherRandParams-v0"
PENDULUM = "metarobot/InvertedPendulumRandParams-v0"


def train_tasks(fid, n=3):
    return me.task_split(fid)[0][:n]


def random_actions(space, n_steps, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(space.low, space.high, size=(n_steps, *space.shape)).astype(np.float32)


def sync_reference(fid, tasks, mode=AutoresetMode.NEXT_STEP, **make_kwargs):
    """Gymnasium's own SyncVectorEnv over single family envs, world i running tasks[i]."""

    def maker(task):
        def make():
            env = gym.make(fid, **make_kwargs)
            env.get_wrapper_attr("set_task")(task)
            return env

        return make

    return SyncVectorEnv([maker(t) for t in tasks], autoreset_mode=mode)


def assert_step_close(got, ref, k):
    obs, rew, term, trunc, _ = got
    r_obs, r_rew, r_term, r_trunc, _ = ref
    np.testing.assert_array_equal(obs, r_obs, err_msg=f"obs at step {k}")
    np.testing.assert_array_equal(rew, r_rew, err_msg=f"reward at step {k}")
    np.testing.assert_array_equal(term, r_term, err_msg=f"terminations at step {k}")
    np.testing.assert_array_equal(trunc, r_trunc, err_msg=f"truncations at step {k}")


# ---------------------------------------------------------------------------- seeds
def test_per_world_seed_list():
    tasks = train_tasks(REACHER)
    venv = me.make_batched(REACHER, tasks, nthread=1)
    obs, _ = venv.reset(seed=[11, 3, 7])
    for i, s in enumerate([11, 3, 7]):
        s_obs, _ = gym.make(REACHER).reset(seed=s, options={"task": tasks[i]})
        np.testing.assert_array_equal(obs[i], s_obs)
    with pytest.raises(ValueError, match="seed"):
        venv.reset(seed=[1, 2])


@pytest.mark.parametrize("fid", [PENDULUM, REACHER, "metarobot/HopperRandParams-v0"])
def test_next_step_autoreset_matches_sync_vector_env(fid):
    tasks = train_tasks(fid)
    venv = me.make_batched(fid, tasks, nthread=2)
    ref = sync_reference(fid, tasks)
    np.testing.assert_array_equal(venv.reset(seed=0)[0], ref.reset(seed=0)[0])
    n_steps = 60 if fid == REACHER else 30
    ends = 0
    for k, a in enumerate(random_actions(venv.action_space, n_steps, seed=1)):
        got, exp = venv.step(a), ref.step(a)
        assert_step_close(got, exp, k)
        ends += int(np.sum(exp[2] | exp[3]))
    assert ends > 0, "no episode ended: autoreset untested"


def test_time_limit_and_next_step_autoreset_semantics():
    tasks = train_tasks(REACHER, 2)
    venv = me.make_batched(REACHER, tasks, nthread=1)
    assert venv.max_episode_steps == 50
    venv.reset(seed=0)
    singles = [gym.make(REACHER) for _ in tasks]
    for i, env in enumerate(singles):
        env.reset(seed=i, options={"task": tasks[i]})
    acts = random_actions(venv.action_space, 53, seed=2)
    for k in range(1, 51):
        obs, rew, term, trunc, _ = venv.step(acts[k - 1])
        assert not term.any()
        assert trunc.all() == (k == 50)
        assert trunc.any() == (k == 50)
    # Step 51: each world returns its reset observation, reward 0, not done; actions ignored.
    obs, rew, term, trunc, _infos = venv.step(acts[50])
    for i, env in enumerate(singles):
        s_obs, s_info = env.reset()
        np.testing.assert_array_equal(obs[i], s_obs)
        assert s_info["task"] == tasks[i]
    np.testing.assert_array_equal(rew, 0.0)
    assert not term.any()
    assert not trunc.any()
    assert venv.get_tasks() == tasks
    # Then the new episode runs like the single env.
    for k in (51, 52):
        obs, rew, term, trunc, _ = venv.step(acts[k])
        for i, env in enumerate(singles):
            s_obs, s_rew, *_ = env.step(acts[k][i])
            np.testing.assert_array_equal(obs[i], s_obs)
            assert rew[i] == s_rew


def test_max_episode_steps_override():
    venv = me.make_batched(REACHER, train_tasks(REACHER, 2), nthread=1, max_episode_steps=4)
    venv.reset(seed=0)
    zeros = np.zeros(venv.action_space.shape, dtype=np.float32)
    truncs = [venv.step(zeros)[3].copy() for _ in range(5)]
    assert [t.all() for t in truncs] == [False, False, False, True, False]


def test_same_step_autoreset_gives_final_obs():
    tasks = train_tasks(REACHER, 3)
    venv = me.make_batched(
        REACHER, tasks, nthread=1, autoreset_mode="same_step", max_episode_steps=5
    )
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    ref = sync_reference(REACHER, tasks, mode=AutoresetMode.SAME_STEP, max_episode_steps=5)
    venv.reset(seed=3)
    ref.reset(seed=3)
    for k, a in enumerate(random_actions(venv.action_space, 12, seed=0)):
        got, exp = venv.step(a), ref.step(a)
        assert_step_close(got, exp, k)
        done = (k + 1) % 5 == 0
        infos, r_infos = got[4], exp[4]
        assert ("final_obs" in infos) == done
        if done:
            np.testing.assert_array_equal(infos["_final_obs"], [True] * 3)
            for i in range(3):
                np.testing.assert_array_equal(infos["final_obs"][i], r_infos["final_obs"][i])
                # The returned observation is the new episode's first one.
                assert not np.allclose(infos["final_obs"][i], got[0][i])


def test_same_step_autoreset_on_termination():
    tasks = train_tasks(PENDULUM, 3)
    venv = me.make_batched(PENDULUM, tasks, nthread=1, autoreset_mode="same_step")
    ref = sync_reference(PENDULUM, tasks, mode=AutoresetMode.SAME_STEP)
    venv.reset(seed=0)
    ref.reset(seed=0)
    seen = 0
    for k, a in enumerate(random_actions(venv.action_space, 40, seed=0)):
        got, exp = venv.step(a), ref.step(a)
        assert_step_close(got, exp, k)
        if "final_obs" in exp[4]:
            mask = exp[4]["_final_obs"]
            np.testing.assert_array_equal(got[4]["_final_obs"], mask)
            for i in np.flatnonzero(mask):
                np.testing.assert_allclose(got[4]["final_obs"][i], exp[4]["final_obs"][i])
                seen += 1
    assert seen > 0


def test_disabled_autoreset_and_reset_mask():
    tasks = train_tasks(REACHER, 2)
    venv = me.make_batched(
        REACHER, tasks, nthread=1, autoreset_mode="disabled", max_episode_steps=3
    )
    _obs0, _ = venv.reset(seed=0)
    zeros = np.zeros(venv.action_space.shape, dtype=np.float32)
    for _ in range(3):
        obs, *_ = venv.step(zeros)
    single = gym.make(REACHER)
    single.reset(seed=1, options={"task": tasks[1]})
    s_reset, _ = single.reset()
    obs2, info = venv.reset(options={"reset_mask": np.array([False, True])})
    np.testing.assert_array_equal(obs2[0], obs[0])  # untouched
    np.testing.assert_array_equal(obs2[1], s_reset)
    np.testing.assert_array_equal(info["_task"], [False, True])
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": [True]})


# ---------------------------------------------------------------------------- tasks
def test_reset_with_tasks_switches_tasks():
    fid = "metarobot/HalfCheetahRandParams-v0"
    old, new = me.task_split(fid)[0][:3], me.task_split(fid)[0][3:6]
    venv = me.make_batched(fid, old, nthread=2)
    venv.reset(seed=0)
    venv.step(random_actions(venv.action_space, 1, seed=0)[0])
    obs, info = venv.reset(seed=4, options={"tasks": new})
    assert list(info["task"]) == new
    assert venv.get_tasks() == new
    singles = [gym.make(fid) for _ in new]
    for i, env in enumerate(singles):
        np.testing.assert_array_equal(obs[i], env.reset(seed=4 + i, options={"task": new[i]})[0])
    for a in random_actions(venv.action_space, 10, seed=1):
        v_obs, v_rew, *_ = venv.step(a)
        for i, env in enumerate(singles):
            s_obs, s_rew, *_ = env.step(a[i])
            np.testing.assert_array_equal(v_obs[i], s_obs)
            assert v_rew[i] == s_rew
    # One task for every world.
    _, info = venv.reset(options={"task": new[0]})
    assert list(info["task"]) == [new[0]] * 3
    assert venv.get_tasks() == [new[0]] * 3


def test_set_tasks_takes_effect_at_each_worlds_next_reset():
    tasks, later = train_tasks(REACHER, 2), me.task_split(REACHER)[0][5:7]
    venv = me.make_batched(REACHER, tasks, nthread=1)
    ref = sync_reference(REACHER, tasks)
    venv.reset(seed=0)
    ref.reset(seed=0)
    for k, a in enumerate(random_actions(venv.action_space, 70, seed=0)):
        if k == 20:
            venv.set_tasks(later)
            for env, t in zip(ref.envs, later, strict=True):
                env.get_wrapper_attr("set_task")(t)
            assert venv.get_tasks() == later
        assert_step_close(venv.step(a), ref.step(a), k)
    assert [w.get_wrapper_attr("active_task") for w in ref.envs] == later


def test_wrong_number_of_tasks_raises():
    tasks = train_tasks(REACHER, 3)
    venv = me.make_batched(REACHER, tasks, nthread=1)
    with pytest.raises(ValueError, match=r"num_envs=3.*got 2"):
        venv.set_tasks(tasks[:2])
    with pytest.raises(ValueError, match=r"num_envs=3.*got 4"):
        venv.set_tasks([*tasks, tasks[0]])
    with pytest.raises(ValueError, match=r"num_envs=3.*got 2"):
        venv.reset(options={"tasks": tasks[:2]})
    assert venv.get_tasks() == tasks
    with pytest.raises(ValueError, match="num_envs"):
        me.make_batched(REACHER, tasks, num_envs=5)
    with pytest.raises(ValueError):
        me.make_batched(REACHER, [])
    with pytest.raises(ValueError, match="unknown reset option"):
        venv.reset(options={"taks": tasks})


def test_task_of_another_family_raises():
    tasks = train_tasks(REACHER, 2)
    foreign = dataclasses.replace(tasks[1], family=PENDULUM)
    with pytest.raises(ValueError, match="family"):
        me.make_batched(REACHER, [tasks[0], foreign])
    venv = me.make_batched(REACHER, tasks, nthread=1)
    with pytest.raises(ValueError, match="family"):
        venv.set_tasks([tasks[1], foreign])
    assert venv.get_tasks() == tasks  # nothing applied
    with pytest.raises(ValueError, match="family"):
        venv.reset(options={"tasks": [tasks[0], foreign]})
    with pytest.raises(ValueError, match="family"):
        venv.reset(options={"task": me.task_split(PENDULUM)[0][0]})


@pytest.mark.parametrize("shape_delta", [(0, 1), (-1, 0), (1, 0), None])
def test_wrong_action_shape_raises(shape_delta):
    venv = me.make_batched(REACHER, train_tasks(REACHER, 2), nthread=1)
    venv.reset(seed=0)
    n, nu = venv.action_space.shape
    if shape_delta is None:
        acts = np.zeros(nu, dtype=np.float32)  # a single env's action
    else:
        acts = np.zeros((n + shape_delta[0], nu + shape_delta[1]), dtype=np.float32)
    with pytest.raises(ValueError, match="shape"):
        venv.step(acts)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"autoreset_mode": "sometimes"},
        {"nthread": -1},
        {"nthread": 1.5},
        {"max_episode_steps": 0},
        {"use_kernel": "yes"},
        {"persistent": 1},
        {"use_kernel": False, "persistent": False},
    ],
)
def test_bad_constructor_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        me.make_batched(REACHER, train_tasks(REACHER, 2), **kwargs)


# ---------------------------------------------------------------------------- gymnasium
def test_make_vec_vector_entry_point():
    venv = gym.make_vec(REACHER, 3, vectorization_mode="vector_entry_point")
    assert isinstance(venv, gym.vector.VectorEnv)
    assert isinstance(venv, me.BatchedMujocoEnv)
    assert venv.num_envs == 3
    assert venv.get_tasks() == train_tasks(REACHER, 3)
    obs, _info = venv.reset(seed=0)
    assert obs.shape == (3, *gym.make(REACHER).observation_space.shape)
    assert venv.observation_space.contains(obs)
    obs, rew, term, trunc, _ = venv.step(venv.action_space.sample())
    assert obs.shape == venv.observation_space.shape
    assert rew.shape == term.shape == trunc.shape == (3,)
    venv.close()
    # Arguments reach BatchedMujocoEnv as make_vec keyword arguments.
    venv = gym.make_vec(
        PENDULUM, 2, vectorization_mode="vector_entry_point", nthread=1, max_episode_steps=7
    )
    assert venv.num_envs == 2
    assert venv.max_episode_steps == 7
    venv.reset(seed=0)
    venv.close()


def test_is_a_gymnasium_vector_env():
    tasks = train_tasks(REACHER, 3)
    venv = me.make_batched(REACHER, tasks, nthread=1)
    single = gym.make(REACHER)
    assert isinstance(venv, gym.vector.VectorEnv)
    assert venv.num_envs == 3
    assert venv.single_observation_space == single.observation_space
    assert venv.single_action_space == single.action_space
    assert venv.observation_space.shape == (3, *single.observation_space.shape)
    assert venv.action_space.shape == (3, *single.action_space.shape)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert venv.unwrapped is venv
    assert venv.sample_tasks(4, seed=1) == single.get_wrapper_attr("sample_tasks")(4, seed=1)
    obs, _info = venv.reset(seed=0)
    assert venv.observation_space.contains(obs)
    obs, rew, term, trunc, _infos = venv.step(venv.action_space.sample())
    assert venv.observation_space.contains(obs)
    assert rew.dtype == np.float64
    assert term.dtype == trunc.dtype == np.bool_
    venv.close()
    assert venv.closed


@pytest.mark.parametrize("fid", [PENDULUM, "metarobot/HalfCheetahCrippled-v0"])
def test_determinism(fid):
    tasks = train_tasks(fid)

    def trajectory(nthread, **kwargs):
        venv = me.make_batched(fid, tasks, nthread=nthread, **kwargs)
        out = [venv.reset(seed=21)[0]]
        for a in random_actions(venv.action_space, 40, seed=8):
            obs, rew, term, trunc, _ = venv.step(a)
            out += [obs, rew, term, trunc]
        venv.close()
        return out

    first = trajectory(2)
    # Same seed: same trajectory, whatever the thread count, data layout or path.
    for other in (
        trajectory(2),
        trajectory(1),
        trajectory(2, persistent=True),
        trajectory(1, use_kernel=False),
    ):
        assert len(other) == len(first)
        for x, y in zip(first, other, strict=True):
            np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "fid,kwargs",
    [
        (
            "metarobot/HopperRandParams-v0",
            {
                "exclude_current_positions_from_observation": False,
                "healthy_reward": 2.0,
                "ctrl_cost_weight": 0.01,
            },
        ),
        ("metarobot/HalfCheetahVel-v0", {"exclude_current_positions_from_observation": False}),
        (
            "metarobot/AntDir-v0",
            {"exclude_current_positions_from_observation": False, "healthy_z_range": (0.3, 0.9)},
        ),
        ("metarobot/ReacherRandParams-v0", {"reward_dist_weight": 2.0}),
    ],
)
def test_env_kwargs_reach_every_world_and_the_kernel(fid, kwargs):
    tasks = train_tasks(fid, 2)
    venv = me.make_batched(fid, tasks, nthread=1, **kwargs)
    ref = sync_reference(fid, tasks, **kwargs)
    obs, _ = venv.reset(seed=1)
    np.testing.assert_array_equal(obs, ref.reset(seed=1)[0])
    assert venv.single_observation_space == ref.single_observation_space
    for k, a in enumerate(random_actions(venv.action_space, 20, seed=2)):
        assert_step_close(venv.step(a), ref.step(a), k)


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
@pytest.mark.parametrize("fid", ["metarobot/HalfCheetahVel-v0", REACHER])
def test_resample_on_reset_matches_sync_vector_env(fid, mode):
    # Domain randomization: every (auto)reset draws a new task; goals follow at autoreset.
    venv = me.make_batched(
        fid,
        num_envs=3,
        nthread=1,
        resample_on_reset=True,
        max_episode_steps=5,
        autoreset_mode=mode,
    )
    ref_mode = AutoresetMode.NEXT_STEP if mode == "next_step" else AutoresetMode.SAME_STEP
    ref = SyncVectorEnv(
        [lambda: gym.make(fid, resample_on_reset=True, max_episode_steps=5)] * 3,
        autoreset_mode=ref_mode,
    )
    obs, info = venv.reset(seed=0)
    r_obs, r_info = ref.reset(seed=0)
    np.testing.assert_array_equal(obs, r_obs)
    assert list(info["task"]) == list(r_info["task"])
    first = venv.get_tasks()
    assert len(set(first)) == 3
    for k, a in enumerate(random_actions(venv.action_space, 22, seed=0)):
        assert_step_close(venv.step(a), ref.step(a), k)
    assert venv.get_tasks() == [e.get_wrapper_attr("active_task") for e in ref.envs]
    assert set(venv.get_tasks()).isdisjoint(first)


@pytest.mark.parametrize(
    "env_id", ["Swimmer-v5", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "InvertedPendulum-v5"]
)
def test_plain_gymnasium_id_matches_gym_make(env_id):
    venv = me.make_batched(env_id, num_envs=2, nthread=1)
    ref = SyncVectorEnv([lambda: gym.make(env_id)] * 2)
    np.testing.assert_array_equal(venv.reset(seed=0)[0], ref.reset(seed=0)[0])
    for k, a in enumerate(random_actions(venv.action_space, 20, seed=0)):
        assert_step_close(venv.step(a), ref.step(a), k)


@pytest.mark.parametrize("env_id", ["Ant-v5", "Reacher-v5", "Pusher-v5"])
def test_robots_without_kernel_take_the_generic_path_and_match_gym_make(env_id):
    venv = me.make_batched(env_id, num_envs=2, nthread=1)
    assert venv.kernel is None
    ref = SyncVectorEnv([lambda: gym.make(env_id)] * 2)
    np.testing.assert_array_equal(venv.reset(seed=0)[0], ref.reset(seed=0)[0])
    for k, a in enumerate(random_actions(venv.action_space, 10, seed=0)):
        assert_step_close(venv.step(a), ref.step(a), k)


def test_use_kernel_true_without_a_kernel_raises():
    with pytest.raises(ValueError, match="use_kernel"):
        me.make_batched("Pusher-v5", num_envs=1, nthread=1, use_kernel=True)


# ---------------------------------------------------------------------------- engines, accessors
def test_worlds_accessor_is_a_read_only_tuple_of_the_randomized_layers():
    tasks = train_tasks(REACHER, 2)
    venv = me.make_batched(REACHER, tasks, nthread=1)
    assert isinstance(venv.worlds, tuple)
    assert len(venv.worlds) == 2
    assert all(isinstance(w, me.RandomizedDynamics) for w in venv.worlds)
    assert [w.get_task() for w in venv.worlds] == tasks
    assert list(venv.worlds) == venv._worlds
    with pytest.raises(AttributeError):
        venv.worlds = ()
    venv.close()


def test_unknown_engine_raises_naming_engine():
    with pytest.raises(ValueError, match=r"engine.*batch.*warp"):
        me.make_batched(REACHER, train_tasks(REACHER, 1), engine="rollout")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "gpu"])
def test_batch_engine_refuses_a_gpu_device(device):
    with pytest.raises(ValueError, match="device"):
        me.make_batched(REACHER, train_tasks(REACHER, 1), device=device)


def test_batch_engine_accepts_cpu_device():
    venv = me.make_batched(REACHER, train_tasks(REACHER, 1), device="cpu", nthread=1)
    assert isinstance(venv, me.BatchedMujocoEnv)
    venv.close()


def test_warp_engine_is_imported_lazily_and_given_every_argument(monkeypatch):
    import sys
    import types

    calls = []

    class FakeWarp:
        def __init__(self, env_id, tasks, **kwargs):
            calls.append((env_id, tasks, kwargs))

    module = types.ModuleType("metarobot.envs.warp")
    module.WarpBatchedEnv = FakeWarp
    monkeypatch.setitem(sys.modules, "metarobot.envs.warp", module)
    tasks = train_tasks(REACHER, 2)
    env = me.make_batched(REACHER, tasks, engine="warp", device="cuda:0", autoreset_mode="disabled")
    assert isinstance(env, FakeWarp)
    assert calls == [(REACHER, tasks, {"device": "cuda:0", "autoreset_mode": "disabled"})]


def test_disabled_autoreset_leaves_ended_worlds_alone():
    env = me.make_batched(
        "metarobot/HalfCheetahRandParams-v0",
        num_envs=2,
        autoreset_mode="disabled",
        max_episode_steps=3,
        nthread=1,
    )
    try:
        env.reset(seed=0)
        for _ in range(3):
            obs, _, _, trunc, _ = env.step(np.ones((2, 6)))
        assert trunc.all()
        state = env._batch.state.copy()
        obs2, rew2, term2, trunc2, _ = env.step(np.ones((2, 6)))
        np.testing.assert_array_equal(env._batch.state, state)  # not simulated
        np.testing.assert_array_equal(obs2, obs)
        assert not rew2.any() and not term2.any() and not trunc2.any()
        env.reset(seed=0, options={"reset_mask": np.array([True, False])})
        obs3, _, _, _, _ = env.step(np.ones((2, 6)))
        assert not np.array_equal(obs3[0], obs2[0]) and np.array_equal(obs3[1], obs2[1])
    finally:
        env.close()
