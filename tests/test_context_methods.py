"""Context-conditioned meta-policies: RMA and the recurrent policy (tiny budgets)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import metarobot
from metarobot import registry
from metarobot.config import parse_config
from metarobot.context import TaskFeatures
from metarobot.envs import task_split
from metarobot.ppo import PPOSettings
from metarobot.recurrent import RecurrentPolicy, train_recurrent
from metarobot.rma import RMAPolicy, history_inputs, train_rma
from metarobot.rollout import episode_returns, run_actor_episodes

PENDULUM = "metarobot/InvertedPendulumRandParams-v0"
DIRECTION = "metarobot/HalfCheetahDir-v0"


def _tiny_rma(env_id: str, student_epochs: int) -> RMAPolicy:
    return train_rma(
        env_id,
        teacher_steps=800,
        student_steps=1600,
        seed=0,
        n_envs=4,
        student_envs=4,
        nthread=1,
        hidden=(8, 8),
        z_dim=2,
        history=3,
        phi_hidden=(16,),
        student_epochs=student_epochs,
    )


@pytest.fixture(scope="module")
def rma_policy() -> RMAPolicy:
    return _tiny_rma(PENDULUM, student_epochs=5)


@pytest.fixture(scope="module")
def rec_policy() -> RecurrentPolicy:
    return train_recurrent(
        PENDULUM,
        steps=400,
        seed=0,
        n_envs=2,
        nthread=1,
        hidden=8,
        settings=PPOSettings(minibatches=1, epochs=2),
    )


def test_student_regression_error_falls(rma_policy):
    assert rma_policy.meta["student_iterations"] > 1
    assert rma_policy.meta["student_loss"] < rma_policy.meta["student_loss_first"]


def test_budgets_are_counted(rma_policy, rec_policy):
    assert (
        rma_policy.meta["env_steps"]
        == rma_policy.meta["teacher_steps"] + rma_policy.meta["student_steps"]
    )
    assert 0 < rec_policy.meta["env_steps"] <= 2 * 200  # one iteration of two episodes at most


def test_checkpoints_record_their_training_curve(rma_policy, rec_policy, tmp_path):
    # The table's learning_curve.png plots these: env steps after each PPO iteration and the
    # mean return of its episodes (RMA: its teacher's).
    for pol, used in ((rec_policy, "env_steps"), (rma_policy, "teacher_steps")):
        curve = pol.meta["training_curve"]
        assert len(curve["env_steps"]) == len(curve["return"]) >= 1
        assert curve["env_steps"][-1] == pol.meta[used]
        assert all(np.isfinite(curve["return"]))
        pol.save(tmp_path / "p.pt")
        assert metarobot.load(tmp_path / "p.pt").meta["training_curve"] == curve


@pytest.fixture(scope="module")
def rma_goal_policy() -> RMAPolicy:
    """A tiny RMA policy on a family whose tasks differ only in their reward."""
    return _tiny_rma(DIRECTION, student_epochs=2)


@pytest.mark.parametrize("which", ["dynamics", "goal"])
def test_student_inputs_match_what_the_policy_builds_step_by_step(
    which, rma_policy, rma_goal_policy
):
    pol = rma_policy if which == "dynamics" else rma_goal_policy
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(7, 1, pol.obs_dim))
    rewards = rng.normal(scale=3.0, size=(7, 1))
    actor = RMAPolicy.batch_actor([pol])
    actor.reset(np.ones(1, dtype=bool))
    acts, step_inputs = [], []
    for t in range(7):
        actor.observe(rewards[t - 1] if t > 0 else np.zeros(1))
        on = np.clip((obs[t] - pol.obs_mean) / pol.obs_std, -10, 10)
        step_inputs.append(np.concatenate([on, actor.hist.reshape(1, -1)], axis=1))
        acts.append(actor.act_with(obs[t], np.zeros((1, 2)), None).astype(np.float64))
    built = history_inputs(
        obs,
        np.stack(acts),
        pol.obs_mean,
        pol.obs_std,
        pol.history,
        rewards if pol.reward_in_history else None,
    )
    np.testing.assert_allclose(built, np.stack(step_inputs), atol=1e-6)


def test_goal_families_put_the_reward_in_the_history(rma_policy, rma_goal_policy):
    assert TaskFeatures(DIRECTION).has_goals and not TaskFeatures(PENDULUM).has_goals
    assert rma_goal_policy.reward_in_history and not rma_policy.reward_in_history
    entry = rma_goal_policy.obs_dim + rma_goal_policy.act_dim + 1
    assert rma_goal_policy.phi[0].in_features == rma_goal_policy.obs_dim + 3 * entry


def test_reward_history_tells_apart_tasks_that_differ_only_in_reward(rma_goal_policy, tmp_path):
    # A fixed latent makes both directions act alike from the same start state, so states and
    # actions are identical: only the rewards (the sign of the progress) can tell them apart.
    fixed = rma_goal_policy.with_latent(np.zeros(2))
    tasks = sorted(task_split(DIRECTION)[1], key=lambda t: t.to_json())
    actor = RMAPolicy.batch_actor([fixed, fixed])
    out = run_actor_episodes(actor, DIRECTION, tasks, episodes=1, seeds=[3, 3], nthread=1)
    # Bit equality is guaranteed: the physics of a world is its own MuJoCo computation and the
    # actor computes every row on its own (metarobot.invariant), on any CPU.
    np.testing.assert_array_equal(actor.hist[0, :, :-1], actor.hist[1, :, :-1])
    # Entry j (j >= 1; entry 0 still waits for its reward) holds the reward of step T-1-j.
    horizon = out.rewards.shape[-1]
    for w in range(2):
        np.testing.assert_allclose(
            actor.hist[w, 1:, -1], out.rewards[w, 0, horizon - 2 : horizon - 4 : -1]
        )
    assert not np.array_equal(actor.hist[0, 1:, -1], actor.hist[1, 1:, -1])
    assert not np.array_equal(actor.z_sum[0], actor.z_sum[1])  # so φ's estimates differ
    path = tmp_path / "goal.pt"
    metarobot.save(rma_goal_policy, path)
    loaded = metarobot.load(path)
    assert loaded.reward_in_history
    rng = np.random.default_rng(2)
    rma_goal_policy.reset()
    loaded.reset()
    for _ in range(6):
        obs, r = rng.normal(size=rma_goal_policy.obs_dim), float(rng.normal())
        np.testing.assert_array_equal(
            rma_goal_policy.act(obs, deterministic=True, reward=r),
            loaded.act(obs, deterministic=True, reward=r),
        )


@pytest.mark.parametrize("which", ["rma", "recurrent"])
def test_state_carries_within_an_episode_and_resets(which, rma_policy, rec_policy):
    pol = rma_policy if which == "rma" else rec_policy
    obs = np.array([0.01, -0.02, 0.03, 0.5])
    pol.reset()
    first = [pol.act(obs, deterministic=True, reward=1.0) for _ in range(4)]
    assert not np.allclose(first[0], first[-1])  # the same observation, another context
    pol.reset()
    again = [pol.act(obs, deterministic=True, reward=1.0) for _ in range(4)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))


@pytest.mark.parametrize("which", ["rma", "recurrent"])
def test_actions_are_clipped_to_the_action_space(which, rma_policy, rec_policy):
    pol = rma_policy if which == "rma" else rec_policy
    pol.reset()
    big = np.array([5.0, -5.0, 50.0, -50.0])
    for _ in range(5):
        a = pol.act(big, deterministic=False)
        assert np.all(a >= -3.0) and np.all(a <= 3.0)


@pytest.mark.parametrize("which", ["rma", "recurrent"])
def test_save_load_gives_identical_actions_including_adapted_state(
    which, rma_policy, rec_policy, tmp_path
):
    if which == "rma":
        pol = rma_policy.with_latent(np.array([0.3, -0.2]))
    else:
        pol = rec_policy.with_initial_state(np.full(8, 0.1))
    path = tmp_path / f"{which}.pt"
    metarobot.save(pol, path)
    loaded = metarobot.load(path)
    assert type(loaded) is type(pol)
    rng = np.random.default_rng(1)
    pol.reset()
    loaded.reset()
    for _ in range(10):
        obs = rng.normal(size=4)
        np.testing.assert_array_equal(
            pol.act(obs, deterministic=True, reward=0.5),
            loaded.act(obs, deterministic=True, reward=0.5),
        )


def test_recurrent_rounds_need_adam(rec_policy):
    with pytest.raises(ValueError, match="optimizer must be 'adam'"):
        metarobot.adapt_many(rec_policy, PENDULUM, task_split(PENDULUM)[1][:1], rounds=2, nthread=1)


def test_recurrent_rounds_fine_tune_the_gru(rec_policy):
    tasks = task_split(PENDULUM)[1][:2]
    kw = {"episodes": 2, "rounds": 3, "steps": 2, "lr": 1e-2, "optimizer": "adam", "seed": 4}
    final = metarobot.adapt_many(rec_policy, PENDULUM, tasks, safe=False, keep="final", **kw)
    again = metarobot.adapt_many(rec_policy, PENDULUM, tasks, safe=False, keep="final", **kw)
    before = rec_policy.net.state_dict()
    for pol, pol2 in zip(final, again, strict=True):
        assert isinstance(pol, RecurrentPolicy) and pol.net is not rec_policy.net
        assert len(pol.meta["fine_tune_returns"]) == 3  # round 1 measures the input
        after = pol.net.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before)
        for k in after:  # same seed, same fine-tuned network
            torch.testing.assert_close(after[k], pol2.net.state_dict()[k], rtol=0, atol=0)
        # Fine-tuning keeps the observation statistics the network was trained on.
        np.testing.assert_array_equal(pol.normalizer.mean, rec_policy.normalizer.mean)
    best = metarobot.adapt_many(rec_policy, PENDULUM, tasks, safe=False, **kw)
    for pol in best:
        rets = pol.meta["fine_tune_returns"]
        unchanged = all(torch.equal(before[k], pol.net.state_dict()[k]) for k in before)
        # keep="best": the input's own round is kept exactly when no later round beat it.
        assert unchanged == (max(rets) == rets[0])
    safe = metarobot.adapt_many(rec_policy, PENDULUM, tasks, **kw)
    for pol in safe:
        assert pol.meta["adapted"]["accepted"] in (True, False)
        if not pol.meta["adapted"]["accepted"]:
            assert all(torch.equal(before[k], pol.net.state_dict()[k]) for k in before)


def test_folded_actor_acts_as_the_fixed_latent_policy(rma_policy):
    z = np.array([0.4, -0.7])
    fixed, folded = rma_policy.with_latent(z), rma_policy.folded(z)
    assert isinstance(folded, metarobot.Policy)
    assert folded.meta["folded_from"] == {"algorithm": "rma", "z": [0.4, -0.7]}
    obs = np.random.default_rng(0).normal(scale=3.0, size=(6, 4))
    expected = np.stack([fixed.act(o, deterministic=True) for o in obs])
    np.testing.assert_allclose(folded.act(obs, deterministic=True), expected, atol=1e-5)


def test_fold_needs_a_latent_of_the_right_size(rma_policy):
    with pytest.raises(ValueError, match="no fixed latent"):
        rma_policy.folded()
    with pytest.raises(ValueError, match="z must be 2"):
        rma_policy.folded(np.zeros(3))


def test_rma_rounds_with_sgd_need_a_step_size(rma_policy):
    with pytest.raises(ValueError, match="lr is required"):
        metarobot.adapt_many(rma_policy, PENDULUM, task_split(PENDULUM)[1][:1], rounds=2)


def test_rma_rounds_fine_tune_the_folded_actor(rma_policy):
    tasks = task_split(PENDULUM)[1][:2]
    kw = {"episodes": 2, "steps": 3, "lr": 1e-2, "optimizer": "adam", "seed": 3, "nthread": 1}
    unsafe = metarobot.adapt_many(rma_policy, PENDULUM, tasks, rounds=3, safe=False, **kw)
    one = metarobot.adapt_many(rma_policy, PENDULUM, tasks, rounds=1, safe=False, **kw)
    for u, o in zip(unsafe, one, strict=True):
        # Round 1 is the fixed-latent adaptation; later rounds start from its folded actor.
        assert isinstance(u, metarobot.Policy) and "2 rounds" in u.meta["adapted"]["update"]
        assert u.meta["folded_from"]["z"] == pytest.approx(list(o.z_fixed))
    moved = [
        max(float((u.params[k] - o.folded().params[k]).abs().max()) for k in u.params)
        for u, o in zip(unsafe, one, strict=True)
    ]
    assert max(moved) > 0  # keep="best" may keep the start on a task, not on every one
    # Same seed, same result; with the safeguard each task gets the candidate or the input.
    again = metarobot.adapt_many(rma_policy, PENDULUM, tasks, rounds=3, safe=False, **kw)
    for a, b in zip(unsafe, again, strict=True):
        for k in a.params:
            torch.testing.assert_close(a.params[k], b.params[k], rtol=0, atol=0)
    safe = metarobot.adapt_many(rma_policy, PENDULUM, tasks, rounds=3, **kw)
    for pol in safe:
        info = pol.meta["adapted"]
        assert isinstance(pol, metarobot.Policy) == info["accepted"]


@pytest.mark.parametrize("which", ["rma", "recurrent"])
def test_a_world_does_not_depend_on_the_batch(which, rma_policy, rec_policy):
    pol = rma_policy if which == "rma" else rec_policy
    tasks = task_split(PENDULUM)[1][:3]
    one = run_actor_episodes(
        type(pol).batch_actor([pol]), PENDULUM, tasks[:1], episodes=1, seeds=[5], nthread=1
    )
    three = run_actor_episodes(
        type(pol).batch_actor([pol] * 3), PENDULUM, tasks, episodes=1, seeds=[5, 6, 7], nthread=1
    )
    # Exact: each world's physics and each actor row are computed on their own, whatever N.
    np.testing.assert_array_equal(one.rewards[0], three.rewards[0])


def test_observation_shape_is_checked(rma_policy):
    with pytest.raises(ValueError, match="obs has shape"):
        rma_policy.act(np.zeros(5))
    with pytest.raises(ValueError, match="one observation"):
        rma_policy.act(np.zeros((2, 4)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"history": 0}, "history"), ({"z_dim": 0}, "z_dim"), ({"teacher_steps": 0}, "teacher_steps")],
)
def test_rma_rejects_bad_settings(kwargs, match):
    args = {"teacher_steps": 100, "student_steps": 100, **kwargs}
    with pytest.raises(ValueError, match=match):
        train_rma(PENDULUM, **args)


def test_recurrent_rejects_bad_settings():
    with pytest.raises(ValueError, match="steps"):
        train_recurrent(PENDULUM, steps=0)
    with pytest.raises(ValueError, match="minibatches"):
        train_recurrent(PENDULUM, steps=10, n_envs=2, settings=PPOSettings(minibatches=0))


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match=r"unknown method .nope.*rma"):
        registry.get("nope")
    with pytest.raises(ValueError, match="methods: unknown"):
        parse_config({"name": "x", "family": PENDULUM, "methods": ["nope", "oracle"]})


def test_budget_is_enforced_and_names_the_method():
    cfg = {
        "name": "x",
        "family": PENDULUM,
        "methods": ["domain_randomization", "rma", "oracle"],
        "budget_steps": 100_000,
        "baselines": {"dr_timesteps": 90_000},
        "rma": {"teacher_steps": 90_000, "student_steps": 20_000},
    }
    with pytest.raises(ValueError, match="'rma' would use up to 110,000"):
        parse_config(cfg)
    cfg["rma"]["student_steps"] = 10_000
    parse_config(cfg)  # fits
    cfg["baselines"]["dr_timesteps"] = 100_001
    with pytest.raises(ValueError, match="'domain_randomization'"):
        parse_config(cfg)


def test_checkpoint_kind_dispatch(rma_policy, rec_policy, tmp_path):
    for pol in (rma_policy, rec_policy):
        path = tmp_path / f"{pol.kind}.pt"
        pol.save(str(path))
        raw = torch.load(path, weights_only=True)
        assert raw["net"]["kind"] == pol.kind
        assert metarobot.load(path).meta["algorithm"] == pol.kind


def test_to_sb3_refuses_stateful_policies(rec_policy):
    import gymnasium as gym

    from metarobot.sb3 import to_sb3

    env = gym.make(PENDULUM)
    with pytest.raises(ValueError, match="recurrent policy carries per-episode context"):
        to_sb3(rec_policy, env)
    env.close()


def test_bptt_chunks_start_from_the_rollout_state():
    """Chunked BPTT with the stored states reproduces the whole-episode forward exactly."""
    from metarobot.ppo import _chunks
    from metarobot.recurrent import GRUActorCritic

    torch.manual_seed(0)
    net = GRUActorCritic(obs_dim=3, act_dim=1, hidden=8)
    n, t_len, length = 3, 11, 4
    x = torch.randn(n, t_len, 5)
    mask = torch.ones(n, t_len)
    mask[1, 7:] = 0  # a short episode: its last chunk holds no step and is dropped
    with torch.no_grad():
        mu_full, _, _ = net(x)
        h, states = None, []
        for t in range(t_len):  # the rollout: one step at a time, keeping each start state
            states.append(torch.zeros(1, n, 8) if h is None else h)
            _, _, h = net(x[:, t : t + 1], h)
    stored = torch.stack(states, 0).permute(2, 0, 1, 3)  # [N, T, layers, H]
    seqs, h0 = _chunks({"x": x, "w": mask}, stored, mask, length)
    assert seqs["x"].shape == (3 * 3 - 1, length, 5)  # 3 chunks per episode, one dropped
    with torch.no_grad():
        mu_c, _, _ = net(seqs["x"], h0)
    keep = torch.nn.functional.pad(mask, [0, 1]).reshape(-1, length).sum(1) > 0
    ref_mu = torch.nn.functional.pad(mu_full, [0, 0, 0, 1]).reshape(-1, length, 1)[keep]
    valid = seqs["w"] > 0
    torch.testing.assert_close(mu_c[valid], ref_mu[valid], rtol=1e-5, atol=1e-6)


def test_recurrent_trains_with_bptt_and_rejects_a_bad_length():
    pol = train_recurrent(
        PENDULUM,
        steps=400,
        seed=0,
        n_envs=2,
        nthread=1,
        hidden=8,
        settings=PPOSettings(minibatches=2, epochs=1, bptt=4),
    )
    assert pol.meta["env_steps"] <= 400
    with pytest.raises(ValueError, match="bptt"):
        train_recurrent(PENDULUM, steps=400, n_envs=2, settings=PPOSettings(bptt=0))


def test_reward_scaling_divides_by_the_std_of_discounted_returns():
    from metarobot.policies import RunningNorm
    from metarobot.ppo import _scaled_rewards

    rew = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]])
    mask = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # the second episode lasts one step
    stats = RunningNorm(1)
    out = _scaled_rewards({"rew": rew, "mask": mask, "ret": 5.0}, stats, gamma=0.5)
    returns = np.array([1.0, 1.5, 1.75, 2.0])  # G_t = r_t + γ G_{t-1}, valid steps only
    np.testing.assert_allclose(stats.var[0], returns.var(), rtol=1e-3)
    np.testing.assert_allclose(out["rew"], rew / np.sqrt(returns.var() + 1e-8), rtol=1e-3)
    assert out["ret"] == 5.0  # the logged return stays raw


def test_policies_that_cannot_share_a_run_are_grouped(rma_policy, rec_policy):
    tasks = task_split(PENDULUM)[1][:3]
    folded = rma_policy.folded(np.array([0.2, 0.1]))
    tuned = rec_policy.with_initial_state(np.full(8, 0.05))
    tuned.net = copy.deepcopy(rec_policy.net)  # its own network: its own run
    mixed = [rma_policy, folded, tuned]
    kw = {"episodes": 2, "nthread": 1, "rewards": True}
    rets, div, seeds, rew = episode_returns(mixed, PENDULUM, tasks, seeds=[1, 2, 3], **kw)
    for i, pol in enumerate(mixed):
        r1, d1, s1, w1 = episode_returns([pol], PENDULUM, tasks[i : i + 1], seeds=[i + 1], **kw)
        np.testing.assert_array_equal(rets[i], r1[0])
        np.testing.assert_array_equal(div[i], d1[0])
        assert seeds[2 * i : 2 * i + 2] == s1
        np.testing.assert_array_equal(rew[i, :, : w1.shape[-1]], w1[0])
