"""Bring your own robot: a Gymnasium MuJoCo robot the project does not ship, through the whole loop.

Swimmer-v5 has no ``metarobot/...`` family. Registering it with ``gym.register`` around a
``RandomizedDynamics`` makes it one: it then has a frozen train/test split (``task_split``), runs
in the batched simulator, meta-trains (MAML), adapts to held-out tasks (``adapt_many``) and is
evaluated, exactly like a shipped family. A module like this one is what a config names in
``imports = ["user_robot_family"]`` so that the CLI sees the family.

    python experiments/examples/user_robot_family.py            # tiny budget, seconds
    python experiments/examples/user_robot_family.py --iterations 50
"""

from __future__ import annotations

import argparse
from typing import Any

import gymnasium as gym
import numpy as np

import metarobot
import metarobot.envs as me
from metarobot.evaluation import evaluation_returns

ENV_ID = "user/SwimmerRandParams-v0"


def make_swimmer(**kwargs: Any) -> me.RandomizedDynamics:
    """Swimmer-v5 with per-link masses, joint damping and friction that vary per task."""
    return me.RandomizedDynamics(
        gym.make("Swimmer-v5", **kwargs),
        body_mass=me.LogUniform(0.5, 2.0, per_element=True),
        dof_damping=me.LogUniform(0.5, 2.0, per_element=True),
        geom_friction=(0.5, 1.5),
        family=ENV_ID,
    )


def register() -> None:
    """Register the family (idempotent); a config's ``imports`` runs this by importing us."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=make_swimmer, max_episode_steps=100)


register()


def main(iterations: int = 2, seed: int = 0) -> dict[str, float]:
    """Split, meta-train, adapt to the held-out tasks, evaluate; return the mean returns."""
    me.check_family(ENV_ID)
    train, test = me.task_split(ENV_ID)
    learner = metarobot.MAML(
        ENV_ID,
        meta_batch=2,
        episodes=1,
        post_episodes=1,
        hidden=(16, 16),
        n_train_tasks=len(train),
        seed=seed,
        device="cpu",
        nthread=1,
    )
    learner.train(iterations, progress=False)
    tasks = test[:2]
    adapted = metarobot.adapt_many(
        learner.policy, ENV_ID, tasks, episodes=1, seed=seed, device="cpu", nthread=1
    )
    before = evaluation_returns([learner.policy] * len(tasks), ENV_ID, tasks, episodes=1, seed=seed)
    after = evaluation_returns(adapted, ENV_ID, tasks, episodes=1, seed=seed)
    out = {"meta_policy": float(np.mean(before)), "adapted": float(np.mean(after))}
    print(
        f"{ENV_ID}: {len(train)} train / {len(test)} test tasks; after {iterations} MAML "
        f"iterations mean return on {len(tasks)} held-out tasks: meta-policy "
        f"{out['meta_policy']:.2f}, adapted {out['adapted']:.2f}"
    )
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    main(args.iterations, args.seed)
