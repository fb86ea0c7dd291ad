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

Trained units (DR, every oracle restart) are saved under ``--units`` as they finish, so an
interrupted family resumes without retraining them; ``--workers 2`` trains them two at a time.

Usage::

    python experiments/gaps.py --timesteps 100000 --tasks 2 --out experiments/results
    python experiments/gaps.py --families InvertedPendulumRandParams HalfCheetahReversed
    python experiments/gaps.py --families AntPhysical --trainer episodic --restarts 2 \
        --timesteps 1000000 --tasks 3 --split ood --workers 2 --out experiments/results/gaps_1m
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing as mp
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
from metarobot.episodic_mlp import train_ppo_mlp
from metarobot.evaluation import evaluation_returns, random_returns
from metarobot.registry import ORACLE_RESTART_STRIDE, ORACLE_SELECT_SEED

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
    "trainer",
    "restarts",
    "split",
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
        trainer: ``"sb3"`` (SB3 PPO, :mod:`metarobot.baselines`) or ``"episodic"`` (the
            episodic PPO of the context methods: normalized observations, scaled rewards).
        restarts: PPO runs per oracle, each with its own seed; the best on selection episodes
            (a seed no evaluation uses) is the oracle.
        split: The tasks measured: ``"test"`` (the frozen test split) or ``"ood"`` (the
            out-of-distribution split of families that have one); DR trains on the training
            split either way.
        workers: Training units (DR, each oracle restart) run in this many processes.
    """

    families: tuple[str, ...]
    timesteps: int
    tasks: int
    episodes: int
    seed: int
    n_envs: int = 8
    trainer: str = "sb3"
    restarts: int = 1
    split: str = "test"
    workers: int = 1


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


def _measured_tasks(fid: str, s: Settings) -> list[me.Task]:
    tasks = me.ood_split(fid) if s.split == "ood" else me.task_split(fid)[1]
    if s.tasks > len(tasks):
        raise ValueError(f"--tasks must be in [1, {len(tasks)}] for {fid}, got {s.tasks}")
    return list(tasks[: s.tasks])


def train_unit(fid: str, s: Settings, unit: tuple[int, int], path: Path) -> None:
    """Train one unit and save it: ``(-1, 0)`` is DR, ``(i, r)`` restart r of task i's oracle.

    Units that exist on disk are not trained again, so an interrupted run resumes.
    """
    if path.exists():
        return
    torch.set_num_threads(1)
    task_i, restart = unit
    seed = s.seed + 1 + task_i + ORACLE_RESTART_STRIDE * restart
    if task_i < 0:
        tasks, seed, method = me.task_split(fid)[0], s.seed, "domain_randomization"
    else:
        tasks, method = [_measured_tasks(fid, s)[task_i]], "oracle"
    if s.trainer == "episodic":
        pol = train_ppo_mlp(
            fid, tasks, s.timesteps, seed=seed, n_envs=s.n_envs, nthread=1, method=method
        )
    elif task_i < 0:
        pol = train_domain_randomization(
            fid, s.timesteps, seed=seed, n_envs=s.n_envs, nthread=1, hidden=(64, 64)
        )
    else:
        pol = train_expert(
            fid, tasks[0], s.timesteps, seed=seed, n_envs=s.n_envs, nthread=1, method=method
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.pt")
    pol.save(tmp)
    tmp.replace(path)


def _unit_worker(job: tuple[str, Settings, tuple[int, int], Path]) -> tuple[int, int]:
    train_unit(*job)
    return job[2]


def measure_family(fid: str, s: Settings, units_dir: Path) -> list[dict[str, object]]:
    """Train DR and the oracles of one family, evaluate them and random actions.

    Args:
        fid: Family id.
        s: Run settings.
        units_dir: Where trained units are kept (resumable).

    Returns:
        One CSV row per evaluated test task.
    """
    t0 = time.perf_counter()
    tasks = _measured_tasks(fid, s)
    tag = f"{s.trainer}-{s.timesteps}-s{s.seed}"
    fam_dir = units_dir / fid.split("/")[-1]

    def unit_path(unit: tuple[int, int]) -> Path:
        if unit[0] < 0:  # DR trains on the training split, whichever split is measured
            return fam_dir / f"dr-{tag}.pt"
        return fam_dir / f"oracle{unit[0]}-r{unit[1]}-{tag}-{s.split}.pt"

    units = [(-1, 0)] + [(i, r) for i in range(len(tasks)) for r in range(s.restarts)]
    jobs = [(fid, s, u, unit_path(u)) for u in units]
    if s.workers > 1:
        with mp.get_context("spawn").Pool(s.workers) as pool:
            for u in pool.imap_unordered(_unit_worker, jobs):
                print(f"  unit {u} trained ({time.perf_counter() - t0:.0f} s)", flush=True)
    else:
        for job in jobs:
            _unit_worker(job)
            print(f"  unit {job[2]} trained ({time.perf_counter() - t0:.0f} s)", flush=True)
    dr = metarobot.load(unit_path((-1, 0)))
    oracles, restart_returns = [], []
    for i, task in enumerate(tasks):
        cands = [metarobot.load(unit_path((i, r))) for r in range(s.restarts)]
        if len(cands) == 1:
            oracles.append(cands[0])
            restart_returns.append([])
            continue
        sel = evaluation_returns(
            cands, fid, [task] * len(cands), episodes=2, seed=ORACLE_SELECT_SEED
        )
        oracles.append(cands[int(np.argmax(sel))])
        restart_returns.append([round(float(x), 1) for x in sel])
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
                "trainer": s.trainer,
                "restarts": s.restarts,
                "split": s.split,
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
            # Rows from before a column existed get its default then (SB3, 1 run, test split).
            old = {"trainer": "sb3", "restarts": "1", "split": "test"}
            writer.writerow({k: row.get(k, old.get(k, "")) for k in CSV_FIELDS})
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
    ap.add_argument("--trainer", choices=("sb3", "episodic"), default="sb3")
    ap.add_argument("--restarts", type=int, default=1, help="PPO runs per oracle (best kept)")
    ap.add_argument("--split", choices=("test", "ood"), default="test")
    ap.add_argument("--workers", type=int, default=1, help="processes for the training units")
    ap.add_argument("--n-envs", type=int, default=8, help="worlds of every PPO run")
    ap.add_argument(
        "--units", type=Path, default=Path("runs/gaps_units"), help="trained units (resume)"
    )
    ap.add_argument("--out", type=Path, default=Path("experiments/results"), help="output folder")
    args = ap.parse_args(argv)
    for name in ("timesteps", "tasks", "episodes", "restarts", "workers", "n_envs"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be an integer >= 1, got {getattr(args, name)}")
    torch.set_num_threads(1)
    s = Settings(
        resolve_families(args.families),
        args.timesteps,
        args.tasks,
        args.episodes,
        args.seed,
        n_envs=args.n_envs,
        trainer=args.trainer,
        restarts=args.restarts,
        split=args.split,
        workers=args.workers,
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
        f"Budget: {s.timesteps:,} PPO environment steps for DR and for each oracle run "
        f"({s.n_envs} worlds, 64×64 tanh MLP; trainer: "
        + (
            "SB3 PPO defaults of metarobot.baselines"
            if s.trainer == "sb3"
            else "metarobot's episodic PPO (normalized observations, scaled rewards)"
        )
        + f"); oracle: best of {s.restarts} run(s) on selection episodes; "
        f"first {s.tasks} tasks of the frozen {s.split} split; {s.episodes} deterministic "
        f"evaluation episodes per task and policy; seed {s.seed}.",
        "gap = mean over tasks of (R_oracle − R_DR) / (R_oracle − R_random); an oracle "
        f"'learned' when R_oracle − R_random ≥ max(1, {MIN_ORACLE_GAIN}·|R_random|); "
        "n/a when the oracle is not above random.",
    ]
    settings_key = (str(s.timesteps), str(s.episodes), str(s.seed), s.trainer, str(s.restarts))
    settings_key += (s.split,)
    old = {"trainer": "sb3", "restarts": "1", "split": "test"}

    def key(r: dict[str, str]) -> tuple[str, ...]:
        cols = ("timesteps", "episodes", "seed", "trainer", "restarts", "split")
        return tuple(r.get(c) or old.get(c, "") for c in cols)

    rows = [r for r in read_rows(csv_path) if key(r) == settings_key]
    done = {r["family"] for r in rows if int(r["task_index"]) == s.tasks - 1}
    rows = [r for r in rows if r["family"] in done]
    for fid in s.families:
        if fid in done:
            print(f"{fid}: already in {csv_path}, skipped", flush=True)
            continue
        print(f"{fid}: training DR and {s.tasks} oracles, {s.timesteps:,} steps each", flush=True)
        new = measure_family(fid, s, args.units)
        rows += [{k: str(v) for k, v in r.items()} for r in new]
        write_rows(csv_path, rows)
        missing = [f for f in s.families if f not in {r["family"] for r in rows}]
        md_path.write_text(render_markdown(rows, header, missing))
        print(
            f"{fid}: gap {np.mean([r['gap'] for r in new]):.3f} ({new[0]['wall_s']} s)", flush=True
        )


if __name__ == "__main__":
    main()
