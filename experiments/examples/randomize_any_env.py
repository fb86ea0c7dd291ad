"""Randomize the dynamics of any Gymnasium MuJoCo env and train SB3 on it (≈1 min on a CPU).

Swimmer-v5 has no metarobot family: ``RandomizedDynamics`` turns it into a task distribution
(a new mass/damping draw at every reset: domain randomization), and SB3 trains on it in a
``DummyVecEnv`` whose envs are seeded one by one.

    python experiments/examples/randomize_any_env.py
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium.wrappers import TimeLimit
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

import metarobot.envs as me


def make_env() -> gym.Env:
    base = gym.make("Swimmer-v5").unwrapped
    env = me.RandomizedDynamics(
        base,
        body_mass=me.LogUniform(0.5, 2.0, per_element=True),
        dof_damping=(0.5, 2.0),
        resample_on_reset=True,
    )
    return TimeLimit(env, max_episode_steps=200)


def main() -> None:
    venv = DummyVecEnv([make_env for _ in range(4)])
    venv.seed(0)
    model = PPO("MlpPolicy", venv, n_steps=256, seed=0, device="cpu", verbose=0)
    model.learn(4096)
    tasks = venv.env_method("get_task")
    print(f"trained PPO on randomized Swimmer; tasks now in use: {len(set(tasks))} distinct")
    assert len(set(tasks)) > 1


if __name__ == "__main__":
    main()
