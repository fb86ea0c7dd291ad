"""The MuJoCo Warp engine, on Warp's CPU device: parity with the CPU engine, per-world constants.

MuJoCo Warp compiles its kernels once per process (about 30 s for the first robot on 2 cores,
a few seconds for each further one; Warp caches them on disk). Tests that step physics are
marked slow; the error tests compile nothing.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("mujoco_warp", reason="the gpu extra (mujoco-warp, warp-lang) is not installed")

import warp as wp

import metarobot.envs as me
from metarobot.envs.randomization import Task
from metarobot.envs.warp import WarpBatchedEnv, resolve_device

wp.config.quiet = True

CHEETAH = "metarobot/HalfCheetahRandParams-v0"
# One id per robot with a kernel (Swimmer has no family: a plain id with explicit mass tasks).
ROBOTS = [
    CHEETAH,
    "metarobot/HopperRandParams-v0",
    "metarobot/Walker2dRandParams-v0",
    pytest.param(
        "metarobot/AntRandParams-v0",
        marks=pytest.mark.xfail(
            strict=True,
            reason="MuJoCo Warp 4.0.0 orients the pyramidal friction frame of a capsule-plane "
            "contact differently from MuJoCo when the capsule is within 60 degrees of the "
            "normal (fixed tangent vs the projected axis), so Ant's feet get other friction "
            "forces from the first such contact on",
        ),
    ),
    "metarobot/InvertedPendulumRandParams-v0",
    "metarobot/ReacherRandParams-v0",
    "Swimmer-v5",
]
N = 2
STEPS = 50
RTOL = 1e-3


def mass_tasks(env_id: str, n: int = N, seed: int = 0) -> list[Task]:
    """Tasks with randomized body masses (and the family's other parameters)."""
    env = gym.make(env_id)
    if env_id == "Swimmer-v5":
        rng = np.random.default_rng(seed)
        nbody = env.unwrapped.model.nbody
        return [
            Task.make(env_id, {"body_mass": tuple(rng.uniform(0.5, 2.0, nbody))}) for _ in range(n)
        ]
    tasks = env.get_wrapper_attr("sample_tasks")(n, seed=seed)
    assert all(t.scale("body_mass") for t in tasks), "the family must randomize body mass"
    return tasks


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a - b| / (|b| + 1)``: relative for large values, absolute near zero."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - b) / (np.abs(b) + 1.0)))


def pair(env_id: str, tasks: list[Task], **kwargs):
    warp_env = me.make_batched(env_id, tasks, engine="warp", device="cpu", **kwargs)
    cpu_env = me.make_batched(env_id, tasks, nthread=1, **kwargs)
    return warp_env, cpu_env


# ---------------------------------------------------------------------- errors (no compile)
def test_device_errors_name_the_bad_value():
    with pytest.raises(ValueError, match=r"device must be 'cpu', 'cuda' or 'cuda:N'.*'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="device"):
        WarpBatchedEnv(CHEETAH, num_envs=1, device="gpu0")
    with pytest.raises(ValueError, match="'nope'"):
        me.make_batched(CHEETAH, num_envs=1, engine="nope")
    with pytest.raises(ValueError, match="'cuda'"):
        me.make_batched(CHEETAH, num_envs=1, engine="batch", device="cuda")
    assert resolve_device("cpu") == "cpu"
    if wp.get_cuda_device_count() == 0:
        with pytest.raises(ValueError, match=r"device='cuda'.*no CUDA device"):
            me.make_batched(CHEETAH, num_envs=1, engine="warp", device="cuda")
        with pytest.raises(ValueError, match=r"device='cuda:3'"):
            resolve_device("cuda:3")
        assert resolve_device(None) == "cpu"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="num_envs"):
        WarpBatchedEnv(CHEETAH, device="cpu")
    with pytest.raises(ValueError, match="autoreset_mode"):
        WarpBatchedEnv(CHEETAH, num_envs=1, device="cpu", autoreset_mode="sometimes")
    with pytest.raises(ValueError, match="resample_on_reset"):
        WarpBatchedEnv(CHEETAH, num_envs=1, device="cpu", resample_on_reset=True)
    with pytest.raises(ValueError, match="kernel"):
        WarpBatchedEnv("Pusher-v5", num_envs=1, device="cpu")
    foreign = mass_tasks("metarobot/HopperRandParams-v0", 1)
    with pytest.raises(ValueError, match="family"):
        WarpBatchedEnv(CHEETAH, foreign, device="cpu")


# ---------------------------------------------------------------------- physics (slow)
@pytest.mark.slow
@pytest.mark.parametrize("env_id", ROBOTS)
def test_parity_with_cpu_engine(env_id):
    """Mass-randomized worlds agree with the CPU engine to 1e-3 relative over 50 steps."""
    tasks = mass_tasks(env_id)
    # Episodes that end (Hopper, Walker, the pendulum) restart from each world's own stream.
    warp_env, cpu_env = pair(env_id, tasks, autoreset_mode="next_step")
    ow, _ = warp_env.reset(seed=3)
    oc, _ = cpu_env.reset(seed=3)
    assert isinstance(ow, torch.Tensor) and ow.dtype == torch.float32
    assert rel_err(ow.numpy(), oc) < 1e-6
    rng = np.random.default_rng(0)
    nu = cpu_env.single_action_space.shape[0]
    for _ in range(STEPS):
        a = rng.uniform(-0.5, 0.5, (N, nu)).astype(np.float32)
        ow, rw, tw, _, iw = warp_env.step(torch.from_numpy(a))
        oc, rc, tc, _, _ = cpu_env.step(a)
        assert rel_err(ow.numpy(), oc) < RTOL
        assert rel_err(rw.numpy(), rc) < RTOL
        # Episode ends exactly: the engines agree to RTOL and no state of these seeds lies that
        # close to a termination bound, so a flip would be a real disagreement, not rounding.
        assert np.array_equal(tw.numpy(), tc)
        assert not iw["diverged"].any()


@pytest.fixture(scope="module")
def cheetah_pair():
    """HalfCheetah with mass tasks on both engines (the compile is shared by the module)."""
    tasks = mass_tasks(CHEETAH, 3, seed=1)
    warp_env, cpu_env = pair(CHEETAH, tasks, autoreset_mode="next_step", max_episode_steps=4)
    yield warp_env, cpu_env, tasks
    warp_env.close()
    cpu_env.close()


@pytest.mark.slow
def test_mass_tasks_recompute_derived_constants(cheetah_pair):
    """Per-world masses scale inertia and set_const recomputes what MuJoCo's mj_setConst does."""
    warp_env, cpu_env, _ = cheetah_pair
    warp_env.reset(seed=0)
    cpu_env.reset(seed=0)
    m = warp_env.model
    for i, world in enumerate(cpu_env.worlds):
        host = world.unwrapped.model
        for name in (
            "body_mass",
            "body_inertia",
            "body_subtreemass",
            "body_invweight0",
            "dof_invweight0",
            "actuator_acc0",
        ):
            got = wp.to_torch(getattr(m, name))[i].numpy().reshape(getattr(host, name).shape)
            np.testing.assert_allclose(got, getattr(host, name), rtol=2e-5, atol=1e-6, err_msg=name)
    inv = wp.to_torch(m.dof_invweight0).numpy()
    assert not np.allclose(inv[0], inv[1]), "worlds with other masses have other constants"


@pytest.mark.slow
def test_autoreset_and_tasks_follow_the_cpu_engine(cheetah_pair):
    """Episodes end at the time limit and restart from each world's own random stream."""
    warp_env, cpu_env, tasks = cheetah_pair
    new = mass_tasks(CHEETAH, 3, seed=7)
    ow, iw = warp_env.reset(seed=5, options={"tasks": new})
    oc, ic = cpu_env.reset(seed=5, options={"tasks": new})
    assert list(iw["task"]) == list(ic["task"]) == new
    assert warp_env.get_tasks() == new
    warp_env.set_tasks(tasks)
    cpu_env.set_tasks(tasks)
    assert warp_env.get_tasks() == tasks
    rng = np.random.default_rng(1)
    for _ in range(10):  # two autoresets: the second episode runs the tasks set above
        a = rng.uniform(-1, 1, (3, 6))
        ow, rw, tw, trw, _ = warp_env.step(torch.from_numpy(a))
        oc, rc, tc, trc, _ = cpu_env.step(a)
        assert rel_err(ow.numpy(), oc) < RTOL and rel_err(rw.numpy(), rc) < RTOL
        assert np.array_equal(trw.numpy(), trc) and np.array_equal(tw.numpy(), tc)
    assert warp_env.get_tasks() == tasks


@pytest.mark.slow
def test_same_step_autoreset_and_numpy_output():
    tasks = mass_tasks(CHEETAH, 2, seed=2)
    kwargs = {"autoreset_mode": "same_step", "max_episode_steps": 3}
    warp_env = me.make_batched(
        CHEETAH, tasks, engine="warp", device="cpu", as_torch=False, **kwargs
    )
    cpu_env = me.make_batched(CHEETAH, tasks, nthread=1, **kwargs)
    ow, _ = warp_env.reset(seed=0, options={"reset_mask": [True, True]})
    oc, _ = cpu_env.reset(seed=0)
    assert isinstance(ow, np.ndarray) and ow.dtype == np.float64
    for _ in range(3):
        a = np.full((2, 6), 0.3)
        ow, rw, _, trw, iw = warp_env.step(a)
        oc, rc, _, trc, ic = cpu_env.step(a)
        assert isinstance(rw, np.ndarray) and isinstance(iw["diverged"], np.ndarray)
        assert rel_err(ow, oc) < RTOL and rel_err(rw, rc) < RTOL
    assert trw.all() and trc.all()
    assert iw["_final_obs"].all()
    for i in range(2):
        assert rel_err(iw["final_obs"][i], ic["final_obs"][i]) < RTOL
    with pytest.raises(ValueError, match="actions must have shape"):
        warp_env.step(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="finite"):
        warp_env.step(np.full((2, 6), np.nan))


@pytest.mark.slow
def test_a_diverging_world_is_contained():
    """A world whose state blows up ends (truncated, diverged), the others run on."""
    env = me.make_batched(CHEETAH, mass_tasks(CHEETAH, 2), engine="warp", device="cpu")
    obs0, _ = env.reset(seed=0)
    with torch.no_grad():
        env._qvel[1] = float("inf")  # what a blown-up solver leaves behind
    obs, rew, term, trunc, info = env.step(torch.zeros(2, 6))
    assert info["diverged"].tolist() == [False, True]
    assert trunc.tolist() == [False, True] and not term.any()
    assert torch.isfinite(obs).all() and torch.equal(obs[1], obs0[1]) and rew[1] == 0
    obs, _, _, trunc, info = env.step(torch.zeros(2, 6))  # next_step: world 1 restarts
    assert not info["diverged"].any() and torch.isfinite(obs).all()


@pytest.mark.parametrize("env_id", [p if isinstance(p, str) else p.values[0] for p in ROBOTS])
def test_torch_kernels_match_numpy_kernels(env_id):
    """The torch ports give the numpy kernels' observations and reward terms (no physics)."""
    import mujoco

    from metarobot.envs.batched import _kernel_for, _make_world
    from metarobot.envs.warp import TorchKernel

    env, rd = _make_world(env_id, {})
    base = rd.unwrapped
    kernel = _kernel_for(env, rd)
    port = TorchKernel(kernel, base.model, torch.device("cpu"))
    rng = np.random.default_rng(0)
    n, m = 5, base.model
    qpos0 = m.qpos0 + rng.normal(0, 0.1, (n, m.nq))
    qpos1 = qpos0 + rng.normal(0, 0.05, (n, m.nq))
    qvel1 = rng.normal(0, 3.0, (n, m.nv))
    action = rng.uniform(-1, 1, (n, m.nu))
    derived = {}
    if kernel.derived:  # Reacher reads body positions at the new state
        data = mujoco.MjData(m)
        xpos = []
        for q in qpos1:
            data.qpos[:] = q
            mujoco.mj_kinematics(m, data)
            xpos.append(data.xpos.copy())
        derived = {"xpos": np.stack(xpos)}
    want_obs = kernel.observation(qpos1, qvel1, **derived)
    want = kernel.step_terms(qpos0, qpos1, qvel1, action, **derived)

    def t(x):
        return torch.as_tensor(x, dtype=torch.float32)

    got_obs = port.observation(t(qpos1), t(qvel1))
    got = port.step_terms(t(qpos0), t(qpos1), t(qvel1), t(action))
    np.testing.assert_allclose(got_obs.numpy(), want_obs, rtol=1e-5, atol=1e-5)
    for key in ("reward", "x_velocity", "y_velocity", "ctrl_sq", "healthy"):
        np.testing.assert_allclose(got[key].numpy(), want[key], rtol=1e-4, atol=1e-4, err_msg=key)
    assert np.array_equal(got["terminated"].numpy(), want["terminated"])


@pytest.mark.slow
def test_reward_varying_family_follows_the_cpu_engine():
    """Goal rewards (target velocity per world) come out as the CPU engine's."""
    fid = "metarobot/HalfCheetahVel-v0"
    tasks = gym.make(fid).get_wrapper_attr("sample_tasks")(2, seed=0)
    warp_env, cpu_env = pair(fid, tasks)
    warp_env.reset(seed=0)
    cpu_env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(-1, 1, (2, 6))
        _, rw, _, _, _ = warp_env.step(torch.from_numpy(a))
        _, rc, _, _, _ = cpu_env.step(a)
        assert rel_err(rw.numpy(), rc) < RTOL


# ------------------------------------------------------------- learning on the device (slow)
REACHER = "metarobot/ReacherRandParams-v0"  # 50-step episodes, no contacts: float32 stays close


@pytest.mark.slow
def test_collect_on_warp_matches_the_cpu_engine():
    """Episodes collected on Warp (tensors on the device throughout) match the CPU engine."""
    from metarobot.policies import make_policy
    from metarobot.rollout import collect, episode_env

    policy = make_policy(REACHER, hidden=(16, 16), seed=0)
    tasks = me.task_split(REACHER)[1][:2]
    batches = []
    for engine in ("warp", "batch"):
        env = episode_env(REACHER, tasks, 2, nthread=1, engine=engine, device="cpu")
        try:
            batches.append(
                collect(
                    policy, env, policy.params, n_tasks=2, episodes=2, seeds=[5, 6], stacked=False
                )
            )
        finally:
            env.close()
    warp_b, cpu_b = batches
    assert warp_b.obs.shape == cpu_b.obs.shape  # same episode length, same layout
    assert warp_b.reset_seeds == cpu_b.reset_seeds
    assert rel_err(warp_b.raw_obs.numpy(), cpu_b.raw_obs.numpy()) < RTOL
    assert rel_err(warp_b.returns.numpy(), cpu_b.returns.numpy()) < RTOL


@pytest.mark.slow
def test_adapt_many_and_meta_training_run_on_warp():
    """adapt_many and one MAML iteration run end to end on the Warp engine."""
    import metarobot
    from metarobot.policies import make_policy

    policy = make_policy(REACHER, hidden=(16, 16), seed=0)
    tasks = me.task_split(REACHER)[1][:2]
    kw = {"episodes": 2, "seed": 0, "device": "cpu", "lr": 0.05, "safe": False}
    on_warp = metarobot.adapt_many(policy, REACHER, tasks, engine="warp", **kw)
    on_cpu = metarobot.adapt_many(policy, REACHER, tasks, engine="batch", nthread=1, **kw)
    for w, c in zip(on_warp, on_cpu, strict=True):
        step_c = np.concatenate([(c.params[k] - policy.params[k]).flatten() for k in c.params])
        step_w = np.concatenate([(w.params[k] - policy.params[k]).flatten() for k in w.params])
        # Float32 physics moves the gradient step by a small fraction of its size.
        assert np.linalg.norm(step_w - step_c) < 0.05 * np.linalg.norm(step_c)
    guarded = metarobot.adapt_many(policy, REACHER, tasks, engine="warp", **{**kw, "safe": True})
    for p in guarded:  # the safeguard ran on the device too, with the same rule
        info = p.meta["adapted"]
        gain = info["validation_return_adapted"] - info["validation_return_original"]
        assert info["validation_gain_lower_bound"] <= gain + 1e-6  # mean − margin · SE
        assert info["accepted"] == (info["validation_gain_lower_bound"] >= 0)
        assert gain >= 0 or not info["accepted"]
    learner = metarobot.MAML(
        REACHER,
        meta_batch=2,
        episodes=1,
        post_episodes=1,
        hidden=(16, 16),
        device="cpu",
        engine="warp",
        seed=0,
    )
    learner.train(1, progress=False)
    assert all(torch.isfinite(v).all() for v in learner.policy.params.values())


def _tiny_context_policies(env_id: str) -> tuple:
    """An untrained RMA policy and an untrained recurrent policy for ``env_id`` (seeded)."""
    from metarobot.policies import RunningNorm, make_policy
    from metarobot.recurrent import GRUActorCritic, RecurrentPolicy
    from metarobot.rma import RMAPolicy, _networks

    meta = make_policy(env_id).meta
    o, a = int(meta["observation_shape"][0]), len(meta["action_low"])
    cfg = {"obs_dim": o, "act_dim": a, "z_dim": 2, "history": 3, "hidden": [16, 16]}
    cfg |= {"phi_hidden": [16], "priv_dim": 3, "enc_hidden": 8, "reward_in_history": True}
    actor, phi, enc = _networks(cfg)
    rma = RMAPolicy(cfg, actor, torch.full((a,), -1.0), phi, np.zeros(o), np.ones(o), enc, meta)
    net = GRUActorCritic(o, a, 8, init_log_std=-1.0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # seeded weights (not torch's global generator)
        for p in [*actor.parameters(), *phi.parameters(), *enc.parameters()]:
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    net.init_weights(gen)
    rec = RecurrentPolicy({"obs_dim": o, "act_dim": a, "hidden": 8}, net, RunningNorm(o), meta)
    return rma, rec


@pytest.mark.slow
@pytest.mark.parametrize("which", ["rma", "recurrent"])
def test_context_policies_run_on_warp_like_the_cpu_engine(which):
    """RMA's history and the GRU state live on the device; episodes match the CPU engine."""
    import metarobot
    from metarobot.rollout import episode_returns

    pols = dict(zip(("rma", "recurrent"), _tiny_context_policies(REACHER), strict=True))
    pol = pols[which]
    tasks = me.task_split(REACHER)[1][:2]
    kw = {"episodes": 2, "seeds": [3, 4], "rewards": True}
    w_ret, w_div, w_seeds, w_rew = episode_returns(
        [pol] * 2, REACHER, tasks, engine="warp", device="cpu", **kw
    )
    c_ret, _, c_seeds, c_rew = episode_returns([pol] * 2, REACHER, tasks, nthread=1, **kw)
    assert w_seeds == c_seeds and not w_div.any()
    assert rel_err(w_rew, c_rew) < RTOL  # float32 physics and networks vs float64
    assert rel_err(w_ret, c_ret) < RTOL
    kw = {"episodes": 2, "seed": 0, "device": "cpu", "safe": False}
    on_warp = metarobot.adapt_many(pol, REACHER, tasks, engine="warp", **kw)
    on_cpu = metarobot.adapt_many(pol, REACHER, tasks, nthread=1, **kw)
    for w, c in zip(on_warp, on_cpu, strict=True):
        got = w.z_fixed if which == "rma" else w.h0
        want = c.z_fixed if which == "rma" else c.h0
        np.testing.assert_allclose(got, want, atol=1e-3)  # the latent / GRU state it adapted to
    guarded = metarobot.adapt_many(pol, REACHER, tasks, engine="warp", **{**kw, "safe": True})
    assert all("accepted" in p.meta["adapted"] for p in guarded)  # the safeguard ran on Warp
    if which == "rma":  # rounds: the folded actor's gradient rounds run on Warp as an MLP's
        tuned = metarobot.adapt_many(
            pol, REACHER, tasks, engine="warp", rounds=2, optimizer="adam", **kw
        )
        assert all(isinstance(t, metarobot.Policy) for t in tuned)


def test_warp_engine_names_bad_engines_and_what_it_cannot_fine_tune():
    import metarobot

    _, rec = _tiny_context_policies(REACHER)
    tasks = me.task_split(REACHER)[1][:1]
    with pytest.raises(ValueError, match="engine='warp' adapts recurrent policies with rounds=1"):
        metarobot.adapt_many(rec, REACHER, tasks, engine="warp", rounds=2, optimizer="adam")
    with pytest.raises(ValueError, match=r"engine must be one of \['batch', 'warp'\], got 'gpu'"):
        metarobot.adapt_many(rec, REACHER, tasks, engine="gpu")
    with pytest.raises(ValueError, match="engine must be one of"):
        metarobot.MAML(REACHER, engine="gpu")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["recurrent", "rma"])
def test_episodic_ppo_trains_on_warp_like_the_cpu_engine(method):
    """The recurrent policy (bptt from recorded GRU states) and RMA's teacher (privileged
    features; the feedforward path of DR and the oracles) train with device-resident rollouts;
    same seeds, same noise: the same training, up to float32."""
    from metarobot.ppo import PPOSettings
    from metarobot.recurrent import train_recurrent
    from metarobot.rma import train_rma

    tasks = me.task_split(REACHER)[0][:4]
    ps = PPOSettings(minibatches=2, epochs=2, batch_steps=1, bptt=10)

    def train(**engine):
        if method == "recurrent":
            return train_recurrent(
                REACHER, steps=800, seed=0, tasks=tasks, n_envs=4, hidden=16, settings=ps, **engine
            )
        return train_rma(
            REACHER,
            teacher_steps=800,
            student_steps=200,
            seed=0,
            tasks=tasks,
            n_envs=4,
            student_envs=4,
            settings=ps,
            **engine,
        )

    on_warp, on_cpu = train(engine="warp", device="cpu"), train()
    key = "teacher_final_return" if method == "rma" else "final_return"
    assert on_warp.meta["env_steps"] == on_cpu.meta["env_steps"]
    assert abs(on_warp.meta[key] - on_cpu.meta[key]) < RTOL * (abs(on_cpu.meta[key]) + 1)
    assert on_warp.meta["teacher_engine" if method == "rma" else "engine"] == "warp"


def test_episodic_ppo_names_a_bad_engine_or_device():
    from metarobot.episodic_mlp import train_ppo_mlp

    tasks = me.task_split(REACHER)[0][:1]
    with pytest.raises(ValueError, match=r"engine must be one of \['batch', 'warp'\]"):
        train_ppo_mlp(REACHER, tasks, 400, engine="gpu")
    with pytest.raises(ValueError, match="device must be None or 'cpu' for engine='batch'"):
        train_ppo_mlp(REACHER, tasks, 400, device="cuda")


@pytest.mark.slow
def test_a_table_trains_on_warp_and_evaluates_on_the_cpu_engine(tmp_path):
    import metarobot
    from metarobot.config import parse_config
    from metarobot.experiment import run_experiment

    cfg = parse_config(
        {
            "name": "warp-table",
            "family": REACHER,
            "methods": ["domain_randomization", "oracle"],
            "engine": "warp",
            "device": "cpu",
            "baselines": {"trainer": "episodic", "dr_timesteps": 200, "oracle_timesteps": 200},
            "rma": {"teacher_envs": 4},
            "eval": {"ks": [0], "seeds": [0], "episodes": 1, "n_test_tasks": 1},
        }
    )
    res = run_experiment(cfg, tmp_path / "out", progress=False)
    assert {r["method"] for r in res["records"]} == {"domain_randomization", "oracle"}
    assert all(np.isfinite(r["return"]) for r in res["records"])
    ck = tmp_path / "out" / "checkpoints"
    for unit in ("domain_randomization-s0", "oracle-t0-s0"):
        assert metarobot.load(ck / f"{unit}.pt").meta["engine"] == "warp"


def test_table_engine_and_device_are_checked():
    from metarobot.config import parse_config

    base = {"name": "t", "family": REACHER, "methods": ["oracle"]}
    with pytest.raises(ValueError, match=r"engine must be one of \['batch', 'warp'\], got 'gpu'"):
        parse_config({**base, "engine": "gpu"})
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        parse_config({**base, "engine": "warp", "device": "tpu"})
