"""Atomic policy checkpoints with metadata.

A checkpoint is one ``torch.save`` file holding plain data only (tensors, numbers, strings), so it
loads with ``weights_only=True``: parameters, per-parameter step sizes, the observation normalizer,
the network shape, and metadata (family id, spaces, algorithm and config, package versions).
Writes go to a temporary file in the same folder, then ``os.replace`` it over the target, so a
reader never sees a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch

from metarobot.policies import Policy, RunningNorm, build_net

__all__ = [
    "FORMAT",
    "atomic_torch_save",
    "check_compatible",
    "load",
    "robot_name",
    "save_policy",
    "versions",
]

FORMAT = "metarobot-policy"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    """Versions of the packages a checkpoint depends on."""
    from metarobot import __version__

    return {
        "metarobot": __version__,
        "torch": str(torch.__version__),
        "gymnasium": gym.__version__,
        "mujoco": mujoco.__version__,
        "numpy": np.__version__,
    }


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file next to ``path``, then atomically rename it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the checkpoint the mode a plain open() would.
        if target.exists():
            mode = target.stat().st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_policy(policy: Policy, path: str | os.PathLike[str]) -> None:
    """Write ``policy`` to ``path`` atomically."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "net": policy.net.config(),
        "params": {k: v.detach().cpu() for k, v in policy.params.items()},
        "inner_lr": {k: v.detach().cpu() for k, v in policy.inner_lr.items()},
        "normalizer": policy.normalizer.state_dict(),
        "meta": json.dumps(policy.meta),
        "versions": versions(),
    }
    atomic_torch_save(payload, path)


def load(path: str | os.PathLike[str], env: gym.Env | None = None) -> Policy:
    """Load a policy saved with ``policy.save``.

    Args:
        path: The checkpoint file.
        env: If given, check the policy fits this env (family and spaces).

    Returns:
        The policy (on CPU).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is truncated, corrupt or not a metarobot policy (the message
            names the file), or the policy does not fit ``env``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(p)!r}")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged files
        raise ValueError(
            f"{str(p)!r} is not a readable checkpoint (truncated or corrupt): {err}"
        ) from err
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"{str(p)!r} is not a metarobot policy checkpoint")
    if raw.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{str(p)!r} was written by a newer metarobot (format {raw['format_version']}); "
            "upgrade metarobot to load it"
        )
    try:
        net = build_net(raw["net"])
        policy = Policy(
            net,
            raw["params"],
            RunningNorm.from_state_dict(raw["normalizer"]),
            raw["inner_lr"],
            json.loads(raw.get("meta") or "{}"),
        )
        policy.meta["saved_with"] = dict(raw.get("versions") or {})
        expected = {k: v.shape for k, v in net.named_parameters()}
        got = {k: v.shape for k, v in policy.params.items()}
        if expected != got:
            raise ValueError(f"parameter shapes {got} do not match the network {expected}")
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(p)!r} is a damaged metarobot checkpoint: {err}") from err
    if env is not None:
        check_compatible(policy, env)
    return policy


def check_compatible(policy: Policy, env: gym.Env) -> None:
    """Raise a ValueError naming the mismatch if ``policy`` cannot act in ``env``."""
    obs_shape = env.observation_space.shape
    act_shape = env.action_space.shape
    if obs_shape != (policy.obs_dim,) or act_shape != (policy.act_dim,):
        raise ValueError(
            f"policy expects observations {(policy.obs_dim,)} and actions {(policy.act_dim,)}, "
            f"but the env has observations {obs_shape} and actions {act_shape}"
        )
    robot = policy.meta.get("robot")
    env_robot = robot_name(env)
    if robot and env_robot and robot != env_robot:
        raise ValueError(
            f"policy was trained on the {robot} robot ({policy.meta.get('family')!r}) but the env "
            f"is a {env_robot}"
        )


def robot_name(env: gym.Env) -> str | None:
    """The Gymnasium MuJoCo robot class behind ``env`` (e.g. ``"HalfCheetahEnv"``), if any."""
    for cls in type(env.unwrapped).__mro__:
        if cls.__module__.startswith("gymnasium.envs.mujoco.") and cls.__name__ != "MujocoEnv":
            return cls.__name__
    return None
