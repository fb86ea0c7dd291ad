"""Policy, GaussianMLP, RunningNorm, gaussian_log_prob and resolve_device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarobot.policies import GaussianMLP, Policy, RunningNorm, gaussian_log_prob, resolve_device


def _params_equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- construction
def test_create_is_deterministic_by_seed():
    a = Policy.create(5, 2, hidden=(8, 8), seed=3)
    b = Policy.create(5, 2, hidden=(8, 8), seed=3)
    c = Policy.create(5, 2, hidden=(8, 8), seed=4)
    assert _params_equal(a.params, b.params)
    assert not _params_equal(a.params, c.params)
    obs = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_array_equal(a.act(obs, deterministic=True), b.act(obs, deterministic=True))


def test_create_leaves_global_torch_rng_alone():
    # House style (DESIGN.md): every random draw takes an explicit generator/seed; nothing
    # touches global RNGs. nn.Linear's default init draws from torch's global RNG.
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Policy.create(5, 2, seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_create_shapes_and_metadata():
    p = Policy.create(6, 3, hidden=(16, 8), init_log_std=-0.5, inner_lr=0.25, seed=0)
    shapes = {k: tuple(v.shape) for k, v in p.params.items()}
    assert shapes == {
        "mean.0.weight": (16, 6),
        "mean.0.bias": (16,),
        "mean.2.weight": (8, 16),
        "mean.2.bias": (8,),
        "mean.4.weight": (3, 8),
        "mean.4.bias": (3,),
        "log_std": (3,),
    }
    assert torch.allclose(p.params["log_std"], torch.full((3,), -0.5))
    assert p.inner_lr.keys() == p.params.keys()
    for k, v in p.inner_lr.items():
        assert v.shape == p.params[k].shape
        assert torch.all(v == 0.25)
    assert p.obs_dim == 6 and p.act_dim == 3
    assert p.meta["hidden"] == [16, 8]


@pytest.mark.parametrize(("name", "args"), [("obs_dim", (0, 2)), ("act_dim", (3, 0))])
def test_create_rejects_bad_sizes(name, args):
    with pytest.raises(ValueError, match=name):
        Policy.create(*args)


@pytest.mark.parametrize("lr", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_inner_lr_rejected(lr):
    with pytest.raises(ValueError, match="inner_lr"):
        Policy.create(3, 1, inner_lr=lr)


def test_clone_is_independent():
    p = Policy.create(4, 1, hidden=(4,), seed=0)
    q = p.clone()
    q.params["mean.0.weight"].add_(1.0)
    q.inner_lr["log_std"].mul_(3.0)
    q.normalizer.update(np.ones((5, 4)))
    q.meta["x"] = 1
    assert not torch.equal(p.params["mean.0.weight"], q.params["mean.0.weight"])
    assert torch.all(p.inner_lr["log_std"] == 0.1)
    np.testing.assert_array_equal(p.normalizer.mean, np.zeros(4))
    assert "x" not in p.meta


# ---------------------------------------------------------------------------- act
def test_act_shapes_single_and_batch():
    p = Policy.create(4, 2, hidden=(8,), seed=0)
    rng = np.random.default_rng(0)
    single = p.act(rng.standard_normal(4))
    assert single.shape == (2,) and single.dtype == np.float32
    batch = p.act(rng.standard_normal((7, 4)))
    assert batch.shape == (7, 2) and batch.dtype == np.float32
    det = p.act(rng.standard_normal((7, 4)), deterministic=True)
    assert det.shape == (7, 2)
    # SB3-style predict
    action, state = p.predict(rng.standard_normal(4), deterministic=True)
    assert action.shape == (2,) and state is None


def test_deterministic_act_is_the_mean():
    p = Policy.create(4, 2, hidden=(8,), seed=1)
    # A non-trivial normalizer and last layer, so the mean is not ~0.
    p.normalizer.update(np.random.default_rng(1).normal(2.0, 3.0, size=(50, 4)))
    p.params["mean.2.weight"] = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    obs = np.random.default_rng(2).normal(1.0, 2.0, size=(6, 4)).astype(np.float32)
    mean_t, inv_t = p.normalizer.torch(torch.device("cpu"))
    x = torch.clamp((torch.as_tensor(obs) - mean_t) * inv_t, -10, 10)
    w0, b0 = p.params["mean.0.weight"], p.params["mean.0.bias"]
    w1, b1 = p.params["mean.2.weight"], p.params["mean.2.bias"]
    ref = (torch.tanh(x @ w0.T + b0) @ w1.T + b1).numpy()
    got = p.act(obs, deterministic=True)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert np.abs(got).max() > 0.1
    # Stochastic actions differ from the mean, with the policy's std (exp(0) = 1).
    samples = p.act(np.repeat(obs[:1], 4000, axis=0), rng=np.random.default_rng(0))
    assert not np.allclose(samples, ref[0])
    np.testing.assert_allclose(samples.mean(0), ref[0], atol=0.1)
    np.testing.assert_allclose(samples.std(0), 1.0, atol=0.05)


def test_act_noise_uses_given_rng():
    p = Policy.create(4, 2, hidden=(8,), seed=1)
    obs = np.zeros((3, 4), dtype=np.float32)
    a = p.act(obs, rng=np.random.default_rng(5))
    b = p.act(obs, rng=np.random.default_rng(5))
    c = p.act(obs, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("shape", [(5,), (2, 3), (3, 4, 5), ()])
def test_wrong_obs_shape_raises(shape):
    p = Policy.create(4, 1, hidden=(4,), seed=0)
    with pytest.raises(ValueError, match=r"size 4"):
        p.act(np.zeros(shape, dtype=np.float32))


# ---------------------------------------------------------------------------- devices
def test_resolve_device_known():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("bad", ["bogus", "tpu", "meta", ""])
def test_resolve_device_unknown_raises(bad):
    with pytest.raises(ValueError, match="device"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("dev", ["cuda", "cuda:0", torch.device("cuda")])
def test_resolve_device_cuda_without_gpu_raises(dev):
    with pytest.raises(ValueError, match="CUDA"):
        resolve_device(dev)


# ---------------------------------------------------------------------------- RunningNorm
def test_running_norm_matches_numpy():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 3)) * [1.0, 10.0, 0.1] for n in (17, 1, 40, 5)]
    norm = RunningNorm(3)
    for b in batches:
        norm.update(b)
    full = np.concatenate(batches)
    np.testing.assert_allclose(norm.mean, full.mean(0), rtol=1e-5)
    # The prior (mean 0, var 1, count 1e-4) shifts the result by ~1e-4 / N.
    np.testing.assert_allclose(norm.var, full.var(0), rtol=1e-5, atol=1e-5)
    assert norm.count == pytest.approx(len(full), abs=1e-3)


def test_running_norm_ignores_non_finite_rows_and_round_trips():
    rng = np.random.default_rng(1)
    good = rng.standard_normal((20, 2))
    bad = np.array([[np.nan, 1.0], [np.inf, 0.0]])
    norm = RunningNorm(2, clip=5.0)
    norm.update(np.concatenate([good, bad]))
    np.testing.assert_allclose(norm.mean, good.mean(0), rtol=1e-4, atol=1e-6)
    assert np.all(np.isfinite(norm.var))
    back = RunningNorm.from_state_dict(norm.state_dict())
    np.testing.assert_array_equal(back.mean, norm.mean)
    np.testing.assert_array_equal(back.var, norm.var)
    assert back.count == norm.count and back.clip == 5.0


def test_normalize_clips():
    p = Policy.create(2, 1, hidden=(4,), seed=0)
    p.normalizer.clip = 3.0
    out = p.normalize(torch.tensor([[100.0, -100.0], [0.5, 0.0]]))
    assert torch.equal(out[0], torch.tensor([3.0, -3.0]))
    assert torch.allclose(out[1], torch.tensor([0.5, 0.0]), atol=1e-6)


# ---------------------------------------------------------------------------- log prob
def test_gaussian_log_prob_matches_torch_normal():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(5, 7, 3, generator=g)
    log_std = torch.randn(3, generator=g) * 0.5
    actions = torch.randn(5, 7, 3, generator=g) * 2
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    got = gaussian_log_prob(mean, log_std, actions)
    assert got.shape == (5, 7)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_gaussian_mlp_forward_shapes():
    net = GaussianMLP(3, 2, (5,), init_log_std=0.3, generator=torch.Generator().manual_seed(0))
    mean, log_std = net(torch.zeros(4, 3))
    assert mean.shape == (4, 2) and log_std.shape == (2,)
    assert torch.allclose(log_std, torch.full((2,), 0.3))
