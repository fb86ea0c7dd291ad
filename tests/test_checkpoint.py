"""Atomic policy checkpoints with metadata: save / load / check_compatible."""

from __future__ import annotations

import os
import re

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import torch

import metarobot
from metarobot import Reptile
from metarobot.checkpoint import FORMAT, check_compatible, load, save_policy

PENDULUM = "metarobot/InvertedPendulumRandParams-v0"
CHEETAH = "metarobot/HalfCheetahRandParams-v0"
WALKER = "metarobot/Walker2dRandParams-v0"


@pytest.fixture
def policy():
    """A policy whose every part differs from a fresh one's."""
    pol = metarobot.make_policy(PENDULUM, hidden=(8, 8), seed=3, init_log_std=-0.3)
    g = torch.Generator().manual_seed(0)
    pol.params = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in pol.params.items()}
    pol.inner_lr = {k: torch.rand(v.shape, generator=g) for k, v in pol.params.items()}
    pol.normalizer.update(np.random.default_rng(0).normal(1.0, 2.0, size=(30, 4)))
    pol.normalizer.clip = 7.0
    pol.meta["note"] = "hello"
    return pol


def assert_same_policy(a, b):
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
        assert torch.equal(a.inner_lr[k], b.inner_lr[k]), k
    np.testing.assert_array_equal(a.normalizer.mean, b.normalizer.mean)
    np.testing.assert_array_equal(a.normalizer.var, b.normalizer.var)
    assert a.normalizer.count == b.normalizer.count
    assert a.normalizer.clip == b.normalizer.clip
    assert a.net.hidden == b.net.hidden


def valid_bytes(policy, tmp_path):
    path = tmp_path / "valid.pt"
    policy.save(str(path))
    return path.read_bytes()


# ---------------------------------------------------------------------------- round trip
def test_save_load_round_trip(policy, tmp_path):
    path = tmp_path / "policy.pt"
    policy.save(str(path))
    loaded = metarobot.load(path)
    assert_same_policy(loaded, policy)
    saved_with = loaded.meta.pop("saved_with")
    assert saved_with["metarobot"] == metarobot.__version__
    assert loaded.meta == policy.meta
    assert loaded.device.type == "cpu"
    obs = np.random.default_rng(1).normal(0.0, 2.0, size=(10, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        loaded.act(obs, deterministic=True), policy.act(obs, deterministic=True)
    )
    np.testing.assert_array_equal(
        loaded.act(obs, rng=np.random.default_rng(0)),
        policy.act(obs, rng=np.random.default_rng(0)),
    )
    # The loaded policy saves and loads again unchanged.
    loaded.save(tmp_path / "again.pt")
    assert_same_policy(load(tmp_path / "again.pt"), policy)


def test_loaded_policy_adapts_like_the_original(policy, tmp_path):
    path = tmp_path / "p.pt"
    policy.save(path)
    task = metarobot.envs.task_split(PENDULUM)[0][0]
    kw = {"task": task, "episodes": 1, "steps": 1, "seed": 0, "device": "cpu", "nthread": 1}
    a = metarobot.adapt(policy, PENDULUM, **kw)
    b = metarobot.adapt(load(path), PENDULUM, **kw)
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k


def test_file_holds_plain_data_only(policy, tmp_path):
    path = tmp_path / "p.pt"
    policy.save(path)
    raw = torch.load(path, weights_only=True)  # would fail on pickled objects
    assert raw["format"] == FORMAT
    assert raw["net"] == {"kind": "mlp", "obs_dim": 4, "act_dim": 1, "hidden": [8, 8]}


# ---------------------------------------------------------------------------- atomic writes
def test_save_is_atomic_and_overwrites(policy, tmp_path):
    folder = tmp_path / "ckpt" / "nested"
    path = folder / "p.pt"
    save_policy(policy, path)  # creates missing folders
    assert sorted(os.listdir(folder)) == ["p.pt"]

    other = metarobot.make_policy(PENDULUM, hidden=(8, 8), seed=99)
    other.save(str(path))  # overwrite
    assert sorted(os.listdir(folder)) == ["p.pt"]
    loaded = load(path)
    for k in other.params:
        assert torch.equal(loaded.params[k], other.params[k]), k
    assert not torch.equal(loaded.params["mean.0.weight"], policy.params["mean.0.weight"])


def test_failed_save_leaves_old_file_and_no_temp_files(policy, tmp_path, monkeypatch):
    path = tmp_path / "p.pt"
    policy.save(path)
    good = path.read_bytes()

    def broken_save(obj, fh, *args, **kwargs):
        fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    other = metarobot.make_policy(PENDULUM, hidden=(8, 8), seed=99)
    with pytest.raises(OSError, match="disk full"):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["p.pt"]
    assert_same_policy(load(path), policy)


# ---------------------------------------------------------------------------- damaged files
def test_truncated_file_raises_value_error_naming_it(policy, tmp_path):
    data = valid_bytes(policy, tmp_path)
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


@pytest.mark.parametrize("size", [0, 1, 100, 4096])
def test_random_bytes_raise_value_error_naming_file(tmp_path, size):
    path = tmp_path / f"garbage{size}.pt"
    path.write_bytes(np.random.default_rng(size).bytes(size))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


def test_other_torch_file_raises_value_error(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not a metarobot policy"):
        load(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


def test_damaged_contents_raise_value_error(policy, tmp_path):
    path = tmp_path / "p.pt"
    policy.save(path)
    raw = torch.load(path, weights_only=True)
    raw["params"]["mean.0.weight"] = torch.zeros(3, 3)
    torch.save(raw, path)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)
    del raw["params"]
    torch.save(raw, path)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


def test_newer_format_raises(policy, tmp_path):
    path = tmp_path / "p.pt"
    policy.save(path)
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 999
    torch.save(raw, path)
    with pytest.raises(ValueError, match="newer"):
        load(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        load(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError):
        load(tmp_path)  # a folder is not a checkpoint


# ---------------------------------------------------------------------------- env checks
def test_load_checks_robot_of_same_sized_env(tmp_path):
    cheetah = metarobot.make_policy(CHEETAH, hidden=(8,))
    path = tmp_path / "cheetah.pt"
    cheetah.save(path)
    walker = gym.make(WALKER)
    try:
        assert walker.observation_space.shape == (cheetah.obs_dim,)
        assert walker.action_space.shape == (cheetah.act_dim,)
        with pytest.raises(ValueError) as err:
            load(path, env=walker)
        msg = str(err.value)
        assert "HalfCheetah" in msg and "Walker2d" in msg
        with pytest.raises(ValueError, match="Walker2d"):
            check_compatible(cheetah, walker)
    finally:
        walker.close()
    same = gym.make(CHEETAH)
    try:
        loaded = load(path, env=same)  # same robot: fine
        assert loaded.meta["robot"] == "HalfCheetahEnv"
    finally:
        same.close()


def test_load_checks_sizes(tmp_path):
    cheetah = metarobot.make_policy(CHEETAH, hidden=(8,))
    path = tmp_path / "cheetah.pt"
    cheetah.save(path)
    env = gym.make(PENDULUM)
    try:
        with pytest.raises(ValueError, match=r"\(17,\).*\(4,\)"):
            load(path, env=env)
    finally:
        env.close()


# ---------------------------------------------------------------------------- metadata
def test_metadata_family_spaces_and_versions(tmp_path):
    pol = metarobot.make_policy(CHEETAH, hidden=(8,))
    path = tmp_path / "p.pt"
    pol.save(path)
    loaded = load(path)
    assert loaded.meta["family"] == CHEETAH
    assert loaded.meta["robot"] == "HalfCheetahEnv"
    assert loaded.meta["observation_shape"] == [17]
    assert len(loaded.meta["action_low"]) == 6
    raw = torch.load(path, weights_only=True)
    assert raw["versions"] == {
        "metarobot": metarobot.__version__,
        "torch": str(torch.__version__),
        "gymnasium": gym.__version__,
        "mujoco": mujoco.__version__,
        "numpy": np.__version__,
    }


def test_metadata_after_training_names_algorithm(tmp_path):
    learner = Reptile(
        PENDULUM, device="cpu", nthread=1, meta_batch=2, episodes=1, inner_steps=1, hidden=(8,)
    )
    path = tmp_path / "reptile.pt"
    try:
        learner.train(1, checkpoint_path=path, progress=False)
    finally:
        learner.close()
    meta = load(path).meta
    assert meta["algorithm"] == "reptile"
    assert meta["family"] == PENDULUM
    assert meta["iterations"] == 1
    assert meta["inner_steps"] == 1
    assert meta["config"]["meta_batch"] == 2 and meta["config"]["hidden"] == [8]
    assert sorted(os.listdir(tmp_path)) == ["reptile.pt"]


def test_saved_file_has_normal_permissions(policy, tmp_path):
    # A checkpoint should be as readable as any file the user writes (umask applies), not
    # private to its owner: tempfile.mkstemp creates 0600 files and os.replace keeps that mode.
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    expected = plain.stat().st_mode & 0o777
    path = tmp_path / "p.pt"
    policy.save(path)
    assert path.stat().st_mode & 0o777 == expected, oct(path.stat().st_mode & 0o777)
