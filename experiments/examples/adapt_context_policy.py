"""A context policy on a new environment: online adaptation, then `metarobot.adapt` with K = 1.

The shipped RMA policy for InvertedPendulumRandParams infers the dynamics (including whether the
motor is wired in reverse) from its recent history. It is used like any policy: `reset()` at
every episode start, then `act` step by step (passing the previous reward gives a recurrent
policy its full context; RMA ignores it).
"""

from pathlib import Path

import gymnasium as gym
import numpy as np

import metarobot
import metarobot.envs as me

FAMILY = "metarobot/InvertedPendulumRandParams-v0"
CHECKPOINT = (
    Path(__file__).resolve().parents[1] / "checkpoints" / "InvertedPendulumRandParams-rma.pt"
)


def episode_return(policy, env, seed):
    obs, _ = env.reset(seed=seed)
    policy.reset()
    total, reward, done = 0.0, 0.0, False
    while not done:
        action = policy.act(obs, deterministic=True, reward=reward)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += reward
        done = terminated or truncated
    return total


policy = metarobot.load(CHECKPOINT)
env = gym.make(FAMILY)
test_tasks = me.task_split(FAMILY)[1]
for i, task in enumerate(test_tasks[:4]):
    env.get_wrapper_attr("set_task")(task)
    online = np.mean([episode_return(policy, env, seed) for seed in (1, 2)])
    adapted = metarobot.adapt(policy, env, episodes=1, seed=i)  # fixes the inferred latent
    after = np.mean([episode_return(adapted, env, seed) for seed in (1, 2)])
    motor = "reversed" if task.scale("actuator_direction")[0] < 0 else "normal"
    kept = adapted.meta["adapted"]["accepted"]
    print(
        f"task {i} (motor {motor}): online {online:.0f}, after adapt(K=1) {after:.0f}, kept={kept}"
    )
