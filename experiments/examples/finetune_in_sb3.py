"""Fine-tune a metarobot policy inside stable-baselines3 (≈1 min on a CPU).

A quick meta-trained policy is exported with ``to_sb3``, saved as a plain SB3 zip, reloaded
with ``PPO.load`` and trained further with SB3's own ``learn()`` on one held-out task.

    python experiments/examples/finetune_in_sb3.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import metarobot
import metarobot.envs as me
from metarobot.sb3 import to_sb3

FAMILY = "metarobot/InvertedPendulumRandParams-v0"


def main() -> None:
    meta = metarobot.MAML(
        FAMILY, meta_batch=4, episodes=1, post_episodes=1, hidden=(32, 32), seed=0, device="cpu"
    ).train(5, progress=False)
    task = me.task_split(FAMILY)[1][0]
    env = Monitor(gym.make(FAMILY))
    env.get_wrapper_attr("set_task")(task)
    model = to_sb3(meta, env, algo="PPO", n_steps=512, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "meta_policy.zip"
        model.save(path)
        model = PPO.load(path, env=env, device="cpu")  # a plain SB3 model from here on
    before, _ = evaluate_policy(model, env, n_eval_episodes=3, deterministic=True)
    model.learn(4096)
    after, _ = evaluate_policy(model, env, n_eval_episodes=3, deterministic=True)
    print(
        f"held-out task {task}: mean return {before:.1f} before, {after:.1f} after "
        "4096 steps of SB3 PPO fine-tuning"
    )
    assert np.isfinite(after)


if __name__ == "__main__":
    main()
