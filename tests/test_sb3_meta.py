"""SB3 models in metarobot's adaptation and meta-learning: adapt(SB3), task schedules, Reptile."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import metarobot
import metarobot.envs as me
from metarobot.sb3 import SB3Reptile, TaskScheduleCallback, from_sb3

FAMILY = "metarobot/InvertedPendulumRandParams-v0"


def _actor(model):
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


def test_adapt_accepts_sb3_and_returns_same_type():
    task = me.task_split(FAMILY)[1][0]
    env = gym.make(FAMILY)
    env.get_wrapper_attr("set_task")(task)
    model = PPO("MlpPolicy", env, device="cpu", seed=0)
    before = _actor(model)
    # safe=False: this checks the bridge applies the update (the safeguard may reject it)
    adapted = metarobot.adapt(model, env, episodes=2, seed=0, lr=0.05, safe=False)
    assert type(adapted) is PPO
    after = _actor(model)
    assert all(torch.equal(before[k], after[k]) for k in before), "input model untouched"
    new = _actor(adapted)
    assert not torch.equal(new["action_net.weight"], before["action_net.weight"])
    assert torch.equal(new["value_net.weight"], before["value_net.weight"]), "critic copied"
    # The SB3 result acts exactly like the metarobot adaptation of the same policy.
    ref = metarobot.adapt(from_sb3(model), env, episodes=2, seed=0, lr=0.05, safe=False)
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    sb3_act, _ = adapted.predict(obs, deterministic=True)
    np.testing.assert_allclose(sb3_act, np.clip(ref.act(obs, deterministic=True), -3, 3), atol=1e-5)


def test_adapt_rejects_unsupported_objects():
    with pytest.raises(ValueError, match="policy must be"):
        metarobot.adapt(object(), FAMILY, task=me.task_split(FAMILY)[1][0])


@pytest.mark.parametrize("vec_cls", [DummyVecEnv, SubprocVecEnv])
def test_task_schedule_switches_tasks(vec_cls):
    # "module:id" makes subprocess workers import metarobot.envs (which registers the ids).
    venv = vec_cls([lambda: gym.make(f"metarobot.envs:{FAMILY}") for _ in range(2)])
    try:
        cb = TaskScheduleCallback(every=256, seed=0)
        PPO("MlpPolicy", venv, n_steps=128, device="cpu", seed=0).learn(1024, callback=cb)
        assert cb.switches >= 4
        train = set(me.task_split(FAMILY)[0])
        tasks = venv.env_method("get_task")
        assert all(t in train for t in tasks), "tasks come from the frozen training split"
    finally:
        venv.close()


def test_task_schedule_bad_period():
    with pytest.raises(ValueError, match="every"):
        TaskScheduleCallback(every=0)


def test_domain_randomization_in_dummy_vec_env_is_seeded():
    def run():
        venv = DummyVecEnv([lambda: gym.make(FAMILY, resample_on_reset=True) for _ in range(3)])
        venv.seed(7)
        venv.reset()
        first = venv.env_method("get_wrapper_attr", "active_task")
        for _ in range(60):  # episodes end quickly: several resets, each drawing a task
            venv.step(np.zeros((3, 1), dtype=np.float32))
        later = venv.env_method("get_wrapper_attr", "active_task")
        venv.close()
        return first, later

    a, b = run(), run()
    assert a == b, "same seeds, same task draws"
    assert len(set(a[0])) == 3, "each env draws its own task"
    assert a[0] != a[1], "tasks are redrawn at resets"


@pytest.mark.parametrize("algo", [PPO, SAC])
def test_sb3_reptile_runs_and_moves_parameters(algo):
    kw = {"n_steps": 128} if algo is PPO else {"learning_starts": 50}
    r = SB3Reptile(
        algo,
        FAMILY,
        meta_batch=2,
        inner_timesteps=200,
        n_envs=2 if algo is PPO else 1,
        epsilon=0.5,
        seed=0,
        **kw,
    )
    before = _actor(r.model)
    model = r.learn(1)
    assert isinstance(model, algo)
    after = _actor(model)
    moved = [
        k
        for k in before
        if torch.is_floating_point(before[k]) and not torch.equal(before[k], after[k])
    ]
    assert moved, "the outer step moves the meta-parameters"
    assert r.iterations == 1


def test_sb3_reptile_epsilon_one_single_task_equals_inner_model(monkeypatch):
    import metarobot.sb3 as sb3mod

    inner_models = []
    orig = sb3mod.clone_sb3

    def spy(model, env=None):
        m = orig(model, env)
        inner_models.append(m)
        return m

    monkeypatch.setattr(sb3mod, "clone_sb3", spy)
    r = SB3Reptile(
        PPO, FAMILY, meta_batch=1, inner_timesteps=128, n_envs=1, epsilon=1.0, n_steps=128, seed=0
    )
    model = r.learn(1)
    inner = _actor(inner_models[-1])
    outer = _actor(model)
    for k, v in inner.items():
        if torch.is_floating_point(v):
            torch.testing.assert_close(outer[k], v)


def test_sb3_reptile_bad_arguments():
    with pytest.raises(ValueError, match="algo_class"):
        SB3Reptile(object, FAMILY)
    with pytest.raises(ValueError, match="epsilon"):
        SB3Reptile(PPO, FAMILY, epsilon=2.0)
    with pytest.raises(ValueError, match="meta_batch"):
        SB3Reptile(PPO, FAMILY, meta_batch=0)
