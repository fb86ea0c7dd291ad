"""Side-by-side video of two policies on one held-out task (MuJoCo's offscreen renderer → GIF).

    MUJOCO_GL=egl python experiments/make_video.py \
        --left experiments/checkpoints/InvertedPendulumRandParams-domain_randomization.pt \
        --right experiments/checkpoints/InvertedPendulumRandParams-rma.pt \
        --out experiments/results/videos/InvertedPendulumRandParams-dr-vs-rma.gif

Both policies start from the same state of the same held-out task (K = 0: no adaptation
episodes; a context policy adapts online within the episode). Each panel is labelled with the
policy, the task's motor polarity where it has one, and the running return.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym
import imageio.v2 as imageio
import mujoco
import numpy as np
from PIL import Image, ImageDraw

import metarobot
from metarobot.envs import task_split

ROOT = Path(__file__).resolve().parent


def wiring(direction: tuple[float, ...] | None) -> str:
    """Label of a task's motor polarity: one motor, or which of several are reversed."""
    if not direction:
        return ""
    if len(direction) == 1:
        return f", motor {'reversed' if direction[0] < 0 else 'normal'}"
    rev = [str(i) for i, s in enumerate(direction) if s < 0]
    return f", motors reversed: {', '.join(rev)}" if rev else ", no motor reversed"


def run(policy: object, env_id: str, task: object, seed: int, size: tuple[int, int]) -> tuple:
    view = {"render_mode": "rgb_array", "width": size[0], "height": size[1]}
    env = gym.make(env_id, **view)
    model = env.unwrapped.model
    if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "track") >= 0:
        # a runner leaves a fixed view within a second: use the model's tracking camera
        env.close()
        env = gym.make(env_id, camera_name="track", **view)
    frames, rewards = [], []
    obs, _ = env.reset(seed=seed, options={"task": task})
    policy.reset()
    reward = 0.0
    frames.append(env.render())
    done = False
    while not done:
        action = policy.act(obs, deterministic=True, reward=reward)
        obs, reward, term, trunc, _ = env.step(action)
        rewards.append(float(reward))
        frames.append(env.render())
        done = term or trunc
    env.close()
    return frames, np.cumsum([0.0, *rewards])


def label(frame: np.ndarray, text: str) -> np.ndarray:
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, img.width, 18], fill=(0, 0, 0))
    draw.text((4, 3), text, fill=(255, 255, 255))
    return np.asarray(img)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--left", required=True, help="checkpoint shown on the left")
    ap.add_argument("--right", required=True, help="checkpoint shown on the right")
    ap.add_argument("--task-index", type=int, default=0, help="held-out test task")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--every", type=int, default=2, help="keep every n-th frame")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    left, right = metarobot.load(args.left), metarobot.load(args.right)
    env_id = left.meta["family"]
    task = task_split(env_id)[1][args.task_index]
    polarity = wiring(task.scale("actuator_direction"))
    panels = []
    for pol in (left, right):
        frames, ret = run(pol, env_id, task, args.seed, (320, 240))
        name = pol.meta.get("algorithm", "policy")
        panels.append(
            [label(f, f"{name}{polarity}  return {ret[i]:.0f}") for i, f in enumerate(frames)]
        )
    n = max(len(p) for p in panels)
    panels = [p + [p[-1]] * (n - len(p)) for p in panels]  # a finished episode holds its last frame
    video = [np.concatenate([a, b], axis=1) for a, b in zip(*panels, strict=True)][:: args.every]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(args.out, video, duration=1000 * args.every / args.fps, loop=0)
    print(f"{args.out}: {len(video)} frames, task {args.task_index} of {env_id}{polarity}")


if __name__ == "__main__":
    main()
