"""Bit parity of the batched simulator with Gymnasium's own envs, over whole episodes.

World i of ``make_batched(id, tasks).reset(seed=s)`` equals ``gym.make(id)`` reset with seed
``s + i`` and task i: same observations, rewards and episode ends, bit for bit, until the episode
ends — for every family, on both the kernel path and the generic path, and for Gymnasium robots
the project does not ship. Exact equality is what the simulator guarantees on any CPU (see
test_batched.py): nothing here passes through a matrix multiply whose rounding depends on N.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import metarobot.envs as me

SEED = 7
UNSHIPPED = {
    "test_parity/SwimmerRand-v0": ("Swimmer-v5", 150),
    "test_parity/PusherRand-v0": ("Pusher-v5", 100),
}


def _register_unshipped():
    for uid, (base_id, horizon) in UNSHIPPED.items():
        if uid not in gym.registry:
            gym.register(
                uid,
                entry_point=lambda base_id=base_id, horizon=horizon, **kw: me.RandomizedDynamics(
                    gym.make(base_id, max_episode_steps=horizon, **kw),
                    body_mass=me.LogUniform(0.5, 2.0, per_element=True),
                    dof_damping=(0.5, 2.0),
                    geom_friction=(0.5, 1.5),
                ),
            )


_register_unshipped()


def whole_episode_parity(env_id, tasks, seed=SEED, **kwargs):
    """Step batched and single envs with the same random actions until every episode ended."""
    venv = me.make_batched(env_id, tasks, nthread=2, **kwargs)
    singles = [gym.make(env_id) for _ in tasks]
    obs, _ = venv.reset(seed=seed)
    for i, env in enumerate(singles):
        s_obs, _ = env.reset(seed=seed + i, options={"task": tasks[i]})
        np.testing.assert_array_equal(obs[i], s_obs, err_msg=f"world {i} reset")
    rng = np.random.default_rng(seed)
    space = venv.single_action_space
    alive = np.ones(len(tasks), dtype=bool)
    steps = 0
    while alive.any():
        a = rng.uniform(space.low, space.high, (len(tasks), *space.shape)).astype(np.float32)
        v_obs, v_rew, v_term, v_trunc, _ = venv.step(a)
        for i in np.flatnonzero(alive):
            s_obs, s_rew, s_term, s_trunc, _ = singles[i].step(a[i])
            msg = f"{env_id} world {i} step {steps}"
            np.testing.assert_array_equal(v_obs[i], s_obs, err_msg=msg)
            assert v_rew[i] == s_rew, msg
            assert (bool(v_term[i]), bool(v_trunc[i])) == (s_term, s_trunc), msg
            if s_term or s_trunc:
                alive[i] = False
        steps += 1
    venv.close()
    return steps


@pytest.mark.parametrize("path", ["kernel", "generic"])
@pytest.mark.parametrize("fid", me.FAMILY_IDS)
def test_family_whole_episode_bit_parity(fid, path):
    tasks = me.task_split(fid)[0][:2]
    use_kernel = None if path == "kernel" else False
    steps = whole_episode_parity(fid, tasks, use_kernel=use_kernel)
    assert 1 <= steps <= gym.spec(fid).max_episode_steps


@pytest.mark.parametrize("uid", sorted(UNSHIPPED))
def test_unshipped_robot_whole_episode_bit_parity(uid):
    tasks = me.task_split(uid)[0][:2]
    assert whole_episode_parity(uid, tasks) == UNSHIPPED[uid][1]


@pytest.mark.parametrize(
    "fid", ["metarobot/HalfCheetahRandParams-v0", "test_parity/SwimmerRand-v0"]
)
def test_kernel_and_generic_paths_agree(fid):
    tasks = me.task_split(fid)[1][:2]
    envs = [me.make_batched(fid, tasks, nthread=1, use_kernel=k) for k in (True, False)]
    assert envs[0].kernel is not None and envs[1].kernel is None
    outs = [e.reset(seed=3)[0] for e in envs]
    np.testing.assert_array_equal(*outs)
    rng = np.random.default_rng(0)
    for _ in range(60):
        a = rng.uniform(-1, 1, envs[0].action_space.shape)
        got = [e.step(a)[:4] for e in envs]
        for x, y in zip(*got, strict=True):
            np.testing.assert_array_equal(x, y)


def test_an_action_transforming_env_stays_exact_on_the_generic_path():
    class HalvingSwimmer(gym.envs.mujoco.swimmer_v5.SwimmerEnv):
        def do_simulation(self, ctrl, n_frames):
            super().do_simulation(0.5 * np.asarray(ctrl), n_frames)

    uid = "test_parity/HalvingSwimmer-v0"
    gym.register(uid, entry_point=lambda **kw: HalvingSwimmer(**kw), max_episode_steps=30)
    try:
        tasks = [me.Task.make(uid)] * 2
        venv = me.make_batched(uid, num_envs=2, nthread=1)
        assert venv.kernel is None
        venv.close()
        assert whole_episode_parity(uid, tasks) == 30
    finally:
        del gym.registry[uid]
