"""The held-out evaluation protocol, scores, IQM and stratified-bootstrap CIs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import trim_mean

import metarobot
import metarobot.envs as me
from metarobot import evaluation as ev
from metarobot.evaluation import (
    RECORD_FIELDS,
    aggregate,
    evaluate_method,
    evaluation_returns,
    iqm,
    random_returns,
    score_records,
    stratified_bootstrap_ci,
)
from metarobot.registry import method_names

PENDULUM = "metarobot/InvertedPendulumRandParams-v0"

METHODS = method_names()


@pytest.fixture(scope="module")
def tasks():
    return me.task_split(PENDULUM)[1][:2]


@pytest.fixture(scope="module")
def policy():
    return metarobot.make_policy(PENDULUM, hidden=(8, 8), seed=0)


class Spy:
    """Records the episodes (reset seeds) the protocol uses for adaptation and evaluation."""

    def __init__(self, monkeypatch):
        self.adapt_seeds: list[tuple[int, ...]] = []
        self.eval_seeds: list[tuple[int, ...]] = []
        real_adapt, real_eval = ev.adapt_many, ev.evaluation_returns

        def adapt_many(*args, **kwargs):
            kwargs["return_batch"] = True
            pols, batch = real_adapt(*args, **kwargs)
            self.adapt_seeds.append(tuple(batch.reset_seeds))
            return pols

        def evaluation_returns(*args, **kwargs):
            wanted = kwargs.get("return_seeds", False)
            kwargs["return_seeds"] = True
            res = real_eval(*args, **kwargs)
            out, seeds, *rest = res  # (returns, seeds, further requested outputs)
            self.eval_seeds.append(tuple(seeds))
            if wanted:
                return res
            return (out, *rest) if rest else out

        monkeypatch.setattr(ev, "adapt_many", adapt_many)
        monkeypatch.setattr(ev, "evaluation_returns", evaluation_returns)


# ---------------------------------------------------------------- the protocol


def test_evaluation_episodes_are_not_adaptation_episodes(monkeypatch, policy, tasks):
    spy = Spy(monkeypatch)
    recs = evaluate_method(
        "reptile", policy, PENDULUM, tasks, ks=(0, 1, 2), seeds=(0, 1), episodes=2, nthread=1
    )
    assert len(recs) == 2 * 3 * 2
    # One adaptation per (seed, K > 0) and one evaluation per (seed, K).
    assert len(spy.adapt_seeds) == 2 * 2
    assert len(spy.eval_seeds) == 2 * 3
    adapt = {s for call in spy.adapt_seeds for s in call}
    evals = [s for call in spy.eval_seeds for s in call]
    assert adapt and evals
    assert adapt.isdisjoint(evals)
    # K episodes per task for adaptation; `episodes` separate evaluation episodes per task.
    assert sorted(len(c) for c in spy.adapt_seeds) == [2, 2, 4, 4]
    for call in spy.eval_seeds:
        assert len(call) == len(tasks) * 2
        assert len(set(call)) == len(call)  # separate episodes, not repeats


def test_every_k_is_evaluated_from_the_same_start_states(monkeypatch, policy, tasks):
    spy = Spy(monkeypatch)
    evaluate_method("reptile", policy, PENDULUM, tasks, ks=(0, 1, 2), seeds=(0, 1), nthread=1)
    seed0, seed1 = spy.eval_seeds[:3], spy.eval_seeds[3:]
    assert len(set(seed0)) == len(set(seed1)) == 1  # paired across K ...
    assert set(seed0[0]).isdisjoint(seed1[0])  # ... and independent across evaluation seeds


def test_an_unchanged_policy_gains_exactly_nothing(monkeypatch, policy, tasks):
    # A rejected adaptation returns the original policy: its "gain" must be 0, not noise.
    monkeypatch.setattr(ev, "adapt_many", lambda p, env_id, ts, **kw: [p.clone() for _ in ts])
    recs = evaluate_method("scratch", policy, PENDULUM, tasks, ks=(0, 1, 3), seeds=(0,), nthread=1)
    by_k = {k: [r["return"] for r in recs if r["k"] == k] for k in (0, 1, 3)}
    assert by_k[0] == by_k[1] == by_k[3]


def test_oracle_protocol_also_keeps_episodes_apart(monkeypatch, policy, tasks):
    spy = Spy(monkeypatch)
    others = [metarobot.make_policy(PENDULUM, hidden=(8, 8), seed=s) for s in (1, 2)]
    recs = evaluate_method(
        "oracle",
        None,
        PENDULUM,
        tasks,
        ks=(0, 1),
        seeds=(0, 1),
        episodes=1,
        nthread=1,
        per_task_policies=others,
    )
    assert len(recs) == 2 * 2 * 2
    adapt = {s for call in spy.adapt_seeds for s in call}
    evals = {s for call in spy.eval_seeds for s in call}
    assert len(spy.adapt_seeds) == 2 * 2  # one adaptation per task, seed and K > 0
    assert adapt.isdisjoint(evals)


def test_adaptation_uses_adapt_many_seed_stream(policy, tasks):
    # The same check straight through the public functions, with the seeds of seed 0, K = 1.
    _, batch = metarobot.adapt_many(
        policy, PENDULUM, tasks, episodes=1, seed=0, device="cpu", nthread=1, return_batch=True
    )
    _, seeds = evaluation_returns(
        [policy] * 2, PENDULUM, tasks, episodes=1, seed=1, nthread=1, return_seeds=True
    )
    assert set(batch.reset_seeds).isdisjoint(seeds)
    assert len(batch.reset_seeds) == len(seeds) == 2


def test_evaluate_method_records(policy, tasks):
    ks, seeds = (0, 1), (0, 3, 5)
    recs = evaluate_method(
        "maml",
        policy,
        PENDULUM,
        tasks,
        ks=ks,
        seeds=seeds,
        episodes=1,
        task_ids=[4, 7],
        nthread=1,
    )
    assert len(recs) == len(seeds) * len(ks) * len(tasks)
    extra = set(getattr(ev, "EXTRA_FIELDS", ()))
    for r in recs:
        assert tuple(r)[: len(RECORD_FIELDS)] == RECORD_FIELDS
        assert set(r) - set(RECORD_FIELDS) <= extra  # only declared extra columns
        assert r["method"] == "maml"
        assert r["family"] == PENDULUM
        assert math.isnan(r["score"])
        assert isinstance(r["return"], float) and math.isfinite(r["return"])
        assert r["return"] > 0
    cells = {(r["task"], r["seed"], r["k"]) for r in recs}
    assert cells == {(t, s, k) for t in (4, 7) for s in seeds for k in ks}


# Rule: ks and seeds may be one-shot iterables; every (seed, k) cell is evaluated.
def test_evaluate_method_accepts_one_shot_iterables(policy, tasks):
    recs = evaluate_method(
        "x", policy, PENDULUM, tasks, ks=iter([0]), seeds=iter([0, 1]), episodes=1, nthread=1
    )
    assert {(r["seed"], r["k"]) for r in recs} == {(0, 0), (1, 0)}
    assert len(recs) == 2 * len(tasks)


def test_evaluate_method_is_deterministic_and_k0_is_unadapted(policy, tasks):
    kw = {"ks": (0, 1), "seeds": (0,), "episodes": 1, "nthread": 1}
    a = evaluate_method("scratch", policy, PENDULUM, tasks, **kw)
    b = evaluate_method("scratch", policy, PENDULUM, tasks, **kw)
    fields = [f for f in RECORD_FIELDS if f != "score"]  # score is NaN here
    assert [[r[f] for f in fields] for r in a] == [[r[f] for f in fields] for r in b]
    # K = 0: the policy itself, run on the evaluation episodes.
    direct = evaluation_returns([policy] * 2, PENDULUM, tasks, episodes=1, seed=0, nthread=1)
    k0 = [r["return"] for r in a if r["k"] == 0]
    np.testing.assert_allclose(k0, direct)


def test_evaluation_returns_rejects_policy_count(policy, tasks):
    with pytest.raises(ValueError, match="one policy per task"):
        evaluation_returns([policy], PENDULUM, tasks, episodes=1, seed=0)


def test_random_returns(tasks):
    a = random_returns(PENDULUM, tasks, episodes=3, seed=0, nthread=1)
    b = random_returns(PENDULUM, tasks, episodes=3, seed=0, nthread=1)
    assert a.shape == (2,)
    np.testing.assert_array_equal(a, b)
    assert np.all(a >= 1) and np.all(a < 200)  # random actions drop the pole quickly


# ---------------------------------------------------------------- IQM and CIs


def test_iqm_known_values():
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm(np.array([0.0, 0.0, 1.0, 1.0, 100.0, -100.0, 1.0, 0.0])) == pytest.approx(0.5)
    assert iqm(np.array([[1.0, 2.0], [3.0, 4.0]])) == pytest.approx(2.5)
    assert iqm(np.array([5.0, np.nan, 5.0])) == 5.0  # NaN cells are ignored
    assert math.isnan(iqm(np.array([])))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 13, 40, 101])
def test_iqm_equals_scipy_trim_mean(n):
    x = np.random.default_rng(n).standard_cauchy(n)
    assert iqm(x) == pytest.approx(trim_mean(x, 0.25), rel=1e-12, abs=1e-12)


def test_bootstrap_ci_contains_iqm_and_is_deterministic():
    scores = np.random.default_rng(0).normal(0.5, 0.3, size=(10, 4))
    lo, hi = stratified_bootstrap_ci(scores, reps=300, seed=0)
    assert lo < iqm(scores) < hi
    assert (lo, hi) == stratified_bootstrap_ci(scores, reps=300, seed=0)
    assert (lo, hi) != stratified_bootstrap_ci(scores, reps=300, seed=1)
    wide = stratified_bootstrap_ci(scores, reps=300, alpha=0.01, seed=0)
    assert wide[0] <= lo and wide[1] >= hi


def test_bootstrap_ci_narrows_with_more_runs():
    rng = np.random.default_rng(1)
    few = rng.normal(0.5, 0.3, size=(4, 3))
    many = rng.normal(0.5, 0.3, size=(200, 3))
    lo_f, hi_f = stratified_bootstrap_ci(few, reps=300, seed=0)
    lo_m, hi_m = stratified_bootstrap_ci(many, reps=300, seed=0)
    assert hi_m - lo_m < 0.5 * (hi_f - lo_f)


def test_bootstrap_resamples_within_tasks():
    # Every run of a task has the same score: resampling runs within a task changes nothing,
    # so the CI collapses onto the IQM (a pooled resampling would spread it out).
    scores = np.tile(np.array([0.0, 1.0, 2.0, 10.0]), (6, 1))
    lo, hi = stratified_bootstrap_ci(scores, reps=200, seed=0)
    assert lo == pytest.approx(iqm(scores))
    assert hi == pytest.approx(iqm(scores))


# ---------------------------------------------------------------- scores and aggregates


def rec(method, task, seed, k, ret):
    return {
        "method": method,
        "family": PENDULUM,
        "task": task,
        "seed": seed,
        "k": k,
        "return": float(ret),
        "score": float("nan"),
    }


def test_score_records_maps_random_to_0_and_oracle_to_1():
    random = {0: 10.0, 1: -5.0}
    oracle = {0: 110.0, 1: 15.0}
    recs = [
        rec("x", 0, 0, 0, 10.0),
        rec("x", 0, 0, 1, 110.0),
        rec("x", 0, 0, 2, 60.0),
        rec("x", 1, 0, 0, -5.0),
        rec("x", 1, 0, 1, 15.0),
        rec("x", 1, 0, 2, 25.0),
    ]
    out = score_records(recs, random, oracle)
    assert out is recs  # filled in place
    assert [r["score"] for r in recs] == pytest.approx([0.0, 1.0, 0.5, 0.0, 1.0, 1.5])


def test_score_records_zero_span_is_nan():
    recs = score_records([rec("x", 0, 0, 0, 3.0)], {0: 3.0}, {0: 3.0})
    assert math.isnan(recs[0]["score"])


def test_aggregate_one_row_per_method_and_k():
    recs = []
    for m in ("scratch", "oracle", "maml", "custom"):
        for k in (0, 2):
            for t in range(3):
                for s in range(4):
                    recs.append(rec(m, t, s, k, 10.0 * t + s + k))
    for r in recs:
        r["score"] = r["return"] / 100.0
    agg = aggregate(recs, reps=50)
    keys = [(a["method"], a["k"]) for a in agg]
    assert len(keys) == len(set(keys)) == 4 * 2
    # Table order: known methods in METHODS order, then others.
    order = list(dict.fromkeys(a["method"] for a in agg))
    assert order == ["maml", "oracle", "scratch", "custom"]
    assert order[:3] == [m for m in METHODS if m in order]
    for a in agg:
        sel = [r for r in recs if r["method"] == a["method"] and r["k"] == a["k"]]
        assert a["runs"] == len(sel) == 12
        assert a["iqm"] == pytest.approx(iqm(np.array([r["score"] for r in sel])))
        assert a["mean_return"] == pytest.approx(np.mean([r["return"] for r in sel]))
        assert a["ci_low"] <= a["iqm"] <= a["ci_high"]


def test_aggregate_counts_every_training_seed_as_runs():
    from metarobot.evaluation import aggregate as agg

    recs = [
        {
            "method": "maml",
            "k": 0,
            "task": t,
            "seed": s,
            "train_seed": ts,
            "return": float(ts),
            "score": float(ts),
        }
        for t in range(2)
        for s in range(2)
        for ts in range(3)
    ]
    row = agg(recs, reps=50)[0]
    assert row["runs"] == 12
    # Scores 0, 1, 2 in equal numbers: the IQM of all 12 is 1 (not 2, the last seed's).
    assert row["iqm"] == pytest.approx(1.0)


def test_policies_with_their_own_normalizers_run_together_as_alone(tasks):
    # Per-task oracles trained apart carry different observation statistics; run side by side,
    # each must still act with its own (the batch once used the first policy's for all).
    from metarobot.rollout import episode_returns

    pols = [metarobot.make_policy(PENDULUM, hidden=(8, 8), seed=s) for s in (1, 2)]
    rng = np.random.default_rng(0)
    for p in pols:
        p.normalizer.mean = rng.normal(scale=0.5, size=4)
        p.normalizer.var = rng.uniform(0.01, 0.2, size=4)
    both = episode_returns(pols, PENDULUM, tasks, episodes=2, seeds=[3, 4], nthread=1)[0]
    for i in range(2):
        alone = episode_returns([pols[i]], PENDULUM, [tasks[i]], episodes=2, seeds=[3 + i])[0]
        # Exact: with one parameter set per task, vmap runs each task as its own bmm item of the
        # same shape (K rows) whether it is alone or beside others.
        np.testing.assert_array_equal(both[i], alone[0])
    swapped = pols[1].clone()
    swapped.normalizer = pols[0].normalizer
    other = episode_returns([swapped], PENDULUM, [tasks[1]], episodes=2, seeds=[4], nthread=1)[0]
    assert not np.array_equal(both[1], other[0])  # the statistics matter for this policy
