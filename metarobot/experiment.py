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
    <out>/learning_curve.png      meta-training returns before/after adaptation
"""

from __future__ import annotations

import csv
import dataclasses
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

from metarobot import baselines
from metarobot.checkpoint import load
from metarobot.config import META_METHODS, ExperimentConfig, load_config
from metarobot.envs import task_split
from metarobot.evaluation import (
    EXTRA_FIELDS,
    RECORD_FIELDS,
    aggregate,
    evaluate_method,
    random_returns,
    score_records,
)
from metarobot.learners import MAML, MetaConfig, MetaSGD, Reptile
from metarobot.policies import Policy
from metarobot.report import (
    adaptation_curve_png,
    learning_curve_png,
    summary_markdown,
    write_csv,
)

__all__ = ["Unit", "plan", "run_experiment"]

FIELDS = (*RECORD_FIELDS, "train_seed", *EXTRA_FIELDS)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One piece of work and the file that marks it done (plain data: picklable).

    Attributes:
        name: Human-readable name.
        output: The file whose existence marks the unit done.
        kind: What to do (``meta``, ``expert``, ``dr``, ``oracle``, ``random``, ``evaluate``).
        args: Arguments of the work.
        weight: Relative cost, for the progress bar.
        stage: 0 = training, 1 = evaluation (needs every stage-0 unit).
    """

    name: str
    output: Path
    kind: str
    args: dict[str, Any]
    weight: float = 1.0
    stage: int = 0


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


def _meta_learner(name: str, cfg: ExperimentConfig, seed: int) -> Any:
    m = cfg.meta
    # Every [meta] field that MetaConfig also has is passed through as it is.
    shared = {f.name for f in dataclasses.fields(MetaConfig)}
    common = {f.name: getattr(m, f.name) for f in dataclasses.fields(m) if f.name in shared}
    common.update(hidden=tuple(m.hidden), seed=seed, device="cpu", nthread=cfg.nthread)
    if name == "reptile":
        common.update(
            inner_steps=m.reptile_inner_steps, outer_lr=m.reptile_lr, inner_lr=m.reptile_inner_lr
        )
        return Reptile(cfg.family, **common)
    cls = MetaSGD if name == "metasgd" else MAML
    return cls(cfg.family, first_order=(name == "fomaml"), **common)


def plan(cfg: ExperimentConfig, out: Path, progress: bool = True) -> list[Unit]:
    """The units of an experiment: stage 0 trains, stage 1 evaluates (needs stage 0)."""
    units: list[Unit] = []
    ck, rec = out / "checkpoints", out / "records"
    test_tasks = task_split(cfg.family)[1][: cfg.eval.n_test_tasks]
    for seed in cfg.train_seeds:
        for m in (x for x in cfg.methods if x in META_METHODS):
            units.append(
                Unit(
                    f"train {m} (seed {seed})",
                    ck / f"{m}-s{seed}.pt",
                    "meta",
                    {"method": m, "seed": seed},
                    3.0,
                )
            )
        if {"ensemble", "param_average"} & set(cfg.methods):
            for i in range(cfg.baselines.n_experts):
                units.append(
                    Unit(
                        f"train expert {i} (seed {seed})",
                        ck / f"expert-{i}-s{seed}.pt",
                        "expert",
                        {"index": i, "seed": seed},
                    )
                )
        if "domain_randomization" in cfg.methods:
            units.append(
                Unit(
                    f"train domain_randomization (seed {seed})",
                    ck / f"domain_randomization-s{seed}.pt",
                    "dr",
                    {"seed": seed},
                    2.0,
                )
            )
        if "oracle" in cfg.methods and seed == cfg.train_seeds[0]:
            # The oracle is a per-task reference (the score's 1.0), not a method under test:
            # trained once, with the first training seed.
            for t in range(len(test_tasks)):
                units.append(
                    Unit(
                        f"train oracle task {t} (seed {seed})",
                        ck / f"oracle-t{t}-s{seed}.pt",
                        "oracle",
                        {"task": t, "seed": seed},
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
    ck, logs = out / "checkpoints", out / "logs"
    train_tasks, test_tasks = task_split(cfg.family)
    test_tasks = test_tasks[: cfg.eval.n_test_tasks]
    b, nth, hidden = cfg.baselines, cfg.nthread, tuple(cfg.meta.hidden)
    a = unit.args
    path = unit.output
    if unit.kind == "meta":
        m, seed = a["method"], a["seed"]
        learner = _meta_learner(m, cfg, seed)
        try:
            policy = learner.train(
                cfg.meta.iterations,
                log_path=logs / f"{m}-s{seed}.csv",
                tensorboard_dir=out / "tb" / f"{m}-s{seed}",
                checkpoint_every=cfg.meta.checkpoint_every,
                progress=False,
                state_path=path.with_suffix(".state.pt"),
            )
        finally:
            learner.close()
        policy.save(path)  # the finished unit's marker
    elif unit.kind == "expert":
        init_seed = 10_000 + a["seed"]
        pol = baselines.train_expert(
            cfg.family,
            train_tasks[a["index"] % len(train_tasks)],
            b.expert_timesteps,
            seed=init_seed + a["index"],
            init_state=_expert_init(cfg, init_seed),
            n_envs=b.n_envs,
            nthread=nth,
            hidden=hidden,
        )
        pol.save(path)
    elif unit.kind == "dr":
        pol = baselines.train_domain_randomization(
            cfg.family,
            b.dr_timesteps,
            seed=a["seed"],
            n_envs=b.n_envs,
            nthread=nth,
            hidden=hidden,
            tasks=train_tasks,
        )
        pol.save(path)
    elif unit.kind == "oracle":
        t, seed = a["task"], a["seed"]
        pol = baselines.train_expert(
            cfg.family,
            test_tasks[t],
            b.oracle_timesteps,
            seed=20_000 + 100 * seed + t,
            n_envs=b.n_envs,
            nthread=nth,
            hidden=hidden,
            method="oracle",
        )
        pol.save(path)
    elif unit.kind == "random":
        r = random_returns(
            cfg.family, test_tasks, episodes=max(cfg.eval.episodes, 4), seed=0, nthread=nth
        )
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["task", "return"])
            for t, v in enumerate(r):
                w.writerow([t, float(v)])
        tmp.replace(path)
    elif unit.kind == "evaluate":
        m, seed, e = a["method"], a["seed"], cfg.eval
        kw: dict[str, Any] = {
            "ks": e.ks,
            "seeds": e.seeds,
            "episodes": e.episodes,
            "adapt_steps": e.adapt_steps,
            "nthread": nth,
        }
        per_task = None
        if m == "oracle":
            per_task = [load(ck / f"oracle-t{t}-s{seed}.pt") for t in range(len(test_tasks))]
        if m not in META_METHODS:
            kw["adapt_lr"] = e.adapt_lr
        recs = evaluate_method(
            m,
            _method_policy(m, cfg, seed, ck),
            cfg.family,
            test_tasks,
            per_task_policies=per_task,
            **kw,
        )
        for r in recs:
            r["train_seed"] = seed
        tmp = path.with_suffix(".tmp")
        write_csv(recs, tmp, FIELDS)
        tmp.replace(path)
    else:
        raise ValueError(f"unknown unit kind {unit.kind!r}")
    return unit.name


def _evaluated(cfg: ExperimentConfig, seed: int) -> list[str]:
    """Methods evaluated for one training seed (the oracle only for the first)."""
    return [m for m in cfg.methods if m != "oracle" or seed == cfg.train_seeds[0]]


def _expert_init(cfg: ExperimentConfig, init_seed: int) -> dict[str, torch.Tensor]:
    from metarobot.sb3 import make_sb3_vec_env

    venv = make_sb3_vec_env(cfg.family, task_split(cfg.family)[0][:1], nthread=0)
    try:
        model = baselines.ppo_model(venv, init_seed, hidden=tuple(cfg.meta.hidden))
        return {k: v.clone() for k, v in model.policy.state_dict().items()}
    finally:
        venv.close()


def _method_policy(m: str, cfg: ExperimentConfig, seed: int, ck: Path) -> Policy | None:
    if m in META_METHODS or m == "domain_randomization":
        return load(ck / f"{m}-s{seed}.pt")
    if m in ("ensemble", "param_average"):
        experts = [load(ck / f"expert-{i}-s{seed}.pt") for i in range(cfg.baselines.n_experts)]
        return (
            baselines.ensemble(experts) if m == "ensemble" else baselines.parameter_average(experts)
        )
    if m == "scratch":
        return baselines.scratch(cfg.family, seed=seed, hidden=tuple(cfg.meta.hidden))
    return None  # oracle: per-task policies


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

    Returns:
        ``{"out", "summary", "records", "aggregate", "ran", "skipped", "seconds"}``.
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
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
    ran, skipped = [], []
    pool = None
    if backend == "local" and workers > 1:  # one pool for both stages: workers start once
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )
    try:
        units = plan(cfg, out_dir, progress)
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
                    with open(out_dir / "timings.csv", "a", newline="") as fh:
                        csv.writer(fh).writerow([u.name, f"{seconds:.2f}"])
                    if not u.output.exists():
                        raise RuntimeError(f"unit {u.name!r} finished without writing {u.output}")
                    ran.append(u.name)
                    bar.set_postfix_str(u.name)
                    bar.update(u.weight)
    finally:
        torch.set_num_threads(prev_threads)
        if pool is not None:
            pool.shutdown()
    result = _report(cfg, out_dir)
    result.update(ran=ran, skipped=skipped, seconds=time.perf_counter() - t0)
    return result


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


def _report(cfg: ExperimentConfig, out: Path) -> dict[str, Any]:
    rec = out / "records"
    rand = {int(r["task"]): float(r["return"]) for r in _csv_rows(rec / "random.csv")}
    records: list[dict[str, Any]] = []
    for seed in cfg.train_seeds:
        for m in _evaluated(cfg, seed):
            records += _read_records(rec / f"{m}-s{seed}.csv")
    oracle0: dict[int, list[float]] = {}
    for r in records:
        if r["method"] == "oracle" and r["k"] == 0:
            oracle0.setdefault(r["task"], []).append(r["return"])
    oracle = {t: float(np.mean(v)) for t, v in oracle0.items()}
    score_records(records, rand, oracle)
    write_csv(records, out / "results.csv", FIELDS)
    agg = aggregate(records, reps=cfg.eval.bootstrap_reps)
    b, m, e = cfg.baselines, cfg.meta, cfg.eval
    notes = [
        f"Family `{cfg.family}`, {e.n_test_tasks} held-out test tasks × evaluation seeds "
        f"{e.seeds} × training seeds {cfg.train_seeds}; {e.episodes} evaluation episodes per "
        f"cell (mean action), separate from the adaptation episodes; each adaptation takes "
        f"{e.adapt_steps} gradient step(s) on K episodes (step size: meta-learned/meta-trained "
        f"for meta-learners, {e.adapt_lr} for baselines).",
        f"Budgets: meta-learners {m.iterations} iterations × {m.meta_batch} tasks; "
        f"{b.n_experts} PPO experts × {b.expert_timesteps:,} steps; domain randomization "
        f"{b.dr_timesteps:,} steps; oracle {b.oracle_timesteps:,} steps per test task (trained "
        "once, with the first training seed: it is the reference, not a method under test).",
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
    (out / "summary.md").write_text(summary_markdown(agg, cfg.name, notes))
    adaptation_curve_png(agg, out / "adaptation_curve.png", f"{cfg.name}: {cfg.family}")
    logs = {}
    for seed in cfg.train_seeds:
        for name in (x for x in cfg.methods if x in META_METHODS):
            p = out / "logs" / f"{name}-s{seed}.csv"
            if p.exists():
                logs[f"{name} s{seed}"] = [
                    {k: float(v) for k, v in r.items()} for r in _csv_rows(p)
                ]
    learning_curve_png(logs, out / "learning_curve.png", f"meta-training: {cfg.family}")
    return {"out": out, "summary": out / "summary.md", "records": records, "aggregate": agg}
