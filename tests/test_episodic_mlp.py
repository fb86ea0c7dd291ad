"""MLP policies trained with the episodic PPO (DR and oracles with ``trainer = "episodic"``)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import metarobot
from metarobot import registry
from metarobot.config import load_config
from metarobot.envs import task_split
from metarobot.episodic_mlp import MLPActorCritic, train_ppo_mlp
from metarobot.evaluation import evaluation_returns
from metarobot.experiment import run_experiment
from metarobot.policies import Policy
from metarobot.ppo import ADAPTIVE_LR_BOUNDS, PPOSettings, _adapt_lr

PENDULUM = "metarobot/InvertedPendulumRandParams-v0"
SETTINGS = PPOSettings(minibatches=1, epochs=2, batch_steps=64)


def _train(seed: int = 0) -> Policy:
    return train_ppo_mlp(
        PENDULUM,
        task_split(PENDULUM)[0][:3],
        600,
        seed=seed,
        n_envs=4,
        nthread=1,
        hidden=(8, 8),
        settings=SETTINGS,
    )


@pytest.fixture(scope="module")
def policy() -> Policy:
    return _train()


def test_budget_and_metadata(policy):
    assert 0 < policy.meta["env_steps"] <= 600
    assert policy.meta["algorithm"] == "domain_randomization"
    assert policy.meta["trainer"] == "episodic"
    assert policy.meta["family"] == PENDULUM
    assert not np.allclose(policy.normalizer.mean, 0.0)  # the trainer's statistics came along
    curve = policy.meta["training_curve"]  # one point per PPO iteration
    assert curve["env_steps"][-1] == policy.meta["env_steps"]
    assert len(curve["return"]) == len(curve["env_steps"]) >= 1
    assert curve["env_steps"] == sorted(curve["env_steps"])


def test_same_seed_same_policy_other_seed_other_policy(policy):
    again, other = _train(0), _train(1)
    for k, v in policy.params.items():
        torch.testing.assert_close(v, again.params[k], rtol=0, atol=0)
    assert any(not torch.equal(v, other.params[k]) for k, v in policy.params.items())


def test_policy_acts_as_the_trained_network(policy):
    # The deployed Policy (functional MLP + normalizer) gives the trainer's action mean.
    net = MLPActorCritic(4, 1, (8, 8), torch.Generator().manual_seed(0))
    net.actor.load_state_dict(policy.params)
    obs = np.random.default_rng(0).normal(size=4)
    on = np.clip(
        (obs - policy.normalizer.mean) / np.sqrt(policy.normalizer.var + 1e-8), -10.0, 10.0
    )
    with torch.no_grad():
        mean, value, state = net(torch.as_tensor(on, dtype=torch.float32)[None, None])
    assert state is None and value.shape == (1, 1)
    np.testing.assert_allclose(
        policy.act(obs.astype(np.float32), deterministic=True), mean[0, 0].numpy(), atol=1e-5
    )


def test_save_load_identical_actions(policy, tmp_path):
    policy.save(tmp_path / "dr.pt")
    loaded = metarobot.load(tmp_path / "dr.pt")
    obs = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    for o in obs:
        np.testing.assert_array_equal(
            policy.act(o, deterministic=True), loaded.act(o, deterministic=True)
        )


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="steps"):
        train_ppo_mlp(PENDULUM, task_split(PENDULUM)[0][:1], 0)
    with pytest.raises(ValueError, match="tasks"):
        train_ppo_mlp(PENDULUM, [], 100)


TABLE = """
name = "episodic-baselines"
family = "metarobot/InvertedPendulumRandParams-v0"
methods = ["domain_randomization", "oracle"]
train_seeds = [0]
nthread = 1
torch_threads = 1
budget_steps = 1000

[baselines]
dr_timesteps = 600
oracle_timesteps = 400
trainer = "episodic"

[rma]
teacher_envs = 2
lr = 0.001

[eval]
ks = [0]
seeds = [0]
episodes = 1
n_test_tasks = 2
bootstrap_reps = 20
"""


def test_a_table_trains_dr_and_oracles_with_the_episodic_trainer(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(TABLE)
    res = run_experiment(load_config(path), tmp_path / "out", progress=False)
    ck = tmp_path / "out" / "checkpoints"
    dr = metarobot.load(ck / "domain_randomization-s0.pt")
    oracles = [metarobot.load(ck / f"oracle-t{t}-s0.pt") for t in range(2)]
    assert dr.meta["trainer"] == "episodic" and 0 < dr.meta["env_steps"] <= 600
    assert all(o.meta["trainer"] == "episodic" and o.meta["algorithm"] == "oracle" for o in oracles)
    assert oracles[0].meta["task"] != oracles[1].meta["task"]
    assert {r["method"] for r in res["records"]} == {"domain_randomization", "oracle"}


def test_unknown_trainer_is_named(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(TABLE.replace('trainer = "episodic"', 'trainer = "sac"'))
    with pytest.raises(ValueError, match=r"baselines.trainer must be one of \['sb3', 'episodic'\]"):
        load_config(path)


def test_oracle_restarts_keep_the_best_run_on_its_task(tmp_path):
    path = tmp_path / "t.toml"
    text = TABLE.replace('trainer = "episodic"', 'trainer = "episodic"\noracle_restarts = 3')
    path.write_text(
        text.replace('methods = ["domain_randomization", "oracle"]', 'methods = ["oracle"]')
    )
    cfg = load_config(path)
    res = run_experiment(cfg, tmp_path / "out", progress=False)
    ck = tmp_path / "out" / "checkpoints"
    for t in range(2):
        oracle = metarobot.load(ck / f"oracle-t{t}-s0.pt")
        returns = oracle.meta["restart_returns"]
        assert len(returns) == 3
        task = task_split(PENDULUM)[1][t]
        again = evaluation_returns(
            [oracle], PENDULUM, [task], episodes=2, seed=registry.ORACLE_SELECT_SEED, nthread=1
        )[0]
        assert again == pytest.approx(max(returns), abs=1e-3)  # the kept run is the best one
        assert oracle.meta["env_steps"] <= 3 * 400
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "best of 3 PPO runs" in summary
    assert res["records"]


def test_linear_schedule_anneals_the_learning_rate_to_zero_over_the_budget(monkeypatch):
    seen: list[float] = []
    real_step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):  # records the rate each Adam step uses
        seen.append(float(self.param_groups[0]["lr"]))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    steps, lr = 1200, 1e-3
    sched = PPOSettings(minibatches=1, epochs=1, batch_steps=1, lr=lr, lr_schedule="linear")
    policy = train_ppo_mlp(
        PENDULUM,
        task_split(PENDULUM)[0][:3],
        steps,
        seed=0,
        n_envs=2,
        hidden=(8, 8),
        settings=sched,
    )
    used = policy.meta["env_steps"]
    assert seen[0] == pytest.approx(lr)  # the first update, before any step was used
    assert len(seen) > 2 and all(a > b for a, b in itertools.pairwise(seen))
    # The last batch used at most n_envs × horizon = 400 steps.
    assert 0 < seen[-1] <= lr * (1 - (used - 400) / steps) + 1e-12
    seen.clear()
    train_ppo_mlp(
        PENDULUM,
        task_split(PENDULUM)[0][:3],
        steps,
        seed=0,
        n_envs=2,
        hidden=(8, 8),
        settings=PPOSettings(minibatches=1, epochs=1, batch_steps=1, lr=lr),
    )
    assert set(seen) == {lr}  # constant: the default


def test_adaptive_rate_follows_the_kl_divergence_within_its_bounds():
    lo, hi = ADAPTIVE_LR_BOUNDS
    w = torch.ones(8)

    def step(lr: float, ratio: float) -> float:
        opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=lr)
        _adapt_lr(opt, torch.full((8,), math.log(ratio)), w, w.sum(), desired_kl=0.01)
        return float(opt.param_groups[0]["lr"])

    # KL = (r − 1) − log r: 0.094 at r = 1.5 (above 2 × 0.01), 0.0044 at r = 1.1 (below 0.005),
    # 0.0055 at r = 1.11 (inside the band).
    assert step(1e-3, 1.5) == pytest.approx(1e-3 / 1.5)
    assert step(1e-3, 1.1) == pytest.approx(1.5e-3)
    assert step(1e-3, 1.11) == pytest.approx(1e-3)
    assert step(lo, 1.5) == lo and step(hi, 1.0) == hi


def test_adaptive_schedule_moves_the_rate_from_batch_to_batch(monkeypatch):
    seen: list[float] = []
    real_step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(float(self.param_groups[0]["lr"]))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    lr = 1e-3
    settings = PPOSettings(minibatches=2, epochs=3, batch_steps=1, lr=lr, lr_schedule="adaptive")
    policy = train_ppo_mlp(
        PENDULUM,
        task_split(PENDULUM)[0][:3],
        1200,
        seed=0,
        n_envs=2,
        hidden=(8, 8),
        settings=settings,
    )
    lo, hi = ADAPTIVE_LR_BOUNDS
    assert seen[0] == lr  # the first minibatch meets the collecting policy: no change yet
    assert len(set(seen)) > 1 and all(lo <= x <= hi for x in seen)
    curve = policy.meta["training_curve"]  # the rate each update ended at
    assert np.isfinite(curve["return"]).all() and len(curve["lr"]) == len(curve["return"])
    assert curve["lr"][-1] == pytest.approx(seen[-1], rel=0.51)  # within one ×1.5 move
    with pytest.raises(ValueError, match=r"desired_kl must be a finite number > 0"):
        train_ppo_mlp(
            PENDULUM,
            task_split(PENDULUM)[0][:1],
            600,
            settings=PPOSettings(lr_schedule="adaptive", desired_kl=0.0),
        )


def test_unknown_lr_schedule_is_named(tmp_path):
    with pytest.raises(
        ValueError, match=r"lr_schedule must be one of \['constant', 'linear', 'adaptive'\]"
    ):
        train_ppo_mlp(
            PENDULUM, task_split(PENDULUM)[0][:1], 600, settings=PPOSettings(lr_schedule="cos")
        )
    path = tmp_path / "t.toml"
    path.write_text(TABLE.replace("lr = 0.001", 'lr = 0.001\nlr_schedule = "cosine"'))
    with pytest.raises(ValueError, match=r"rma.lr_schedule must be one of"):
        load_config(path)


def test_update_without_padding_equals_the_padded_update():
    # A feedforward net's minibatches drop the steps after episodes that ended early: the
    # update must equal the one over the padded [episodes, time] layout (zero-weight padding).
    from metarobot import ppo

    net = MLPActorCritic(5, 2, (16, 16), torch.Generator().manual_seed(0))
    rng = np.random.default_rng(0)
    mask = np.zeros((6, 10), np.float32)
    for i, length in enumerate([10, 3, 7, 10, 1, 5]):
        mask[i, :length] = 1
    batch = {
        "x": rng.standard_normal((6, 10, 5)).astype(np.float32),
        "act": rng.standard_normal((6, 10, 2)).astype(np.float32),
        "logp": (rng.standard_normal((6, 10)) * 0.1 - 2).astype(np.float32),
        "mask": mask,
    }
    adv, ret = rng.standard_normal((6, 10)), rng.standard_normal((6, 10))
    settings = PPOSettings(epochs=3, minibatches=2)
    after = []
    # The second initial-state function marks the net as stateful, which keeps the padding.
    for initial_state in (lambda n: None, lambda n: None if n != 1 else torch.zeros(1)):
        copy = MLPActorCritic(5, 2, (16, 16), torch.Generator().manual_seed(0))
        copy.load_state_dict(net.state_dict())
        opt = ppo.adam(copy.parameters(), 1e-3)
        ppo._update(
            copy, opt, batch, adv, ret, np.random.default_rng(1), settings, initial_state,
            torch.device("cpu"),
        )  # fmt: skip
        after.append([p.detach().clone() for p in copy.parameters()])
    start = list(net.parameters())
    moved = max(float((a - b.detach()).abs().max()) for a, b in zip(after[0], start, strict=True))
    assert moved > 1e-3
    for packed, padded in zip(*after, strict=True):
        torch.testing.assert_close(packed, padded, rtol=0, atol=1e-6)


class _StopError(Exception):
    """Raised by the spy once the trainer has been called."""


@pytest.mark.parametrize("method", ["domain_randomization", "oracle", "rma", "recurrent"])
def test_table_exploration_noise_and_ppo_passes_reach_every_episodic_trainer(
    method, tmp_path, monkeypatch
):
    # [rma] init_log_std / epochs / minibatches / hidden set RMA's teacher, DR's and the
    # oracles' PPO and width; [recurrent] init_log_std the GRU policy's.
    from metarobot import episodic_mlp, recurrent, rma

    seen: dict[str, object] = {}

    def spy(net, *args, **kwargs):
        seen["log_std"] = net.log_std.detach().clone()
        seen["settings"] = kwargs["settings"]
        seen["width"] = next(
            m for m in net.modules() if isinstance(m, torch.nn.Linear)
        ).out_features
        raise _StopError

    for mod in (episodic_mlp, rma, recurrent):
        monkeypatch.setattr(mod, "train_episodic_ppo", spy)
    path = tmp_path / "t.toml"
    path.write_text(
        TABLE.replace(
            "lr = 0.001",
            "lr = 0.001\ninit_log_std = -1.5\nepochs = 3\nminibatches = 2\nhidden = [12, 10]",
        )
        + "\n[recurrent]\ninit_log_std = -0.5\n"
    )
    cfg = load_config(path)
    cfg.methods = [method]
    job = registry.get(method).jobs(cfg, 0)[0]
    with pytest.raises(_StopError):
        job.trainer(cfg, tmp_path, tmp_path / "p.pt", job.args)
    want = -0.5 if method == "recurrent" else -1.5
    assert torch.all(seen["log_std"] == want)
    if method != "recurrent":
        assert (seen["settings"].epochs, seen["settings"].minibatches) == (3, 2)
        assert seen["width"] == 12  # [rma] hidden, not [meta] hidden
    path.write_text(TABLE.replace("lr = 0.001", "lr = 0.001\nhidden = [0]"))
    with pytest.raises(ValueError, match=r"rma\.hidden must be a non-empty list of integers >= 1"):
        load_config(path)
