"""Baselines: PPO experts, expert ensemble, parameter average, domain randomization, scratch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import metarobot
import metarobot.envs as me
from metarobot import baselines
from metarobot.policies import EnsembleMLP, Policy
from metarobot.sb3 import from_sb3, make_sb3_vec_env

PENDULUM = "metarobot/InvertedPendulumRandParams-v0"
REACHER = "metarobot/ReacherRandParams-v0"
TINY = {"n_envs": 2, "nthread": 1, "hidden": (8, 8)}


@pytest.fixture(scope="module")
def train_tasks():
    return me.task_split(PENDULUM)[0]


@pytest.fixture(scope="module")
def test_tasks():
    return me.task_split(PENDULUM)[1]


def random_obs(n: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.5, size=(n, 4)).astype(np.float32)


def actor_state(pol: Policy) -> dict[str, torch.Tensor]:
    """A from_sb3 policy's actor in SB3 state_dict names."""
    n = sum(1 for k in pol.params if k.endswith(".weight"))
    names = [f"mlp_extractor.policy_net.{2 * i}" for i in range(n - 1)] + ["action_net"]
    out = {"log_std": pol.params["log_std"]}
    for i, name in enumerate(names):
        out[f"{name}.weight"] = pol.params[f"mean.{2 * i}.weight"]
        out[f"{name}.bias"] = pol.params[f"mean.{2 * i}.bias"]
    return out


@pytest.fixture(scope="module")
def sb3_experts(train_tasks):
    """Experts from untrained SB3 PPO models with large random actors (non-trivial actions)."""
    venv = make_sb3_vec_env(PENDULUM, train_tasks[:1], nthread=1)
    experts = []
    for seed in range(3):
        model = baselines.ppo_model(venv, seed, hidden=(8, 8))
        gen = torch.Generator().manual_seed(100 + seed)
        with torch.no_grad():
            for p in [
                *model.policy.mlp_extractor.policy_net.parameters(),
                *model.policy.action_net.parameters(),
                model.policy.log_std,
            ]:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        experts.append(from_sb3(model, {"family": PENDULUM, "algorithm": "expert"}))
    venv.close()
    return experts


@pytest.fixture(scope="module")
def trained_experts(train_tasks):
    return baselines.train_experts(PENDULUM, train_tasks[:2], 64, seed=0, **TINY)


# ---------------------------------------------------------------- ensemble


def assert_ensemble_is_mean(experts):
    ens = baselines.ensemble(experts)
    obs = random_obs()
    mean = np.mean([e.act(obs, deterministic=True) for e in experts], axis=0)
    np.testing.assert_allclose(ens.act(obs, deterministic=True), mean, atol=1e-6)
    # Single observations too.
    np.testing.assert_allclose(ens.act(obs[0], deterministic=True), mean[0], atol=1e-6)
    return ens


def test_ensemble_action_is_mean_of_sb3_experts(sb3_experts):
    ens = assert_ensemble_is_mean(sb3_experts)
    # Non-trivial: the members disagree, so the mean is not any one member's action.
    acts = [e.act(random_obs(), deterministic=True) for e in sb3_experts]
    assert np.abs(acts[0] - acts[1]).max() > 0.1
    assert isinstance(ens.net, EnsembleMLP)
    assert len(ens.net.members) == 3
    assert ens.meta["algorithm"] == "ensemble"
    assert ens.meta["members"] == 3
    torch.testing.assert_close(
        ens.params["log_std"], torch.stack([e.params["log_std"] for e in sb3_experts]).mean(0)
    )


def test_ensemble_action_is_mean_of_trained_experts(trained_experts):
    ens = assert_ensemble_is_mean(trained_experts)
    assert "task" not in ens.meta
    assert ens.meta["family"] == PENDULUM


def test_ensemble_does_not_alias_expert_weights(sb3_experts):
    experts = [e.clone() for e in sb3_experts]
    ens = baselines.ensemble(experts)
    before = ens.act(random_obs(), deterministic=True)
    with torch.no_grad():
        for e in experts:
            for v in e.params.values():
                v.add_(1.0)
    np.testing.assert_array_equal(ens.act(random_obs(), deterministic=True), before)


def test_ensemble_save_load_and_adapt(sb3_experts, test_tasks, tmp_path):
    ens = baselines.ensemble(sb3_experts)
    path = tmp_path / "ens.pt"
    ens.save(str(path))
    loaded = metarobot.load(str(path))
    obs = random_obs(16, 1)
    np.testing.assert_array_equal(
        loaded.act(obs, deterministic=True), ens.act(obs, deterministic=True)
    )
    assert isinstance(loaded.net, EnsembleMLP)
    assert loaded.meta["algorithm"] == "ensemble"

    snapshot = {k: v.clone() for k, v in loaded.params.items()}
    adapted = metarobot.adapt(
        loaded,
        PENDULUM,
        task=test_tasks[0],
        episodes=1,
        lr=0.05,
        seed=0,
        device="cpu",
        nthread=1,
        safe=False,
    )
    assert isinstance(adapted, Policy)
    assert isinstance(adapted.net, EnsembleMLP)
    assert adapted.params.keys() == loaded.params.keys()
    assert any(not torch.equal(adapted.params[k], snapshot[k]) for k in snapshot)  # it moved
    for k, v in snapshot.items():  # the input is untouched
        assert torch.equal(loaded.params[k], v)
    assert adapted.act(obs, deterministic=True).shape == (16, 1)
    adapted.save(str(tmp_path / "ens_adapted.pt"))
    again = metarobot.load(str(tmp_path / "ens_adapted.pt"))
    np.testing.assert_array_equal(
        again.act(obs, deterministic=True), adapted.act(obs, deterministic=True)
    )


# ---------------------------------------------------------------- parameter average


@pytest.mark.parametrize("which", ["sb3", "trained"])
def test_parameter_average_is_elementwise_mean(which, sb3_experts, trained_experts):
    experts = sb3_experts if which == "sb3" else trained_experts
    avg = baselines.parameter_average(experts)
    assert avg.params.keys() == experts[0].params.keys()
    for k in avg.params:
        expected = sum(e.params[k] for e in experts) / len(experts)
        torch.testing.assert_close(avg.params[k], expected, rtol=0, atol=1e-7)
    assert avg.meta["algorithm"] == "param_average"
    assert avg.meta["members"] == len(experts)
    assert "task" not in avg.meta
    # It is a plain policy with the averaged weights: acting differs from the ensemble.
    obs = random_obs()
    manual = experts[0].with_params(avg.params)
    np.testing.assert_allclose(
        avg.act(obs, deterministic=True), manual.act(obs, deterministic=True), atol=1e-6
    )


@pytest.mark.parametrize("fn", [baselines.ensemble, baselines.parameter_average])
def test_empty_list_rejected(fn):
    with pytest.raises(ValueError, match="at least one"):
        fn([])


@pytest.mark.parametrize("fn", [baselines.ensemble, baselines.parameter_average])
def test_different_depth_rejected(fn):
    a = metarobot.make_policy(PENDULUM, hidden=(8, 8))
    b = metarobot.make_policy(PENDULUM, hidden=(8,))
    with pytest.raises(ValueError, match="shape"):
        fn([a, b])


# Rule: experts of another width, size or family are refused with a ValueError.
@pytest.mark.parametrize("fn", [baselines.ensemble, baselines.parameter_average])
@pytest.mark.parametrize(
    "other",
    [(PENDULUM, (16, 16)), (REACHER, (8, 8))],
    ids=["wider", "other-family"],
)
def test_mismatched_widths_or_families_rejected(fn, other):
    a = metarobot.make_policy(PENDULUM, hidden=(8, 8))
    b = metarobot.make_policy(other[0], hidden=other[1])
    with pytest.raises(ValueError):
        fn([a, b])


@pytest.mark.parametrize("fn", [baselines.ensemble, baselines.parameter_average])
def test_different_normalizers_rejected(fn, sb3_experts):
    b = sb3_experts[1].clone()
    b.normalizer.update(random_obs())
    with pytest.raises(ValueError, match="normalizer"):
        fn([sb3_experts[0], b])


# ---------------------------------------------------------------- experts


def test_trained_experts_differ_and_carry_metadata(trained_experts, train_tasks):
    a, b = trained_experts
    assert any(not torch.equal(a.params[k], b.params[k]) for k in a.params)
    obs = random_obs()
    assert not np.allclose(a.act(obs, True), b.act(obs, True))
    for e, task in zip(trained_experts, train_tasks[:2], strict=True):
        assert e.meta["algorithm"] == "expert"
        assert e.meta["family"] == PENDULUM
        assert me.Task.from_json(e.meta["task"]) == task
        assert e.meta["timesteps"] == 64
        assert e.net.hidden == (8, 8)


def test_train_experts_share_one_initialization(train_tasks):
    # With a zero learning rate training changes nothing, so each expert is its initialization.
    experts = baselines.train_experts(
        PENDULUM, train_tasks[:2], 64, seed=3, learning_rate=0.0, **TINY
    )
    a, b = experts
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    venv = make_sb3_vec_env(PENDULUM, train_tasks[:1], nthread=1)
    init = baselines.ppo_model(venv, 3, hidden=(8, 8)).policy.state_dict()
    other = baselines.ppo_model(venv, 4, hidden=(8, 8)).policy.state_dict()
    venv.close()
    for k, v in actor_state(a).items():
        assert torch.equal(v, init[k]), k
    # The initialization depends on the seed.
    assert any(not torch.equal(v, other[k]) for k, v in actor_state(a).items())


def test_train_expert_honors_init_state(train_tasks):
    venv = make_sb3_vec_env(PENDULUM, train_tasks[:1], nthread=1)
    init = {
        k: v.clone()
        for k, v in baselines.ppo_model(venv, 123, hidden=(8, 8)).policy.state_dict().items()
    }
    venv.close()
    frozen = baselines.train_expert(
        PENDULUM, train_tasks[0], 64, seed=5, init_state=init, learning_rate=0.0, **TINY
    )
    for k, v in actor_state(frozen).items():
        assert torch.equal(v, init[k]), k
    # With learning, the same start moves away from the initialization.
    moved = baselines.train_expert(PENDULUM, train_tasks[0], 64, seed=5, init_state=init, **TINY)
    assert any(not torch.equal(v, init[k]) for k, v in actor_state(moved).items())


def test_train_expert_is_deterministic(train_tasks):
    a = baselines.train_expert(PENDULUM, train_tasks[1], 64, seed=7, **TINY)
    b = baselines.train_expert(PENDULUM, train_tasks[1], 64, seed=7, **TINY)
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_train_expert_rejects_bad_timesteps(bad, train_tasks):
    with pytest.raises(ValueError, match="timesteps"):
        baselines.train_expert(PENDULUM, train_tasks[0], bad, **TINY)


def test_domain_randomization_policy(train_tasks):
    pol = baselines.train_domain_randomization(PENDULUM, 64, seed=0, tasks=train_tasks[:3], **TINY)
    assert pol.meta["algorithm"] == "domain_randomization"
    assert pol.meta["family"] == PENDULUM
    assert pol.meta["timesteps"] == 64
    assert "task" not in pol.meta
    assert pol.act(random_obs(), deterministic=True).shape == (32, 1)
    again = baselines.train_domain_randomization(
        PENDULUM, 64, seed=0, tasks=train_tasks[:3], **TINY
    )
    for k in pol.params:
        assert torch.equal(pol.params[k], again.params[k]), k


def test_oracle_method_name_recorded(test_tasks):
    pol = baselines.train_expert(PENDULUM, test_tasks[0], 64, seed=0, method="oracle", **TINY)
    assert pol.meta["algorithm"] == "oracle"
    assert me.Task.from_json(pol.meta["task"]) == test_tasks[0]


# ---------------------------------------------------------------- scratch


def test_scratch_policy():
    pol = baselines.scratch(PENDULUM, seed=0, hidden=(8, 8))
    assert pol.meta["algorithm"] == "scratch"
    assert pol.meta["family"] == PENDULUM
    assert pol.net.hidden == (8, 8)
    same = baselines.scratch(PENDULUM, seed=0, hidden=(8, 8))
    other = baselines.scratch(PENDULUM, seed=1, hidden=(8, 8))
    for k in pol.params:
        assert torch.equal(pol.params[k], same.params[k])
    assert any(not torch.equal(pol.params[k], other.params[k]) for k in pol.params)
    # A fresh (identity) normalizer.
    np.testing.assert_array_equal(pol.normalizer.mean, np.zeros(4))
    np.testing.assert_array_equal(pol.normalizer.var, np.ones(4))
