"""The held-out evaluation protocol, tidy records, and IQM with stratified-bootstrap CIs.

Protocol (every method alike): for each evaluation seed and each K in ``ks``, the method's policy
is adapted to every held-out task with K episodes (``adapt_many``; K = 0 means no adaptation),
then each adapted policy runs ``episodes`` *separate* evaluation episodes on its task with the
mean action. Adaptation and evaluation episodes come from different seed streams, so evaluation
never reuses an adaptation episode. Every K of one evaluation seed is evaluated from the same
start states (common random numbers), so the difference between two values of K is paired: it
measures what adaptation changed, not which start states were drawn. (Before 2026-12-01 each K
drew its own start states; where most adaptations were rejected, that noise alone made a
"gain" of several points of return, either sign.) The score of a return R on a task is
``(R − R_random) / (R_oracle − R_random)``, with R_random the return of uniformly random actions
and R_oracle the un-adapted oracle's return on that task.

Aggregates follow rliable (Agarwal et al., 2021): the interquartile mean (IQM, scipy's
``trim_mean(·, 0.25)``) over all (task, seed) scores, with a 95% percentile interval from a
stratified bootstrap that resamples seeds within each task. (rliable itself no longer imports
with current pandas/arch, so the same definitions are computed here with numpy and scipy.)

:func:`evaluation_returns` (and its seed offset) live in :mod:`metarobot.returns`, below the
method registry, whose oracle picks its best restart with them; they are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import trim_mean

from metarobot.adaptation import adapt_many
from metarobot.checkpoint import AnyPolicy
from metarobot.envs import Task, make_batched
from metarobot.registry import method_names
from metarobot.returns import EVAL_SEED_OFFSET as EVAL_SEED_OFFSET
from metarobot.returns import evaluation_returns

__all__ = [
    "AGGREGATES",
    "RECORD_FIELDS",
    "aggregate",
    "evaluate_method",
    "evaluation_returns",
    "iqm",
    "optimality_gap",
    "random_returns",
    "score_records",
    "stratified_bootstrap_ci",
]

#: Columns of a tidy record.
RECORD_FIELDS: tuple[str, ...] = ("method", "family", "task", "seed", "k", "return", "score")
#: Extra columns written after the record fields.
EXTRA_FIELDS: tuple[str, ...] = ("diverged",)


def random_returns(
    env_id: str, tasks: Sequence[Task], *, episodes: int, seed: int, nthread: int | None = None
) -> np.ndarray:
    """Mean return of uniformly random actions on each task."""
    env = make_batched(
        env_id,
        [t for t in tasks for _ in range(episodes)],
        autoreset_mode="disabled",
        nthread=nthread,
    )
    rng = np.random.default_rng(seed)
    try:
        env.reset(seed=int(rng.integers(0, 2**31 - 1)))
        total = np.zeros(env.num_envs)
        alive = np.ones(env.num_envs, dtype=bool)
        low, high = env.single_action_space.low, env.single_action_space.high
        for _ in range(int(env.max_episode_steps)):
            act = rng.uniform(low, high, size=(env.num_envs, len(low)))
            _, rew, term, trunc, _ = env.step(act)
            total += np.where(alive, rew, 0.0)
            alive &= ~(term | trunc)
            if not alive.any():
                break
    finally:
        env.close()
    return total.reshape(len(tasks), episodes).mean(1)


def evaluate_method(
    method: str,
    policy: AnyPolicy | None,
    env_id: str,
    tasks: Sequence[Task],
    *,
    ks: Iterable[int] = (0, 1, 2, 3, 5),
    seeds: Iterable[int] = (0, 1, 2, 3, 4),
    episodes: int = 2,
    adapt_steps: int | None = None,
    adapt_lr: float | None = None,
    task_ids: Sequence[int] | None = None,
    nthread: int | None = None,
    per_task_policies: Sequence[AnyPolicy] | None = None,
) -> list[dict[str, Any]]:
    """Records of one method under the protocol (``score`` left NaN; see :func:`score_records`).

    Args:
        method: Method name written into the records.
        policy: The method's policy (ignored when ``per_task_policies`` is given).
        env_id: Family id.
        tasks: Held-out tasks.
        ks: Adaptation budgets (episodes); 0 = no adaptation.
        seeds: Evaluation seeds.
        episodes: Evaluation episodes per task, seed and K.
        adapt_steps: Gradient steps per adaptation (default: the policy's).
        adapt_lr: Step size (default: the policy's own, possibly meta-learned).
        task_ids: Index of each task in the test split (default 0..N−1).
        nthread: Simulator threads.
        per_task_policies: One policy per task (the oracle).

    Returns:
        Tidy records with the fields of :data:`RECORD_FIELDS`.
    """
    tasks = list(tasks)
    ks, seeds = list(ks), list(seeds)  # iterated once per seed: materialize one-shot iterables
    ids = list(task_ids) if task_ids is not None else list(range(len(tasks)))
    records: list[dict[str, Any]] = []
    for seed in seeds:
        for k in ks:
            if per_task_policies is not None:
                if k == 0:
                    adapted = list(per_task_policies)
                else:
                    adapted = [
                        adapt_many(
                            p,
                            env_id,
                            [t],
                            episodes=k,
                            steps=adapt_steps,
                            lr=adapt_lr,
                            seed=seed * 1000 + i,
                            device="cpu",
                            nthread=nthread,
                        )[0]
                        for i, (p, t) in enumerate(zip(per_task_policies, tasks, strict=True))
                    ]
            elif k == 0:
                adapted = [policy] * len(tasks)
            else:
                adapted = adapt_many(
                    policy,
                    env_id,
                    tasks,
                    episodes=k,
                    steps=adapt_steps,
                    lr=adapt_lr,
                    seed=seed * 1000,
                    device="cpu",
                    nthread=nthread,
                )
            rets, div = evaluation_returns(
                adapted,
                env_id,
                tasks,
                episodes=episodes,
                seed=seed * 1000,  # the same start states for every K: paired across K
                nthread=nthread,
                return_diverged=True,
            )
            for tid, r, d in zip(ids, rets, div, strict=True):
                records.append(
                    {
                        "method": method,
                        "family": env_id,
                        "task": int(tid),
                        "seed": int(seed),
                        "k": int(k),
                        "return": float(r),
                        "score": float("nan"),
                        "diverged": int(d),
                    }
                )
    return records


def score_records(
    records: list[dict[str, Any]], random: Mapping[int, float], oracle: Mapping[int, float]
) -> list[dict[str, Any]]:
    """Fill ``score = (R − R_random) / (R_oracle − R_random)`` per task (in place)."""
    for r in records:
        lo, hi = random[r["task"]], oracle[r["task"]]
        span = hi - lo
        r["score"] = (r["return"] - lo) / span if abs(span) > 1e-8 else float("nan")
    return records


def iqm(x: np.ndarray) -> float:
    """Interquartile mean (the mean of the middle 50%), as rliable defines it."""
    x = np.asarray(x, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    return float(trim_mean(x, 0.25)) if x.size else float("nan")


def optimality_gap(x: np.ndarray, gamma: float = 1.0) -> float:
    """Rliable's optimality gap: mean of ``max(0, γ − score)`` (lower is better)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    return float(np.mean(np.maximum(gamma - x, 0.0))) if x.size else float("nan")


def _finite_mean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    return float(np.mean(x)) if x.size else float("nan")


def _finite_median(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


#: rliable's four aggregate metrics of a score matrix.
AGGREGATES: dict[str, Any] = {
    "mean": _finite_mean,
    "median": _finite_median,
    "iqm": iqm,
    "og": optimality_gap,
}


def stratified_bootstrap_ci(
    scores: np.ndarray,
    reps: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    stat: Any = iqm,
) -> tuple[float, float]:
    """Percentile CI of ``stat``, resampling runs (seeds) with replacement within each task.

    Args:
        scores: ``[runs, tasks]`` score matrix.
        reps: Bootstrap replicates.
        alpha: 1 − confidence level.
        seed: Seed of the resampling generator.
        stat: Aggregate of a score matrix (default: the IQM).
    """
    return _bootstrap(scores, {"s": stat}, reps, alpha, seed)["s"]


def _bootstrap(
    scores: np.ndarray, stats: Mapping[str, Any], reps: int, alpha: float, seed: int
) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(seed)
    runs, tasks = scores.shape
    out = {k: np.empty(reps) for k in stats}
    for b in range(reps):
        idx = rng.integers(0, runs, size=(runs, tasks))
        sample = np.take_along_axis(scores, idx, axis=0)
        for k, f in stats.items():
            out[k][b] = f(sample)
    res = {}
    for k, v in out.items():
        lo, hi = np.nanpercentile(v, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        res[k] = (float(lo), float(hi))
    return res


def aggregate(records: Sequence[Mapping[str, Any]], reps: int = 2000) -> list[dict[str, Any]]:
    """Per (method, k): rliable's four aggregates with 95% CIs, mean return, runs, per-task means.

    The score matrix has one row per run — a (training seed, evaluation seed) pair — and one
    column per task; the bootstrap resamples runs within each task. Keys: ``iqm``, ``mean``,
    ``median``, ``og`` (optimality gap), each with ``<name>_low`` / ``<name>_high``
    (``ci_low``/``ci_high`` are the IQM's), ``mean_return``, ``runs``, ``per_task`` (task →
    mean score).
    """
    out = []
    order = method_names()
    methods = [m for m in order if any(r["method"] == m for r in records)]
    methods += sorted({r["method"] for r in records} - set(methods))
    for m in methods:
        rows = [r for r in records if r["method"] == m]
        for k in sorted({r["k"] for r in rows}):
            sel = [r for r in rows if r["k"] == k]
            tasks = sorted({r["task"] for r in sel})
            # A run is one (training seed, evaluation seed) pair.
            runs = sorted({(r.get("train_seed", 0), r["seed"]) for r in sel})
            mat = np.full((len(runs), len(tasks)), np.nan)
            for r in sel:
                mat[runs.index((r.get("train_seed", 0), r["seed"])), tasks.index(r["task"])] = r[
                    "score"
                ]
            cis = _bootstrap(mat, AGGREGATES, reps, 0.05, 0)
            row: dict[str, Any] = {"method": m, "k": k}
            for name, f in AGGREGATES.items():
                row[name] = f(mat)
                row[f"{name}_low"], row[f"{name}_high"] = cis[name]
            row["ci_low"], row["ci_high"] = row["iqm_low"], row["iqm_high"]
            row["mean_return"] = float(np.mean([r["return"] for r in sel]))
            row["runs"] = len(sel)
            row["per_task"] = {t: float(np.nanmean(mat[:, j])) for j, t in enumerate(tasks)}
            out.append(row)
    return out
