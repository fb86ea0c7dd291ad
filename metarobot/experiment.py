"""Run a whole experiment from a config: train or reuse every method, evaluate, report.

The work is split into *units* (one method × training seed, one expert, one oracle task, one
evaluation), each of which writes one file under ``<out>/`` when it finishes. Re-running the same
command skips every unit whose file exists, so an interrupted run resumes where it stopped and a
finished run does no work again.

Output layout::

    <out>/config.toml             copy of the config
    <out>/checkpoints/*.pt        meta-policies, experts, DR, oracles
    <out>/logs/*.csv, <out>/tb/   meta-training logs (CSV and TensorBoard)
    <out>/records/*.csv           evaluation records of each unit
    <out>/results.csv             all records (method, family, task, seed, k, return, score, ...)
    <out>/summary.md              the table
    <out>/adaptation_curve.png    score vs K with CI bands, one line per method
    <out>/learning_curve.png      training returns: meta-learners (before/after adaptation)
                                  and episodic PPO (DR, RMA's teacher, recurrent) vs env steps
    <out>/within_episode.png      reward per step since reset at K = 0 (online adaptation)
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import multiprocessing
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from metarobot import registry
from metarobot.adaptation import DEFAULT_MARGIN, DEFAULT_VALIDATION_EPISODES
from metarobot.config import ExperimentConfig, load_config
from metarobot.evaluation import (
    EVAL_SEED_OFFSET,
    EXTRA_FIELDS,
    RECORD_FIELDS,
    aggregate,
    evaluate_method,
    random_returns,
    score_records,
)
from metarobot.provenance import provenance_lines
from metarobot.report import (
    adaptation_curve_png,
    learning_curve_png,
    summary_markdown,
    within_episode_png,
    write_csv,
)
from metarobot.rollout import episode_returns
from metarobot.validation import check_int

__all__ = ["Unit", "plan", "run_experiment"]

FIELDS = (*RECORD_FIELDS, "train_seed", *EXTRA_FIELDS)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One piece of work and the file that marks it done (plain data: picklable).

    Attributes:
        name: Human-readable name.
        output: The file whose existence marks the unit done.
        kind: What to do: ``train`` (a registry job), ``random`` or ``evaluate``.
        args: Arguments of the work.
        weight: Relative cost, for the progress bar.
        stage: 0 = training, 1 = evaluation (needs every stage-0 unit).
        trainer: The registry job's function, for ``train`` units.
    """

    name: str
    output: Path
    kind: str
    args: dict[str, Any]
    weight: float = 1.0
    stage: int = 0
    trainer: registry.Trainer | None = None


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _read_records(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = list(_csv_rows(path))
    for r in rows:
        r.setdefault("diverged", "0")  # records written before divergence was counted
        for k in ("task", "seed", "k", "train_seed", "diverged"):
            r[k] = int(r[k])
        for k in ("return", "score"):
            r[k] = float(r[k])
    return rows


def plan(cfg: ExperimentConfig, out: Path, progress: bool = True) -> list[Unit]:
    """The units of an experiment: stage 0 trains, stage 1 evaluates (needs stage 0).

    Training units come from the method registry; a job shared by several methods (the
    experts of the ensemble and the parameter average) is one unit.
    """
    units: list[Unit] = []
    seen: set[str] = set()
    ck, rec = out / "checkpoints", out / "records"
    for seed in cfg.train_seeds:
        for m in cfg.methods:
            spec = registry.get(m)
            if spec.reference and seed != cfg.train_seeds[0]:
                continue  # a reference is trained once, with the first training seed
            for job in spec.jobs(cfg, seed):
                if job.key in seen:
                    continue
                seen.add(job.key)
                units.append(
                    Unit(
                        job.label,
                        ck / f"{job.key}.pt",
                        "train",
                        job.args,
                        job.weight,
                        0,
                        job.trainer,
                    )
                )
    units.append(Unit("evaluate random actions", rec / "random.csv", "random", {}, 0.2, 1))
    for seed in cfg.train_seeds:
        for m in _evaluated(cfg, seed):
            units.append(
                Unit(
                    f"evaluate {m} (seed {seed})",
                    rec / f"{m}-s{seed}.csv",
                    "evaluate",
                    {"method": m, "seed": seed},
                    1.0,
                    1,
                )
            )
    return units


def run_unit(cfg: ExperimentConfig, out: Path, unit: Unit) -> str:
    """Do one unit's work and write its output file.

    A top-level function of plain-data arguments, so it runs anywhere: in this process, a
    worker process or a Ray task.

    Returns:
        The unit's name.
    """
    torch.set_num_threads(cfg.torch_threads)
    for mod in cfg.imports:  # a worker process must register the user's families too
        importlib.import_module(mod)
    if unit.kind == "train":
        if unit.trainer is None:
            raise ValueError(f"training unit {unit.name!r} has no trainer")
        unit.trainer(cfg, out, unit.output, unit.args)
    elif unit.kind == "random":
        _random_unit(cfg, unit.output)
    elif unit.kind == "evaluate":
        _evaluate_unit(cfg, out, unit)
    else:
        raise ValueError(f"unknown unit kind {unit.kind!r}; known: train, random, evaluate")
    return unit.name


def _random_unit(cfg: ExperimentConfig, path: Path) -> None:
    test_tasks = cfg.test_tasks()
    r = random_returns(
        cfg.family, test_tasks, episodes=max(cfg.eval.episodes, 4), seed=0, nthread=cfg.nthread
    )
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["task", "return"])
        for t, v in enumerate(r):
            w.writerow([t, float(v)])
    tmp.replace(path)


def _evaluate_unit(cfg: ExperimentConfig, out: Path, unit: Unit) -> None:
    m, seed, e = unit.args["method"], unit.args["seed"], cfg.eval
    spec = registry.get(m)
    test_tasks = cfg.test_tasks()
    loaded = spec.load(cfg, seed, out / "checkpoints")
    per_task = loaded if isinstance(loaded, list) else None
    recs = evaluate_method(
        m,
        None if per_task is not None else loaded,
        cfg.family,
        test_tasks,
        per_task_policies=per_task,
        ks=e.ks,
        seeds=e.seeds,
        episodes=e.episodes,
        adapt_steps=e.adapt_steps,
        adapt_lr=None if spec.own_step_size else e.adapt_lr,
        nthread=cfg.nthread,
    )
    for r in recs:
        r["train_seed"] = seed
    _within_episode_rewards(cfg, spec, loaded, test_tasks, unit.output.with_suffix(".steps.csv"))
    tmp = unit.output.with_suffix(".tmp")
    write_csv(recs, tmp, FIELDS)
    tmp.replace(unit.output)


def _within_episode_rewards(
    cfg: ExperimentConfig, spec: registry.MethodSpec, loaded: Any, tasks: list[Any], path: Path
) -> None:
    """Mean reward per step since reset (K = 0, first evaluation seed) → ``path``."""
    policies = loaded if isinstance(loaded, list) else [loaded] * len(tasks)
    seed = cfg.eval.seeds[0]
    seeds = [seed + EVAL_SEED_OFFSET + 7919 * i for i in range(len(tasks))]
    _, _, _, per_step = episode_returns(
        policies,
        cfg.family,
        tasks,
        episodes=cfg.eval.episodes,
        seeds=seeds,
        nthread=cfg.nthread,
        rewards=True,
    )
    assert per_step is not None
    curve = per_step.reshape(-1, per_step.shape[-1]).mean(0)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "mean_reward"])
        for t, v in enumerate(curve):
            w.writerow([t, f"{v:.6g}"])
    tmp.replace(path)


def _evaluated(cfg: ExperimentConfig, seed: int) -> list[str]:
    """Methods evaluated for one training seed (references only for the first)."""
    return [m for m in cfg.methods if not registry.get(m).reference or seed == cfg.train_seeds[0]]


def _check_same_config(cfg: ExperimentConfig, out: Path) -> None:
    """Refuse to resume into a folder made by a different config (results would mix)."""
    stamp = out / ".config.json"
    mine = dataclasses.asdict(cfg)
    mine.pop("out", None)
    mine.pop("description", None)
    mine = json.loads(json.dumps(mine))
    if stamp.exists():
        theirs = json.loads(stamp.read_text())
        if theirs != json.loads(json.dumps(mine)):
            changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ValueError(
                f"{str(out)!r} holds a run of a different config (changed: {changed}); resume "
                "only with the same config, or use another --out"
            )
    else:
        stamp.write_text(json.dumps(mine, indent=1, sort_keys=True))


def run_experiment(
    config: ExperimentConfig | str | Path,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    config_path: str | Path | None = None,
    backend: str = "local",
    workers: int = 1,
    address: str | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) an experiment and write its outputs.

    Args:
        config: A config or the path of a TOML config.
        out: Output folder (default: the config's ``out``).
        progress: Show a progress bar with ETA.
        backend: ``"local"`` (this machine; ``workers`` processes) or ``"ray"`` (each unit a
            Ray task with ``num_cpus=1``; needs ``pip install metarobot[ray]``).
        workers: Local worker processes (1 = run in this process).
        address: Ray cluster address (default: start or join a local Ray instance).
        config_path: Source file copied to ``<out>/config.toml`` (when ``config`` is a path it
            is used).
        command: The command line written at the top of ``summary.md`` (default: this
            process's ``sys.argv``).

    Returns:
        ``{"out", "summary", "records", "aggregate", "ran", "skipped", "seconds"}``.
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    check_int("workers", workers)
    if not isinstance(config, ExperimentConfig):
        config_path = Path(config)
        config = load_config(config_path)
    cfg = config
    out_dir = Path(out or cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config_path is not None:
        shutil.copyfile(config_path, out_dir / "config.toml")
    _check_same_config(cfg, out_dir)
    for sub in ("checkpoints", "logs", "records"):
        (out_dir / sub).mkdir(exist_ok=True)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    t0 = time.perf_counter()
    header = provenance_lines(command)  # the code that trains, not the code at report time
    ran, skipped = [], []
    pool = None
    if backend == "local" and workers > 1:  # one pool for both stages: workers start once
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )
    try:
        units = plan(cfg, out_dir, progress)
        timings = _read_timings(out_dir / "timings.csv")
        _write_timings(out_dir / "timings.csv", timings, units)
        todo = [u for u in units if not u.output.exists()]
        skipped = [u.name for u in units if u.output.exists()]
        total = sum(u.weight for u in todo)
        with tqdm(
            total=total,
            disable=not progress,
            desc=cfg.name,
            unit="u",
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} [{elapsed}<{remaining}]",
        ) as bar:
            for stage in (0, 1):  # evaluation needs every trained policy
                batch = [u for u in todo if u.stage == stage]
                for u, seconds in _execute(cfg, out_dir, batch, backend, workers, address, pool):
                    timings.setdefault(u.name, seconds)  # a reused unit keeps its first time
                    _write_timings(out_dir / "timings.csv", timings, units)
                    if not u.output.exists():
                        raise RuntimeError(f"unit {u.name!r} finished without writing {u.output}")
                    ran.append(u.name)
                    bar.set_postfix_str(u.name)
                    bar.update(u.weight)
    finally:
        torch.set_num_threads(prev_threads)
        if pool is not None:
            pool.shutdown()
    result = _report(cfg, out_dir, header)
    result.update(ran=ran, skipped=skipped, seconds=time.perf_counter() - t0)
    return result


def _read_timings(path: Path) -> dict[str, float]:
    """Unit → seconds of an earlier run of this folder (empty when there is none)."""
    if not path.exists():
        return {}
    rows = list(csv.reader(path.open(newline="")))
    if rows and rows[0] == ["unit", "seconds"]:
        rows = rows[1:]
    return {r[0]: float(r[1]) for r in rows if len(r) == 2}


def _write_timings(path: Path, timings: dict[str, float], units: list[Unit]) -> None:
    """Rewrite ``timings.csv`` (header, one row per finished unit, plan order), atomically."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["unit", "seconds"])
        for u in units:
            if u.name in timings:
                w.writerow([u.name, f"{timings[u.name]:.2f}"])
    tmp.replace(path)


def _timed(cfg: ExperimentConfig, out: Path, unit: Unit) -> tuple[str, float]:
    t0 = time.perf_counter()
    run_unit(cfg, out, unit)
    return unit.name, time.perf_counter() - t0


def _execute(
    cfg: ExperimentConfig,
    out: Path,
    units: list[Unit],
    backend: str,
    workers: int,
    address: str | None,
    pool: ProcessPoolExecutor | None = None,
) -> Iterator[tuple[Unit, float]]:
    """Run independent units; yield each (unit, seconds) as it finishes."""
    if not units:
        return
    by_name = {u.name: u for u in units}
    if backend == "ray":
        try:
            import ray
        except ImportError as err:
            raise ValueError("the ray backend needs Ray: pip install 'metarobot[ray]'") from err
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        remote = ray.remote(num_cpus=1)(_timed)
        pending = [remote.remote(cfg, out, u) for u in units]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            name, seconds = ray.get(done[0])
            yield by_name[name], seconds
    elif workers == 1:
        for u in units:
            name, seconds = _timed(cfg, out, u)
            yield u, seconds
    else:
        if pool is None:
            raise ValueError("a worker pool is needed for workers > 1")
        futures = [pool.submit(_timed, cfg, out, u) for u in units]
        for fut in as_completed(futures):
            name, seconds = fut.result()
            yield by_name[name], seconds


def _checkpoints(cfg: ExperimentConfig, out: Path) -> dict[str, dict[int, Any]]:
    """Per method and training seed, its loaded checkpoint(s) (references: first seed only)."""
    loaded: dict[str, dict[int, Any]] = {}
    for m in cfg.methods:
        spec = registry.get(m)
        loaded[m] = {}
        for seed in cfg.train_seeds[:1] if spec.reference else cfg.train_seeds:
            try:
                loaded[m][seed] = spec.load(cfg, seed, out / "checkpoints")
            except (FileNotFoundError, ValueError):
                continue
    return loaded


def _steps_used(
    cfg: ExperimentConfig, loaded: dict[str, dict[int, Any]]
) -> dict[str, tuple[int, int | None]]:
    """Per method: (planned most env steps, mean env steps its checkpoints record)."""
    planned = registry.check_budget(cfg)
    result: dict[str, tuple[int, int | None]] = {}
    for m in cfg.methods:
        spec = registry.get(m)
        used = []
        for pol in loaded[m].values():
            pols = pol if isinstance(pol, list) else [pol]
            vals = [p.meta.get("env_steps") for p in pols]
            if all(v is not None for v in vals):
                # A reference lists one policy per task: its budget is per task.
                used.append(float(np.mean(vals)) if spec.reference else float(sum(vals)))
        result[m] = (planned[m], int(np.mean(used)) if used else None)
    return result


def _curves(
    cfg: ExperimentConfig, loaded: dict[str, dict[int, Any]]
) -> dict[str, dict[str, list[float]]]:
    """``"<method> s<seed>"`` → the training curve its checkpoint records (episodic PPO)."""
    result = {}
    for m in cfg.methods:
        if registry.get(m).reference:
            continue
        for seed, pol in loaded[m].items():
            curve = None if isinstance(pol, list) else pol.meta.get("training_curve")
            if curve:
                result[f"{m} s{seed}"] = curve
    return result


def _report(cfg: ExperimentConfig, out: Path, header: list[str]) -> dict[str, Any]:
    rec = out / "records"
    rand = {int(r["task"]): float(r["return"]) for r in _csv_rows(rec / "random.csv")}
    loaded = _checkpoints(cfg, out)  # once: the budget table and the learning curves read them
    records: list[dict[str, Any]] = []
    for seed in cfg.train_seeds:
        for m in _evaluated(cfg, seed):
            records += _read_records(rec / f"{m}-s{seed}.csv")
    oracle0: dict[int, list[float]] = {}
    for r in records:
        if registry.get(r["method"]).reference and r["k"] == 0:
            oracle0.setdefault(r["task"], []).append(r["return"])
    oracle = {t: float(np.mean(v)) for t, v in oracle0.items()}
    score_records(records, rand, oracle)
    write_csv(records, out / "results.csv", FIELDS)
    agg = aggregate(records, reps=cfg.eval.bootstrap_reps)
    e = cfg.eval
    split_name = "test split" if e.split == "test" else "out-of-distribution (ood) split"
    notes = [
        f"Family `{cfg.family}`, {e.n_test_tasks} held-out tasks of its {split_name} × "
        "evaluation seeds "
        f"{e.seeds} × training seeds {cfg.train_seeds}; {e.episodes} evaluation episodes per "
        "cell (mean action), separate from the adaptation episodes. Adaptation with K episodes "
        "(`metarobot.adapt_many`): MLP policies take "
        f"{e.adapt_steps} gradient step(s) (step size: meta-learned/meta-trained for "
        f"meta-learners, {e.adapt_lr} for baselines); RMA fixes the latent its adaptation "
        "module inferred; the recurrent policy carries its GRU state across the K episodes. "
        "K = 0 is no adaptation, but the context policies still adapt online within the "
        "episode. Every adaptation passes the safeguard: it is kept only if its paired gain "
        f"over max(K, {DEFAULT_VALIDATION_EPISODES}) fresh validation episodes (against the "
        "original policy, same start states) clears zero by "
        f"{DEFAULT_MARGIN:g} standard error(s).",
        "Budget: "
        + (
            f"every trained method is held to budget_steps = {cfg.budget_steps:,} environment "
            "steps (checked before training; the table above gives each method's planned "
            "maximum and what its checkpoints record)."
            if cfg.budget_steps is not None
            else "no common budget_steps was set for this run: compare the steps each method "
            "used (table above) before comparing scores."
        )
        + " The oracle is the per-task reference (score 1), trained once per test task with "
        f"{cfg.baselines.oracle_timesteps:,} PPO steps and the first training seed"
        + (
            f" (the best of {cfg.baselines.oracle_restarts} PPO runs with different seeds, "
            "judged on that task from start states no evaluation uses)"
            if cfg.baselines.oracle_restarts > 1
            else ""
        )
        + "; it is not a method under test. "
        + (
            "DR and the oracles train with the episodic PPO of RMA's teacher (observation "
            "normalization, reward scaling); the ensemble's and the parameter average's experts "
            "with SB3's PPO."
            if cfg.baselines.trainer == "episodic"
            else "DR, the oracles and the experts train with SB3's PPO (no normalization); RMA "
            "and the recurrent policy with the episodic PPO."
        ),
    ]
    div = {
        m: sum(r["diverged"] for r in records if r["method"] == m)
        for m in dict.fromkeys(r["method"] for r in records)
    }
    total = sum(div.values())
    notes.append(
        f"Diverged evaluation episodes (simulation became unstable; the episode ends, no NaN "
        f"reaches a learner): {total} in all"
        + (": " + ", ".join(f"{m} {d}" for m, d in div.items() if d) if total else "")
        + "."
    )
    (out / "summary.md").write_text(
        summary_markdown(
            agg,
            cfg.name,
            notes,
            header=[
                *header,
                f"- runs: {len(cfg.train_seeds)} training seed(s) × {len(e.seeds)} evaluation "
                f"seed(s) × {e.n_test_tasks} held-out tasks ({e.split} split)"
                + (
                    f", every trained method held to {cfg.budget_steps:,} env steps"
                    if cfg.budget_steps is not None
                    else ""
                ),
            ],
            budgets=_steps_used(cfg, loaded),
        )
    )
    adaptation_curve_png(agg, out / "adaptation_curve.png", f"{cfg.name}: {cfg.family}")
    logs = {}
    for seed in cfg.train_seeds:
        for name in (x for x in cfg.methods if registry.get(x).learner is not None):
            p = out / "logs" / f"{name}-s{seed}.csv"
            if p.exists():
                logs[f"{name} s{seed}"] = [
                    {k: float(v) for k, v in r.items()} for r in _csv_rows(p)
                ]
    learning_curve_png(
        logs, out / "learning_curve.png", f"training: {cfg.family}", training=_curves(cfg, loaded)
    )
    curves = {}
    for m in cfg.methods:
        rows = []
        for seed in cfg.train_seeds[:1] if registry.get(m).reference else cfg.train_seeds:
            p = rec / f"{m}-s{seed}.steps.csv"
            if p.exists():
                rows.append([float(r["mean_reward"]) for r in _csv_rows(p)])
        if rows:  # an episode that ended gets reward 0 for the rest of the horizon
            h = registry.horizon(cfg.family)
            curves[m] = np.mean([np.pad(r[:h], (0, h - len(r[:h]))) for r in rows], axis=0)
    online = [m for m in curves if registry.get(m).policy_type in ("rma", "recurrent")]
    within_episode_png(
        curves, out / "within_episode.png", f"within the first episode: {cfg.family}", online
    )
    return {"out": out, "summary": out / "summary.md", "records": records, "aggregate": agg}
