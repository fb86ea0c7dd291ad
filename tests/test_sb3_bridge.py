"""The SB3 bridge: from_sb3 / to_sb3 and the batched simulator as an SB3 VecEnv."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

import metarobot
import metarobot.envs as me
from metarobot.sb3 import SB3VecEnv, from_sb3, make_sb3_vec_env, to_sb3

PENDULUM = "metarobot/InvertedPendulumRandParams-v0"
REACHER = "metarobot/ReacherRandParams-v0"


def randomize_actor(model, seed: int, scale: float = 0.7) -> None:
    """Give an SB3 actor large random weights, so actions are far from 0 (and some clip)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [
            *model.policy.mlp_extractor.policy_net.parameters(),
            *model.policy.action_net.parameters(),
        ]:
            p.copy_(torch.randn(p.shape, generator=gen) * scale)


def pendulum_obs(n: int = 64, seed: int = 0) -> np.ndarray:
    """Observations visited by random actions in plain InvertedPendulum-v5."""
    env = gym.make("InvertedPendulum-v5")
    rng = np.random.default_rng(seed)
    out = []
    obs, _ = env.reset(seed=seed)
    while len(out) < n:
        out.append(obs)
        obs, _, term, trunc, _ = env.step(rng.uniform(-3, 3, size=1).astype(np.float32))
        if term or trunc:
            obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
    env.close()
    return np.asarray(out, dtype=np.float32)


# ---------------------------------------------------------------- from_sb3


@pytest.mark.parametrize("algo", [PPO, A2C])
def test_from_sb3_same_deterministic_actions(algo):
    env = gym.make("InvertedPendulum-v5")
    model = algo(
        "MlpPolicy",
        env,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [16, 16], "activation_fn": torch.nn.Tanh},
    )
    randomize_actor(model, 1)
    pol = from_sb3(model, {"family": PENDULUM})
    obs = pendulum_obs(50)
    obs = np.concatenate([obs, np.random.default_rng(0).normal(0, 2, size=(30, 4))]).astype(
        np.float32
    )
    ours = pol.act(obs, deterministic=True, clip=False)
    with torch.no_grad():
        raw = model.policy._predict(torch.as_tensor(obs), deterministic=True).numpy()
    np.testing.assert_allclose(ours, raw, atol=1e-5)
    assert np.abs(raw).max() > 3.0  # non-trivial: some actions exceed the bounds
    sb3_actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(pol.act(obs, deterministic=True), sb3_actions, atol=1e-5)
    assert pol.meta["source"] == f"sb3.{algo.__name__}"
    assert pol.meta["family"] == PENDULUM
    assert pol.net.hidden == (16, 16)
    np.testing.assert_array_equal(
        pol.params["log_std"].numpy(), model.policy.log_std.detach().numpy()
    )
    env.close()


def test_from_sb3_is_a_copy():
    env = gym.make("InvertedPendulum-v5")
    model = PPO("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [8]})
    pol = from_sb3(model)
    before = pol.act(np.zeros(4, np.float32), True)
    randomize_actor(model, 3)
    np.testing.assert_array_equal(pol.act(np.zeros(4, np.float32), True), before)
    env.close()


def test_from_sb3_rejects_relu_actor():
    env = gym.make("InvertedPendulum-v5")
    model = PPO("MlpPolicy", env, device="cpu", policy_kwargs={"activation_fn": torch.nn.ReLU})
    with pytest.raises(ValueError, match="tanh"):
        from_sb3(model)
    env.close()


# ---------------------------------------------------------------- to_sb3


@pytest.fixture(scope="module")
def normalized_policy():
    """A pendulum policy with a non-trivial normalizer and large random weights."""
    pol = metarobot.make_policy(PENDULUM, hidden=(16, 16), seed=0)
    obs = pendulum_obs(400, seed=1)
    pol.normalizer.update(obs)
    assert not np.allclose(pol.normalizer.mean, 0.0)
    assert not np.allclose(pol.normalizer.var, 1.0)
    gen = torch.Generator().manual_seed(5)
    pol.params = {
        k: torch.randn(v.shape, generator=gen) * 0.8 if k != "log_std" else v - 0.5
        for k, v in pol.params.items()
    }
    return pol


def test_to_sb3_zip_reproduces_policy_without_metarobot(normalized_policy, tmp_path):
    pol = normalized_policy
    env = gym.make("InvertedPendulum-v5")
    model = to_sb3(pol, env, seed=0)
    assert isinstance(model, PPO)
    zip_path = tmp_path / "policy.zip"
    model.save(zip_path)
    obs = pendulum_obs(80, seed=7)
    # Normalized observations stay inside the normalizer's clip range.
    mean, inv = pol.normalizer.torch(torch.device("cpu"))
    assert float(((torch.as_tensor(obs) - mean) * inv).abs().max()) < pol.normalizer.clip
    np.save(tmp_path / "obs.npy", obs)
    script = textwrap.dedent(
        """
        import sys
        sys.modules["metarobot"] = None  # any import of metarobot now fails
        import gymnasium
        import numpy as np
        from stable_baselines3 import PPO

        zip_path, obs_path, out_path = sys.argv[1:4]
        env = gymnasium.make("InvertedPendulum-v5")
        model = PPO.load(zip_path, env=env, device="cpu")
        actions, _ = model.predict(np.load(obs_path), deterministic=True)
        np.save(out_path, actions)
        leaked = [m for m in sys.modules if m.startswith("metarobot") and sys.modules[m]]
        assert not leaked, leaked
        print("ok")
        """
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(zip_path),
            str(tmp_path / "obs.npy"),
            str(tmp_path / "act.npy"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout
    theirs = np.load(tmp_path / "act.npy")
    ours = np.clip(pol.act(obs, deterministic=True), -3.0, 3.0)
    assert theirs.shape == ours.shape == (80, 1)
    assert np.abs(ours).max() > 0.5  # the comparison is not between near-zero actions
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    # The action noise carries over as well.
    np.testing.assert_allclose(
        model.policy.log_std.detach().numpy(), pol.params["log_std"].numpy(), atol=0
    )
    env.close()


def test_to_sb3_leaves_policy_untouched(normalized_policy):
    pol = normalized_policy
    before = {k: v.clone() for k, v in pol.params.items()}
    mean = pol.normalizer.mean.copy()
    to_sb3(pol, gym.make("InvertedPendulum-v5"))
    for k, v in before.items():
        torch.testing.assert_close(pol.params[k], v, rtol=0, atol=0)
    np.testing.assert_array_equal(pol.normalizer.mean, mean)


def test_to_sb3_a2c(normalized_policy):
    env = gym.make("InvertedPendulum-v5")
    model = to_sb3(normalized_policy, env, algo="A2C")
    assert isinstance(model, A2C)
    obs = pendulum_obs(20, seed=3)
    np.testing.assert_allclose(
        model.predict(obs, deterministic=True)[0],
        np.clip(normalized_policy.act(obs, deterministic=True), -3, 3),
        atol=1e-5,
    )
    env.close()


def test_from_sb3_of_to_sb3_round_trip(normalized_policy):
    model = to_sb3(normalized_policy, gym.make("InvertedPendulum-v5"))
    back = from_sb3(model)
    obs = pendulum_obs(30, seed=4)
    np.testing.assert_allclose(
        back.act(obs, deterministic=True),
        normalized_policy.act(obs, deterministic=True),
        atol=1e-5,
    )


def test_sb3_learn_continues_from_exported_model(normalized_policy):
    tasks = me.task_split(PENDULUM)[0][:2]
    venv = make_sb3_vec_env(PENDULUM, tasks, nthread=1)
    model = to_sb3(normalized_policy, venv, n_steps=64, batch_size=64, n_epochs=2, seed=0)
    w0 = model.policy.action_net.weight.detach().clone()
    model.learn(256)
    assert model.num_timesteps >= 256
    assert not torch.equal(model.policy.action_net.weight.detach(), w0)  # it trained
    assert np.isfinite(model.predict(pendulum_obs(5), deterministic=True)[0]).all()
    venv.close()


def test_to_sb3_rejects_unknown_algo(normalized_policy):
    with pytest.raises(ValueError, match="SAC"):
        to_sb3(normalized_policy, gym.make("InvertedPendulum-v5"), algo="SAC")


def test_to_sb3_rejects_mismatched_spaces(normalized_policy):
    with pytest.raises(ValueError, match="observation"):
        to_sb3(normalized_policy, gym.make(REACHER))
    reacher_policy = metarobot.make_policy(REACHER, hidden=(8,))
    with pytest.raises(ValueError):
        to_sb3(reacher_policy, gym.make("InvertedPendulum-v5"))


# ---------------------------------------------------------------- SB3VecEnv


def test_vec_env_reset_and_step_follow_sb3_conventions():
    tasks = me.task_split(REACHER)[0][:3]
    venv = make_sb3_vec_env(REACHER, tasks, nthread=1)
    assert isinstance(venv, VecEnv)
    assert venv.num_envs == 3
    obs = venv.reset()
    assert isinstance(obs, np.ndarray)
    assert obs.shape == (3, 10)
    assert obs.dtype == np.float32
    out = venv.step(np.zeros((3, 2), np.float32))
    assert isinstance(out, tuple) and len(out) == 4
    obs, rew, dones, infos = out
    assert obs.shape == (3, 10) and obs.dtype == np.float32
    assert rew.shape == (3,) and rew.dtype == np.float32
    assert dones.shape == (3,) and dones.dtype == bool and not dones.any()
    assert isinstance(infos, list) and len(infos) == 3
    assert all(isinstance(i, dict) for i in infos)
    assert all(venv.observation_space.contains(o) for o in obs)
    assert venv.get_attr("get_task") and len(venv.get_attr("get_task")) == 3
    venv.close()


def test_vec_env_time_limit_sets_terminal_observation_and_truncated():
    tasks = me.task_split(REACHER)[0][:3]
    venv = VecMonitor(make_sb3_vec_env(REACHER, tasks, nthread=1))
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(0)
    for t in range(50):
        obs, _, dones, infos = venv.step(rng.uniform(-1, 1, size=(3, 2)).astype(np.float32))
        if t < 49:
            assert not dones.any(), f"done at step {t + 1} before the 50-step horizon"
    assert dones.all()
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        term = info["terminal_observation"]
        assert term.shape == (10,) and term.dtype == np.float32
        # The returned observation is already the next episode's first one.
        assert not np.array_equal(term, obs[i])
        assert info["episode"]["l"] == 50  # SB3's VecMonitor sees whole episodes
    # The next step continues normally in fresh episodes.
    _, _, dones, _ = venv.step(np.zeros((3, 2), np.float32))
    assert not dones.any()
    venv.close()


def test_vec_env_terminations_are_not_truncations():
    tasks = me.task_split(PENDULUM)[0][:4]
    venv = make_sb3_vec_env(PENDULUM, tasks, nthread=1)
    venv.seed(1)
    venv.reset()
    rng = np.random.default_rng(1)
    seen = 0
    for _ in range(60):
        _, _, dones, infos = venv.step(rng.uniform(-3, 3, size=(4, 1)))
        for i in np.flatnonzero(dones):
            assert infos[i]["TimeLimit.truncated"] is False  # the pole fell: a termination
            assert infos[i]["terminal_observation"].shape == (4,)
            seen += 1
    assert seen > 0
    venv.close()


def test_vec_env_seed_makes_reset_reproducible():
    tasks = me.task_split(PENDULUM)[0][:2]
    venv = make_sb3_vec_env(PENDULUM, tasks, nthread=1)
    assert venv.seed(3) == [3, 4]
    a = venv.reset()
    venv.seed(3)
    b = venv.reset()
    venv.seed(4)
    c = venv.reset()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Exact: a reset is one world's own MuJoCo computation from its seed.
    np.testing.assert_array_equal(a[1], c[0])  # world i is seeded with seed + i
    venv.close()


@pytest.mark.parametrize("mode", ["next_step", "disabled"])
def test_vec_env_refuses_other_autoreset_modes(mode):
    env = me.make_batched(PENDULUM, me.task_split(PENDULUM)[0][:2], autoreset_mode=mode)
    with pytest.raises(ValueError, match="same_step"):
        SB3VecEnv(env)
    env.close()
