"""The smallest reversed-motor problem: a cart on a damped rail whose motor may be wired backwards.

The reward is the cart's velocity along +x, so a policy must push forward; in half of the tasks
the motor's polarity is reversed. The first state of every episode is the same, so a policy that
sees only the current observation cannot tell the two apart. A policy with a memory of its last
action and the velocity it produced can, after one step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

import metarobot.envs as me

ENV_ID = "tests/SliderReversed-v0"
HORIZON = 25
XML = Path(__file__).resolve().parent / "assets" / "slider.xml"


class SliderEnv(MujocoEnv):
    """Cart on a rail; observation (position, velocity); reward = velocity along +x."""

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["human", "rgb_array", "depth_array"],
        "render_fps": 25,
    }

    def __init__(self, **kwargs: Any) -> None:
        space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64)
        MujocoEnv.__init__(self, str(XML), 2, observation_space=space, **kwargs)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.do_simulation(action, self.frame_skip)
        obs = self._get_obs()
        return obs, float(self.data.qvel[0]), False, False, {}

    def reset_model(self) -> np.ndarray:
        self.set_state(self.init_qpos, self.init_qvel)
        return self._get_obs()

    def _get_obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float64)


def make(**kwargs: Any) -> me.RandomizedDynamics:
    """The slider with a motor whose direction is +1 or −1 (and a mildly varying strength)."""
    return me.RandomizedDynamics(
        SliderEnv(**kwargs),
        actuator_gear=me.LogUniform(0.8, 1.25),
        actuator_direction=me.Choice((-1.0, 1.0)),
        family=ENV_ID,
    )


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=make, max_episode_steps=HORIZON)
