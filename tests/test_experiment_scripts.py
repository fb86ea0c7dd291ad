"""The measurement scripts behind committed results run end to end on tiny budgets."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from metarobot.envs import task_split

EXPERIMENTS = Path(__file__).parent.parent / "experiments"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # spawn workers import it by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gaps_trains_resumable_units_and_keeps_the_best_restart(tmp_path):
    gaps = _script("gaps")
    args = ["--families", "InvertedPendulumRandParams", "--timesteps", "1600", "--tasks", "1"]
    args += ["--episodes", "1", "--trainer", "episodic", "--restarts", "2", "--n-envs", "8"]
    args += ["--units", str(tmp_path / "units"), "--out", str(tmp_path / "out")]
    gaps.main(args)
    units = sorted(p.name for p in (tmp_path / "units" / "InvertedPendulumRandParams-v0").iterdir())
    assert units == [
        "dr-episodic-1600-s0.pt",
        "oracle0-r0-episodic-1600-s0-test.pt",
        "oracle0-r1-episodic-1600-s0-test.pt",
    ]
    with (tmp_path / "out" / "gaps.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["trainer"], r["restarts"], r["split"]) for r in rows] == [("episodic", "2", "test")]
    assert "best of 2 run(s)" in (tmp_path / "out" / "gaps.md").read_text()
    # A second run finds the family done and trains nothing.
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "units").rglob("*.pt")}
    gaps.main(args)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "units").rglob("*.pt")} == stamp


def test_gaps_refuses_more_tasks_than_the_split_holds(tmp_path):
    gaps = _script("gaps")
    s = gaps.Settings(("metarobot/InvertedPendulumRandParams-v0",), 100, 11, 1, 0)
    with pytest.raises(ValueError, match="--tasks must be in"):
        gaps.measure_family(s.families[0], s, tmp_path)


def test_episode_returns_run_a_within_episode_change():
    import numpy as np

    from metarobot.envs import task_split
    from metarobot.policies import make_policy
    from metarobot.rollout import episode_returns

    fid = "metarobot/HalfCheetahPhysical-v0"
    tasks = task_split(fid)[1][:2]
    pol = make_policy(fid, seed=0)
    kw = {"policies": [pol, pol], "env_id": fid, "tasks": tasks, "episodes": 1, "seeds": [3, 4]}
    _, _, _, plain = episode_returns(**kw, rewards=True)
    _, _, _, changed = episode_returns(
        **kw, rewards=True, env_kwargs={"change_step": 50, "change_to": "test"}
    )
    np.testing.assert_array_equal(plain[..., :50], changed[..., :50])  # same task until then
    assert not np.array_equal(plain[..., 50:], changed[..., 50:])  # then other dynamics


def test_video_labels_name_a_physical_task_and_a_motor_polarity():
    from metarobot.envs import Task, task_split

    video = _script("make_video")
    task = Task.make(
        "metarobot/HalfCheetahPhysical-v0",
        {
            "payload_mass": (0.42,),
            "geom_friction": (1.85,),
            "actuator_gear": (1.0, 0.48, 0.9, 1.1, 0.7, 0.6),
        },
        disabled_actuators=(0,),
    )
    assert video.task_label(task) == (
        ", payload 0.42x robot mass, friction 1.85x, weakest motor 0.48x, failed motor 0"
    )
    pend = task_split("metarobot/InvertedPendulumRandParams-v0")[1][1]
    assert video.task_label(pend) in (", motor normal", ", motor reversed")


def test_train_probe_trains_a_method_as_a_table_does_with_one_setting_changed(tmp_path):
    probe = _script("train_probe")
    table = tmp_path / "t.toml"
    table.write_text(
        'name = "probe"\nfamily = "metarobot/InvertedPendulumRandParams-v0"\n'
        'methods = ["domain_randomization", "oracle"]\n'
        '[baselines]\ndr_timesteps = 800\ntrainer = "episodic"\n[rma]\nteacher_envs = 2\n'
    )
    policy, steps = probe.train_as_table(
        "domain_randomization", table, ['rma.lr_schedule="linear"', "baselines.dr_timesteps=400"], 0
    )
    assert policy.meta["trainer"] == "episodic" and 0 < policy.meta["env_steps"] <= 400
    assert steps == 400
    with pytest.raises(ValueError, match=r"section\.key=value"):
        probe.train_as_table("domain_randomization", table, ["dr_timesteps=400"], 0)
    with pytest.raises(ValueError, match=r"rma\.lr_schedule must be one of"):
        probe.train_as_table("domain_randomization", table, ['rma.lr_schedule="cos"'], 0)
    task = task_split("metarobot/InvertedPendulumRandParams-v0")[0][3]
    oracle = probe.train_oracle_as_table(
        table, ["baselines.oracle_timesteps=400", "rma.init_log_std=-1.0"], 0, task
    )
    assert oracle.meta["algorithm"] == "oracle" and 0 < oracle.meta["env_steps"] <= 400
    assert oracle.meta["task"] == task.to_json()


def test_bench_train_splits_out_the_network_work_of_the_update(tmp_path):
    bench = _script("bench_train")
    out = tmp_path / "bench.md"
    args = ["--families", "InvertedPendulumRandParams", "--trainers", "dr", "--workers", "1"]
    bench.main([*args, "--steps", "1600", "--envs", "4", "--out", str(out)])
    split = json.loads(out.with_suffix(".json").read_text())
    row = split["steps=1600 envs=4 seed=0"]["metarobot/InvertedPendulumRandParams-v0"]
    sp = row["singles"]["dr"]["split"]
    # The network's forward, backward and Adam step are a part of the update, never all of it.
    assert 0 < sp["update_net"] < sp["update"] <= sp["total"]
    line = next(x for x in out.read_text().splitlines() if x.startswith("| episodic PPO"))
    ceiling = float(line.split("|")[11])
    assert 0 < ceiling <= 1


def test_bench_train_measures_a_named_minibatch_recipe_apart(tmp_path):
    bench = _script("bench_train")
    out = tmp_path / "bench.md"
    args = ["--families", "InvertedPendulumRandParams", "--trainers", "dr", "--workers", "1"]
    common = [*args, "--steps", "1600", "--envs", "4", "--no-profile", "--out", str(out)]
    bench.main([*common, "--minibatches", "2"])
    runs = json.loads(out.with_suffix(".json").read_text())
    assert list(runs) == ["steps=1600 envs=4 seed=0 minibatches=2 recurrent_minibatches=None"]
    assert "episodic PPO 2, recurrent 4 (not the default)" in out.read_text()
    with pytest.raises(ValueError, match="--minibatches must be >= 1"):
        bench.main([*common, "--minibatches", "0"])


def _table(folder: Path, oracle: float, method_return: float) -> Path:
    # random actions return 0 and 10 on tasks 0 and 1; the oracle `oracle` on both
    folder.mkdir()
    rows = []
    for task, rand in ((0, 0.0), (1, 10.0)):
        for seed in (0, 1):
            rows.append(("oracle", task, seed, oracle, 1.0))
            score = (method_return - rand) / (oracle - rand)
            rows.append(("rma", task, seed, method_return, score))
    with (folder / "results.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "family", "task", "seed", "k", "return", "score", "train_seed"])
        for m, t, s, r, sc in rows:
            w.writerow([m, "f", t, s, 0, r, sc, 0])
    return folder


def test_rescore_divides_by_the_strongest_oracle_of_each_task(tmp_path, monkeypatch):
    rescore = _script("rescore")
    table = _table(tmp_path / "new", oracle=100.0, method_return=80.0)
    ref = _table(tmp_path / "old", oracle=160.0, method_return=0.0)
    out = tmp_path / "r.md"
    argv = ["rescore.py", str(table), "--references", str(ref), "--out", str(out), "--reps", "5"]
    monkeypatch.setattr(sys, "argv", argv)
    rescore.main()
    text = out.read_text()
    own = (0.8 + 70 / 90) / 2
    strongest = (80 / 160 + 70 / 150) / 2
    assert f"| rma | 0 | {own:.2f} [{own:.2f}, {own:.2f}] | {strongest:.2f} [" in text
    assert "| 0 | 0.0 | 100.0 | 160.0 | 160.0 |" in text
    with pytest.raises(ValueError, match=r"results\.csv"):
        rescore.read_rows(tmp_path)
