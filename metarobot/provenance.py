"""Where a result came from: the exact command, package version, git commit and machine.

Every results folder and benchmark file starts with :func:`provenance_lines`, so a reader can
rerun what produced it (CleanRL's run names, in prose).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["command_line", "git_commit", "machine", "numerics", "provenance_lines"]


def command_line(argv: list[str] | None = None) -> str:
    """The current process's command line, shell-quoted (``metarobot run ...``)."""
    args = list(sys.argv if argv is None else argv)
    if args and Path(args[0]).name == "metarobot":
        args[0] = "metarobot"
    elif args and args[0].endswith(".py"):
        args = [
            "python",
            os.path.relpath(args[0]) if os.path.isabs(args[0]) else args[0],
            *args[1:],
        ]
    return shlex.join(args)


def _git(cwd: str | Path | None, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The short commit of the git work tree at ``cwd`` (``+dirty`` if changed), or None."""
    try:
        sha = _git(cwd, "rev-parse", "--short", "HEAD")
        dirty = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "") if sha else None


def machine() -> str:
    """CPU model, core count, OS and Python version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def numerics() -> str:
    """The libraries whose float rounding a result depends on, and the CPU kernels torch uses.

    torch's CPU kernels are chosen by instruction-set level (``DEFAULT``, ``AVX2``, ``AVX512``,
    ...), and float results differ with it: an RL run is bit-identical only on the same machine
    type with these versions, and must be compared statistically elsewhere.
    """
    import mujoco
    import numpy as np
    import torch

    return (
        f"torch {torch.__version__} (CPU kernels {torch.backends.cpu.get_cpu_capability()}), "
        f"MuJoCo {mujoco.__version__}, NumPy {np.__version__}"
    )


def provenance_lines(command: str | None = None) -> list[str]:
    """Markdown lines: command, version, git commit (when there is one), machine, numerics."""
    try:
        ver = version("metarobot")
    except PackageNotFoundError:
        ver = "unknown (not installed)"
    commit = git_commit()
    lines = [
        f"- command: `{command or command_line()}`",
        f"- metarobot {ver}" + (f", git commit `{commit}`" if commit else ", not a git checkout"),
        f"- machine: {machine()}",
        f"- numerics: {numerics()}",
    ]
    return lines
