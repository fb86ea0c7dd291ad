"""Atomic policy checkpoints with metadata: ``metarobot.save`` and ``metarobot.load``.

A checkpoint is one ``torch.save`` file holding plain data only (tensors, numbers, strings), so it
loads with ``weights_only=True``: parameters, the observation normalizer, the network shape, and
metadata (family id, spaces, algorithm and config, package versions). Every policy type writes
its own payload (``policy.to_payload()``) and is read back by the class registered for its
network kind in :data:`POLICY_KINDS`. Writes go to a temporary file in the same folder, then
``os.replace`` it over the target, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from metarobot.io import FORMAT, FORMAT_VERSION, atomic_torch_save, versions
from metarobot.policies import Policy, robot_name
from metarobot.recurrent import RecurrentPolicy
from metarobot.rma import RMAPolicy
from metarobot.stateful import StatefulPolicy

__all__ = [
    "FORMAT",
    "POLICY_KINDS",
    "AnyPolicy",
    "atomic_torch_save",
    "check_compatible",
    "load",
    "robot_name",
    "save",
    "save_policy",
    "versions",
]

#: Any policy metarobot trains, saves and adapts.
AnyPolicy = Policy | StatefulPolicy

#: Network kind → the class that reads its payload.
POLICY_KINDS: dict[str, Any] = {
    "mlp": Policy,
    "ensemble": Policy,
    RMAPolicy.kind: RMAPolicy,
    RecurrentPolicy.kind: RecurrentPolicy,
}


def save(policy: AnyPolicy, path: str | os.PathLike[str]) -> None:
    """Write any metarobot policy to ``path`` atomically (same as ``policy.save(path)``)."""
    if not isinstance(policy, (Policy, StatefulPolicy)):
        raise ValueError(f"policy must be a metarobot policy, got {type(policy)!r}")
    atomic_torch_save(policy.to_payload(), path)


#: Kept for code written against the first release.
save_policy = save


def load(path: str | os.PathLike[str], env: gym.Env | None = None) -> AnyPolicy:
    """Load a policy saved with ``metarobot.save`` / ``policy.save``.

    Args:
        path: The checkpoint file.
        env: If given, check the policy fits this env (family and spaces).

    Returns:
        The policy (on CPU), of the type that saved it.

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
        kind = raw["net"].get("kind", "mlp")
        if kind not in POLICY_KINDS:
            raise ValueError(f"unknown network kind {kind!r}; known: {sorted(POLICY_KINDS)}")
        policy = POLICY_KINDS[kind].from_payload(raw)
        policy.meta["saved_with"] = dict(raw.get("versions") or {})
    except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(p)!r} is a damaged metarobot checkpoint: {err}") from err
    if env is not None:
        check_compatible(policy, env)
    return policy


def check_compatible(policy: AnyPolicy, env: gym.Env) -> None:
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
