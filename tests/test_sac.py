"""SAC fine-tuning rounds (``adapt_many(..., algorithm="sac")``): buffers, update, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import metarobot
import metarobot.envs as me
from metarobot import adapt, adapt_many
from metarobot.rollout import EpisodeBatch
from metarobot.sac import SACFineTuner, SACSettings

PENDULUM = "metarobot/InvertedPendulumRandParams-v0"
ROOT = Path(__file__).resolve().parents[1]
FAST = {"device": "cpu", "nthread": 1, "safe": False}
SMALL = SACSettings(batch_size=32, hidden=(16, 16), utd=0.5)


@pytest.fixture(scope="module")
def tasks():
    return me.task_split(PENDULUM)[0][:3]


@pytest.fixture
def policy():
    pol = metarobot.make_policy(PENDULUM, hidden=(8,), seed=0)
    pol.normalizer.update(np.random.default_rng(0).normal(0.0, 0.3, size=(64, 4)))
    return pol


def max_diff(p, q):
    return max(float((p.params[k] - q.params[k]).abs().max()) for k in p.params)


# ------------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr", 0.0),
        ("lr", float("nan")),
        ("gamma", 1.5),
        ("tau", 0.0),
        ("utd", -1.0),
        ("init_alpha", 0.0),
        ("batch_size", 0),
        ("warmup_rounds", -1),
        ("hidden", ()),
        ("hidden", (16, 0)),
    ],
)
def test_settings_name_the_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        SACSettings(**{field: value})


def test_algorithm_and_policy_type_are_checked(policy, tasks):
    with pytest.raises(ValueError, match="algorithm"):
        adapt(policy, PENDULUM, task=tasks[0], algorithm="ddpg", **FAST)
    with pytest.raises(ValueError, match="engine='batch'"):
        adapt(policy, PENDULUM, task=tasks[0], algorithm="sac", engine="warp", **FAST)
    rnn = metarobot.load(ROOT / "experiments/checkpoints/InvertedPendulumRandParams-recurrent.pt")
    with pytest.raises(ValueError, match="MLP and RMA policies"):
        adapt(rnn, PENDULUM, task=tasks[0], algorithm="sac", **FAST)


# -------------------------------------------------------------------------- buffers
def _batch(lengths, horizon, diverged=None):
    """Two episodes of one task, step t of episode e observing [e, t, t, t]."""
    k, d = len(lengths), 4
    obs = torch.zeros(1, k, horizon, d)
    mask = torch.zeros(1, k, horizon)
    for e, n in enumerate(lengths):
        obs[0, e, :n] = torch.tensor([[e, t, t, t] for t in range(n)], dtype=torch.float32)
        mask[0, e, :n] = 1.0
    rew = obs[..., 1] + 100.0 * torch.arange(k).view(1, k, 1)
    return EpisodeBatch(
        obs=obs,
        raw_obs=obs.clone(),
        actions=torch.full((1, k, horizon, 1), 5.0),  # outside the pendulum's [-3, 3]
        rewards=rew * mask,
        mask=mask,
        logp=torch.zeros(1, k, horizon),
        returns=(rew * mask).sum(-1),
        diverged=int(sum(diverged or [])),
        diverged_mask=None if diverged is None else np.array([diverged]),
    )


def test_buffer_keeps_transitions_with_a_known_next_state(policy):
    tuner = SACFineTuner(policy, _stacked(policy, 1), [0], 100, SMALL)
    # Episode 0 is cut by the time limit (length = horizon = 6): its last step has no next
    # state and is dropped. Episode 1 terminated after 4 steps: its last step is kept, done.
    assert tuner.add(_batch([6, 4], horizon=6), horizon=6) == [5 + 4]
    obs, nxt = tuner.obs[0, :9], tuner.next_obs[0, :9]
    assert torch.equal(obs[:5, 1], torch.arange(5.0)) and torch.equal(nxt[:5, 1], obs[:5, 1] + 1)
    assert torch.equal(obs[5:, 0], torch.ones(4)) and torch.equal(nxt[5:8], obs[6:9])
    assert torch.equal(tuner.done[0, :9], torch.tensor([0.0] * 8 + [1.0]))
    assert torch.equal(tuner.rew[0, :9], torch.tensor([0, 1, 2, 3, 4, 100, 101, 102, 103.0]))
    assert torch.equal(tuner.act[0, :9], torch.full((9, 1), 3.0))  # clipped to the bounds
    assert int(tuner.size[0]) == 9


def test_buffer_drops_the_last_step_of_a_diverged_episode(policy):
    tuner = SACFineTuner(policy, _stacked(policy, 1), [0], 100, SMALL)
    assert tuner.add(_batch([6, 4], horizon=6, diverged=[False, True]), horizon=6) == [5 + 3]
    assert float(tuner.done[0, :8].sum()) == 0.0


def test_full_buffer_is_an_error(policy):
    tuner = SACFineTuner(policy, _stacked(policy, 1), [0], 8, SMALL)
    with pytest.raises(ValueError, match="replay buffer"):
        tuner.add(_batch([6, 4], horizon=6), horizon=6)


def _stacked(policy, n):
    return {k: v.unsqueeze(0).expand(n, *v.shape).clone() for k, v in policy.params.items()}


# ---------------------------------------------------------------------------- update
def test_critic_steps_fit_the_rewards_and_leave_the_policy(policy):
    # With gamma -> 0 the soft Bellman target is the reward: the critics' error must fall, and
    # critic-only steps (train_actor=False) must not touch the policy or the temperature.
    cfg = SACSettings(batch_size=64, hidden=(32, 32), gamma=1e-6, lr=3e-3)
    tuner = SACFineTuner(policy, _stacked(policy, 2), [0, 1], 100, cfg)
    batch = _batch([6, 4], horizon=6)
    two = EpisodeBatch(
        **{
            **batch.__dict__,
            **{
                f: torch.cat([getattr(batch, f)] * 2)
                for f in ("obs", "raw_obs", "actions", "rewards", "mask", "logp", "returns")
            },
        }
    )
    tuner.add(two, horizon=6)
    start = {k: v.clone() for k, v in tuner.actor.items()}

    def error():
        from metarobot.sac import _q

        o, a, r = tuner.obs[:, :9], tuner.act[:, :9], tuner.rew[:, :9]
        q1 = {k: v[:2] for k, v in tuner.q.items()}  # Q1 of both environments, then their Q2
        return float(((_q(q1, o, a) - r) ** 2).mean())

    e0 = error()
    for _ in range(300):
        tuner.update(train_actor=False)
    assert error() < 0.05 * e0
    assert all(torch.equal(start[k], tuner.actor[k]) for k in start)
    assert torch.allclose(tuner.log_alpha, torch.log(torch.tensor(cfg.init_alpha)))
    tuner.update(train_actor=True)
    assert any(not torch.equal(start[k], tuner.actor[k]) for k in start)


def test_warmup_rounds_only_fit_the_critics(policy, tasks):
    # One round, one warm-up round: the policy is returned exactly as it came in.
    out = adapt(
        policy,
        PENDULUM,
        task=tasks[0],
        episodes=2,
        rounds=1,
        algorithm="sac",
        sac=SMALL,
        seed=0,
        **FAST,
    )
    assert max_diff(out, policy) == 0.0
    moved = adapt(
        policy,
        PENDULUM,
        task=tasks[0],
        episodes=2,
        rounds=3,
        algorithm="sac",
        sac=SMALL,
        seed=0,
        keep="final",
        **FAST,
    )
    assert max_diff(moved, policy) > 1e-4
    assert "SAC" in moved.meta["adapted"]["update"]


# ---------------------------------------------------------------------- determinism
def test_same_seed_same_policy_and_many_equals_sequential(policy, tasks):
    kw = {"episodes": 2, "rounds": 3, "algorithm": "sac", "sac": SMALL, "keep": "final", **FAST}
    many = adapt_many(policy, PENDULUM, tasks, seed=5, **kw)
    again = adapt_many(policy, PENDULUM, tasks, seed=5, **kw)
    other = adapt_many(policy, PENDULUM, tasks, seed=6, **kw)
    for i, task in enumerate(tasks):
        assert max_diff(many[i], again[i]) == 0.0
        assert max_diff(many[i], other[i]) > 1e-5
        one = adapt(policy, PENDULUM, task=task, seed=5 + i, **kw)
        for k in one.params:
            torch.testing.assert_close(many[i].params[k], one.params[k], rtol=0, atol=1e-5)


def test_safeguard_judges_sac_updates(policy, tasks):
    out = adapt_many(
        policy,
        PENDULUM,
        tasks,
        episodes=2,
        rounds=3,
        algorithm="sac",
        sac=SMALL,
        keep="final",
        seed=0,
        device="cpu",
        nthread=1,
    )
    for o in out:
        info = o.meta["adapted"]
        assert isinstance(info["accepted"], bool)
        assert (max_diff(o, policy) == 0.0) == (not info["accepted"])


# A learning claim: it must hold for any seed (checked locally on seeds 0-4: the mean return
# over 4 tasks of a fresh policy rose from 22.4-22.8 to 70-137 with 16 rounds × 4 episodes;
# PPO's rounds with the same episodes reach 41-55 in test_adaptation.py).
@pytest.mark.parametrize("seed", [0, 1])
def test_sac_rounds_raise_the_return_of_a_fresh_policy(seed):
    from metarobot.evaluation import evaluation_returns

    tks = me.task_split(PENDULUM)[0][:4]
    pol = metarobot.make_policy(PENDULUM, hidden=(16,), seed=seed)
    cfg = SACSettings(batch_size=64, hidden=(64, 64), utd=0.2, init_alpha=0.1)
    out = adapt_many(
        pol, PENDULUM, tks, episodes=4, rounds=16, algorithm="sac", sac=cfg, seed=seed, **FAST
    )
    before = evaluation_returns([pol] * 4, PENDULUM, tks, episodes=4, seed=99, nthread=1)
    after = evaluation_returns(out, PENDULUM, tks, episodes=4, seed=99, nthread=1)
    assert after.mean() > before.mean() + 30.0


def test_rma_infers_its_latent_then_sac_fine_tunes_the_folded_actor(tasks):
    rma = metarobot.load(ROOT / "experiments/checkpoints/InvertedPendulumRandParams-rma.pt")
    kw = {"episodes": 2, "algorithm": "sac", "sac": SMALL, "seed": 3, "keep": "final", **FAST}
    inferred = rma.adapt_candidates(PENDULUM, tasks[:2], episodes=2, seeds=[3, 4], nthread=1)
    # Two rounds: the inference round, then SAC's critic-only warm-up: the folded actor itself.
    two = adapt_many(rma, PENDULUM, tasks[:2], rounds=2, **kw)
    for got, want in zip(two, inferred, strict=True):
        assert max_diff(got, want.folded()) == 0.0
        assert got.meta["adapted"]["update"].startswith("fixed latent, then 1 round(s) of SAC")
        # Each task's policy records its own latent, not the first task's.
        assert got.meta["folded_from"] == want.folded().meta["folded_from"]
    assert two[0].meta["folded_from"]["z"] != two[1].meta["folded_from"]["z"]
    four = adapt_many(rma, PENDULUM, tasks[:2], rounds=4, **kw)
    assert all(max_diff(f, w.folded()) > 1e-4 for f, w in zip(four, inferred, strict=True))
