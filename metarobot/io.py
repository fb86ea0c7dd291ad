"""Leaf helpers for files on disk: atomic writes and the versions stamped into checkpoints.

No metarobot imports here, so every module (policies, learners, checkpoint) can use them
without import cycles.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch

__all__ = ["FORMAT", "FORMAT_VERSION", "atomic_torch_save", "versions"]

#: Checkpoint format name and version (a reader refuses newer versions).
FORMAT = "metarobot-policy"
FORMAT_VERSION = 1


def versions() -> dict[str, str]:
    """Versions of the packages a checkpoint depends on."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        mine = version("metarobot")
    except PackageNotFoundError:  # running from a source tree that is not installed
        mine = "unknown"
    return {
        "metarobot": mine,
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
