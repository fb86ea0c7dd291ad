"""Adaptation gap per family: domain randomization (DR) against per-task oracles, same PPO budget.

For every family, one DR policy is trained with PPO on the family's training distribution and one
oracle per evaluated test task is trained with PPO on that task alone, each with the same number
of environment steps. On the first ``--tasks`` test tasks of the frozen split, the script reports
the mean returns of random actions, DR and the oracles, and the normalized gap

    gap = mean over tasks of (R_oracle − R_DR) / (R_oracle − R_random),

0 when DR matches the oracle, 1 when DR is no better than random actions. A family whose gap is
large (>= 0.2) is one where a single reactive policy cannot serve every task: a candidate for the
headline adaptation tables. A gap is only meaningful when the oracle learned: an oracle that is
weak for the budget shrinks the gap (or makes it negative); one barely above random makes the
denominator small and the ratio noisy. Per-task values and a flag for oracles that did not learn
are written beside the gap.

Results are written after every family (``gaps.csv`` raw rows, ``gaps.md`` table), and families
already present in the CSV with the same settings are skipped, so an interrupted run resumes.

Usage::

    python experiments/gaps.py --timesteps 100000 --tasks 2 --out experiments/results
    python experiments/gaps.py --families InvertedPendulumRandParams HalfCheetahReversed
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import metarobot
import metarobot.envs as me
from metarobot.baselines import train_domain_randomization, train_expert
from metarobot.evaluation import evaluation_returns, random_returns

#: A normalized gap at or above this marks a family that needs adaptation.
LARGE_GAP = 0.2
#: An oracle "did not learn" on a task when it beats random actions by less than this fraction
#: of |R_random| (or by less than 1.0 in absolute return, for returns near zero).
MIN_ORACLE_GAIN = 0.1
#: Columns of gaps.csv (one row per family and evaluated test task).
CSV_FIELDS: tuple[str, ...] = (
    "family",
    "task_index",
    "task",
    "random",
    "dr",
    "oracle",
    "gap",
    "oracle_learned",
    "timesteps",
    "episodes",
    "seed",
    "wall_s",
)


@dataclass(frozen=True)
class Settings:
    """What one run measures.

    Attributes:
        families: Full family ids, in run order.
        timesteps: PPO environment steps of DR and of each oracle (the same budget).
        tasks: Number of test tasks (the first ones of the frozen split) per family.
        episodes: Evaluation episodes per task and policy (deterministic actions).
        seed: Training and evaluation seed.
        n_envs: Parallel worlds of every PPO run.
    """

    families: tuple[str, ...]
    timesteps: int
    tasks: int
    episodes: int
    seed: int
    n_envs: int = 8


def resolve_families(names: Sequence[str] | None) -> tuple[str, ...]:
    """Full ids of the requested families (short names such as ``HopperRandParams`` allowed).

    Args:
        names: Family ids or short names; None or ``["all"]`` means every registered family.

    Returns:
        The ids, in the order given (registry order for all).

    Raises:
        ValueError: On a name that is not a registered family.
    """
    if not names or list(names) == ["all"]:
        return tuple(me.FAMILY_IDS)
    short = {fid.split("/")[-1].removesuffix("-v0"): fid for fid in me.FAMILY_IDS}
    out = []
    for name in names:
        fid = name if name in me.FAMILY_IDS else short.get(name.removesuffix("-v0"))
        if fid is None:
            raise ValueError(
                f"--families: unknown family {name!r}; allowed are {sorted(short)} or 'all'"
            )
        out.append(fid)
    return tuple(out)


def normalized_gap(r_random: float, r_dr: float, r_oracle: float) -> float:
    """``(R_oracle − R_DR) / (R_oracle − R_random)``; NaN when the oracle is not above random."""
    denom = r_oracle - r_random
    return (r_oracle - r_dr) / denom if denom > 0 else math.nan


def oracle_learned(r_random: float, r_oracle: float) -> bool:
    """Whether the oracle beats random actions by a clear margin (see ``MIN_ORACLE_GAIN``)."""
    return r_oracle - r_random >= max(1.0, MIN_ORACLE_GAIN * abs(r_random))


def measure_family(fid: str, s: Settings) -> list[dict[str, object]]:
    """Train DR and the oracles of one family, evaluate them and random actions.

    Args:
        fid: Family id.
        s: Run settings.

    Returns:
        One CSV row per evaluated test task.
    """
    t0 = time.perf_counter()
    test = me.task_split(fid)[1]
    if s.tasks > len(test):
        raise ValueError(f"--tasks must be in [1, {len(test)}] for {fid}, got {s.tasks}")
    tasks = test[: s.tasks]
    dr = train_domain_randomization(
        fid, s.timesteps, seed=s.seed, n_envs=s.n_envs, nthread=1, hidden=(64, 64)
    )
    print(f"  DR trained ({time.perf_counter() - t0:.0f} s)", flush=True)
    oracles = []
    for i, task in enumerate(tasks):
        oracles.append(
            train_expert(
                fid,
                task,
                s.timesteps,
                seed=s.seed + 1 + i,
                n_envs=s.n_envs,
                nthread=1,
                method="oracle",
                hidden=(64, 64),
            )
        )
        print(f"  oracle {i + 1}/{len(tasks)} trained ({time.perf_counter() - t0:.0f} s)")
    ev = {"episodes": s.episodes, "seed": s.seed, "nthread": 1}
    r_dr = np.asarray(evaluation_returns([dr] * len(tasks), fid, tasks, **ev))
    r_or = np.asarray(evaluation_returns(oracles, fid, tasks, **ev))
    r_rand = np.asarray(random_returns(fid, tasks, **ev))
    wall = time.perf_counter() - t0
    rows: list[dict[str, object]] = []
    for i, task in enumerate(tasks):
        rows.append(
            {
                "family": fid,
                "task_index": i,
                "task": task.to_json(),
                "random": float(r_rand[i]),
                "dr": float(r_dr[i]),
                "oracle": float(r_or[i]),
                "gap": normalized_gap(float(r_rand[i]), float(r_dr[i]), float(r_or[i])),
                "oracle_learned": oracle_learned(float(r_rand[i]), float(r_or[i])),
                "timesteps": s.timesteps,
                "episodes": s.episodes,
                "seed": s.seed,
                "wall_s": round(wall, 1),
            }
        )
    return rows


# ---------------------------------------------------------------------------- output
def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of an existing gaps.csv (empty when there is none)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: Sequence[dict[str, object]]) -> None:
    """Write every row to ``path`` (atomically: a partial file never replaces a full one)."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(CSV_FIELDS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in CSV_FIELDS})
    tmp.replace(path)


def machine() -> str:
    """Cores and CPU model of this machine."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}"


def git_commit() -> str:
    """``git rev-parse --short HEAD`` in the current directory ("unknown" outside a repo)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f}"


def render_markdown(
    rows: Sequence[dict[str, str]], header: Sequence[str], missing: Sequence[str]
) -> str:
    """The gaps.md table: one line per family, sorted by gap (largest first)."""
    by_family: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_family.setdefault(row["family"], []).append(row)
    lines = [*header, ""]
    lines += [
        "| family | steps | tasks | random | DR | oracle | gap | large gap (≥ 0.2) | "
        "oracle learned | per-task gap | wall (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|",
    ]
    summary = []
    for fid, fam_rows in by_family.items():
        gaps = np.array([float(r["gap"]) for r in fam_rows])
        learned = [r["oracle_learned"] == "True" for r in fam_rows]
        gap = float(np.mean(gaps)) if not np.isnan(gaps).any() else math.nan
        summary.append((fid, fam_rows, gap, learned))
    summary.sort(key=lambda x: (math.isnan(x[2]), -x[2] if not math.isnan(x[2]) else 0.0))
    for fid, fam_rows, gap, learned in summary:
        mean = {k: np.mean([float(r[k]) for r in fam_rows]) for k in ("random", "dr", "oracle")}
        large = "n/a" if math.isnan(gap) else ("**yes**" if gap >= LARGE_GAP else "no")
        n_learned = sum(learned)
        lines.append(
            f"| {fid.split('/')[-1]} | {int(fam_rows[0]['timesteps']):,} | {len(fam_rows)} | "
            f"{mean['random']:.1f} | {mean['dr']:.1f} | {mean['oracle']:.1f} | {_fmt(gap)} | "
            f"{large} | {'yes' if n_learned == len(learned) else f'{n_learned}/{len(learned)}'} | "
            + ", ".join(_fmt(float(r["gap"])) for r in fam_rows)
            + f" | {float(fam_rows[0]['wall_s']):.0f} |"
        )
    if missing:
        lines += ["", "Not measured yet: " + ", ".join(m.split("/")[-1] for m in missing) + "."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """Run the measurement; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--families", nargs="+", default=["all"], help="ids or short names, or all")
    ap.add_argument(
        "--timesteps", type=int, default=100_000, help="PPO steps of DR and each oracle"
    )
    ap.add_argument("--tasks", type=int, default=2, help="test tasks (oracles) per family")
    ap.add_argument("--episodes", type=int, default=3, help="evaluation episodes per task")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("experiments/results"), help="output folder")
    args = ap.parse_args(argv)
    for name in ("timesteps", "tasks", "episodes"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be an integer >= 1, got {getattr(args, name)}")
    torch.set_num_threads(1)
    s = Settings(
        resolve_families(args.families), args.timesteps, args.tasks, args.episodes, args.seed
    )
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = args.out / "gaps.csv", args.out / "gaps.md"
    command = "python experiments/gaps.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    header = [
        "# Adaptation gap per family: domain randomization vs per-task oracles",
        "",
        f"Command: `{command}`",
        f"metarobot {metarobot.__version__}, commit {git_commit()}",
        f"Machine: {machine()}; one torch thread, simulator nthread=1, run alongside other jobs.",
        f"Budget: {s.timesteps:,} PPO environment steps for DR and for each oracle "
        f"(8 worlds, SB3 PPO defaults of metarobot.baselines, 64×64 tanh MLP); "
        f"first {s.tasks} test tasks of the frozen split; {s.episodes} deterministic evaluation "
        f"episodes per task and policy; seed {s.seed}.",
        "gap = mean over tasks of (R_oracle − R_DR) / (R_oracle − R_random); an oracle "
        f"'learned' when R_oracle − R_random ≥ max(1, {MIN_ORACLE_GAIN}·|R_random|); "
        "n/a when the oracle is not above random.",
    ]
    settings_key = (str(s.timesteps), str(s.episodes), str(s.seed))
    rows = [
        r for r in read_rows(csv_path) if (r["timesteps"], r["episodes"], r["seed"]) == settings_key
    ]
    done = {r["family"] for r in rows if int(r["task_index"]) == s.tasks - 1}
    rows = [r for r in rows if r["family"] in done]
    for fid in s.families:
        if fid in done:
            print(f"{fid}: already in {csv_path}, skipped", flush=True)
            continue
        print(f"{fid}: training DR and {s.tasks} oracles, {s.timesteps:,} steps each", flush=True)
        new = measure_family(fid, s)
        rows += [{k: str(v) for k, v in r.items()} for r in new]
        write_rows(csv_path, rows)
        missing = [f for f in s.families if f not in {r["family"] for r in rows}]
        md_path.write_text(render_markdown(rows, header, missing))
        print(
            f"{fid}: gap {np.mean([r['gap'] for r in new]):.3f} ({new[0]['wall_s']} s)", flush=True
        )


if __name__ == "__main__":
    main()
