"""The policies shipped in experiments/checkpoints load and adapt out of the box."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import metarobot
import metarobot.envs as me

CKPTS = sorted((Path(__file__).parent.parent / "experiments" / "checkpoints").glob("*.pt"))


def test_checkpoints_are_shipped():
    assert CKPTS, "experiments/checkpoints holds the meta-policies of the results tables"


@pytest.mark.parametrize("path", CKPTS, ids=[p.stem for p in CKPTS])
def test_shipped_checkpoint_loads_and_adapts(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    family = f"metarobot/{path.stem.split('-')[0]}-v0"
    policy = metarobot.load(path, env=gym.make(family))
    assert policy.meta["family"] == family
    assert policy.meta["algorithm"] in path.stem
    task = me.task_split(family)[1][0]
    adapted = metarobot.adapt(policy, family, task=task, episodes=1, seed=0, device="cpu")
    adapted.reset()  # every policy type starts an episode this way (a no-op when stateless)
    obs = np.zeros(policy.obs_dim, dtype=np.float32)
    assert np.all(np.isfinite(adapted.act(obs, deterministic=True)))
