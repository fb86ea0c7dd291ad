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
from metarobot.envs import Task, ood_split, task_split

ROOT = Path(__file__).resolve().parent


def wiring(direction: tuple[float, ...] | None) -> str:
    """Label of a task's motor polarity: one motor, or which of several are reversed."""
    if not direction:
        return ""
    if len(direction) == 1:
        return f", motor {'reversed' if direction[0] < 0 else 'normal'}"
    rev = [str(i) for i, s in enumerate(direction) if s < 0]
    return f", motors reversed: {', '.join(rev)}" if rev else ", no motor reversed"


def task_label(task: Task) -> str:
    """A short label of a task: its motor polarity, or its physical changes (payload, friction,
    weakest motor, failed motors) for the physical-change families."""
    polarity = wiring(task.scale("actuator_direction"))
    if polarity:
        return polarity
    parts = []
    if (payload := task.scale("payload_mass")) is not None:
        parts.append(f"payload {payload[0]:.2f}x robot mass")
    if (friction := task.scale("geom_friction")) is not None:
        parts.append(f"friction {friction[0]:.2f}x")
    if (gear := task.scale("actuator_gear")) is not None:
        alive = [g for i, g in enumerate(gear) if i not in task.disabled_actuators]
        if alive:
            parts.append(f"weakest motor {min(alive):.2f}x")
    if task.disabled_actuators:
        parts.append("failed motor " + " ".join(str(i) for i in task.disabled_actuators))
    return ", " + ", ".join(parts) if parts else ""


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


def label(frame: np.ndarray, text: str, more: str = "") -> np.ndarray:
    """The frame with a black title bar: ``text``, then ``more`` (its ", "-separated parts two
    to a line, so a physical task's description fits the panel)."""
    parts = [x for x in more.split(", ") if x]
    lines = [text] + [", ".join(parts[i : i + 2]) for i in range(0, len(parts), 2)]
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, img.width, 4 + 14 * len(lines)], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((4, 3 + 14 * i), line, fill=(255, 255, 255) if i == 0 else (200, 200, 200))
    return np.asarray(img)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--left", required=True, help="checkpoint shown on the left")
    ap.add_argument("--right", required=True, help="checkpoint shown on the right")
    ap.add_argument("--task-index", type=int, default=0, help="held-out task of --split")
    ap.add_argument("--split", choices=["test", "ood"], default="test", help="which held-out split")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--every", type=int, default=2, help="keep every n-th frame")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    left, right = metarobot.load(args.left), metarobot.load(args.right)
    env_id = left.meta["family"]
    tasks = ood_split(env_id) if args.split == "ood" else task_split(env_id)[1]
    task = tasks[args.task_index]
    polarity = task_label(task)
    # A motor polarity fits beside the name; a physical task gets a line of its own.
    head, tail = (polarity, "") if wiring(task.scale("actuator_direction")) else ("", polarity[2:])
    panels = []
    for pol in (left, right):
        frames, ret = run(pol, env_id, task, args.seed, (320, 240))
        name = pol.meta.get("algorithm", "policy")
        panels.append(
            [label(f, f"{name}{head}  return {ret[i]:.0f}", tail) for i, f in enumerate(frames)]
        )
    n = max(len(p) for p in panels)
    panels = [p + [p[-1]] * (n - len(p)) for p in panels]  # a finished episode holds its last frame
    video = [np.concatenate([a, b], axis=1) for a, b in zip(*panels, strict=True)][:: args.every]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(args.out, video, duration=1000 * args.every / args.fps, loop=0)
    where = f"{args.split} task {args.task_index} of {env_id}{polarity}"
    print(f"{args.out}: {len(video)} frames, {where}")


if __name__ == "__main__":
    main()
