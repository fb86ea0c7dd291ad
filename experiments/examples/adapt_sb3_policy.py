"""Adapt an SB3-trained policy with metarobot (≈1 min on a CPU).

Trains a small PPO policy with domain randomization (SB3 on metarobot's batched VecEnv), then
adapts it to a held-out task with ``metarobot.adapt``, which takes and returns SB3 models.

    python experiments/examples/adapt_sb3_policy.py
"""

from __future__ import annotations

import gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import metarobot
import metarobot.envs as me
from metarobot.sb3 import make_sb3_vec_env

FAMILY = "metarobot/InvertedPendulumRandParams-v0"


def main() -> None:
    train, test = me.task_split(FAMILY)
    venv = make_sb3_vec_env(FAMILY, train[:8], resample_on_reset=True)
    model = PPO("MlpPolicy", venv, n_steps=256, seed=0, device="cpu", verbose=0).learn(8192)
    env = Monitor(gym.make(FAMILY))
    env.get_wrapper_attr("set_task")(test[0])
    before, _ = evaluate_policy(model, env, n_eval_episodes=3, deterministic=True)
    adapted = metarobot.adapt(model, env, episodes=3, steps=3, lr=0.01, seed=0)
    after, _ = evaluate_policy(adapted, env, n_eval_episodes=3, deterministic=True)
    print(f"{type(adapted).__name__} adapted to {test[0]}: mean return {before:.1f} -> {after:.1f}")
    assert isinstance(adapted, PPO)


if __name__ == "__main__":
    main()
