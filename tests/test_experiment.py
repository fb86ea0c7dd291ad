"""run_experiment end to end on a tiny config: outputs, resume, determinism."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import metarobot
from metarobot import registry
from metarobot.config import load_config
from metarobot.evaluation import RECORD_FIELDS
from metarobot.experiment import run_experiment

METHODS = registry.method_names()
META_METHODS = [m for m in METHODS if registry.get(m).learner is not None]
CONTEXT_METHODS = ("rma", "recurrent")

PENDULUM = "metarobot/InvertedPendulumRandParams-v0"
KS = (0, 1)
EVAL_SEEDS = (0, 1)
TRAIN_SEEDS = (0, 1)
N_TASKS = 2
ITERATIONS = 2

TINY = f"""
name = "tiny"
family = "{PENDULUM}"
out = "runs/should-not-be-used"
methods = {list(METHODS)!r}
train_seeds = {list(TRAIN_SEEDS)!r}
nthread = 1
torch_threads = 1

[meta]
iterations = {ITERATIONS}
meta_batch = 2
episodes = 1
post_episodes = 1
hidden = [8, 8]
checkpoint_every = 1

[baselines]
n_experts = 2
expert_timesteps = 512
dr_timesteps = 512
oracle_timesteps = 512
n_envs = 2

[rma]
teacher_steps = 512
student_steps = 64
history = 4
z_dim = 2
student_envs = 2

[recurrent]
steps = 64
n_envs = 2
hidden = 8
minibatches = 1

[eval]
ks = {list(KS)!r}
seeds = {list(EVAL_SEEDS)!r}
episodes = 1
n_test_tasks = {N_TASKS}
adapt_steps = 1
adapt_lr = 0.01
bootstrap_reps = 50
""".replace("'", '"')


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("experiment")


@pytest.fixture(scope="module")
def config_path(root):
    p = root / "tiny.toml"
    p.write_text(TINY)
    load_config(p)  # the fixture itself is a valid config
    return p


def snapshot(out: Path) -> dict:
    return {
        "results": (out / "results.csv").read_bytes(),
        "mtimes": {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()},
        "records": {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()},
    }


@pytest.fixture(scope="module")
def first(root, config_path):
    """The tiny experiment, run once (and a snapshot taken before anything else touches it)."""
    out = root / "a"
    threads = torch.get_num_threads()
    result = run_experiment(config_path, out, progress=False)
    assert torch.get_num_threads() == threads  # restored
    return {"out": out, "result": result, "snap": snapshot(out)}


@pytest.fixture(scope="module")
def resumed(first, config_path):
    """The same command again on the same folder."""
    result = run_experiment(config_path, first["out"], progress=False)
    return {"result": result, "snap": snapshot(first["out"])}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def expected_units() -> set[str]:
    units = set()
    for s in TRAIN_SEEDS:
        units |= {f"train {m} (seed {s})" for m in (*META_METHODS, *CONTEXT_METHODS)}
        units |= {f"train expert {i} (seed {s})" for i in range(2)}
        units.add(f"train domain_randomization (seed {s})")
        units |= {f"evaluate {m} (seed {s})" for m in METHODS if m != "oracle" or s == 0}
    units |= {f"train oracle task {t} (seed 0)" for t in range(N_TASKS)}
    units.add("evaluate random actions")
    return units


# ---------------------------------------------------------------- outputs


def test_first_run_ran_every_unit(first):
    res = first["result"]
    assert set(res["ran"]) == expected_units()
    assert len(res["ran"]) == len(expected_units())
    assert res["skipped"] == []
    assert Path(res["out"]) == first["out"]
    assert res["seconds"] > 0


def test_output_files_exist(first):
    out = first["out"]
    for name in (
        "results.csv",
        "summary.md",
        "adaptation_curve.png",
        "learning_curve.png",
        "within_episode.png",
        "timings.csv",
        "config.toml",
    ):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    assert not Path("runs").exists()  # --out wins over the config's `out`


def test_config_copy(first, config_path):
    assert (first["out"] / "config.toml").read_bytes() == config_path.read_bytes()


def test_results_csv_header(first):
    with open(first["out"] / "results.csv", newline="") as fh:
        header = next(csv.reader(fh))
    for col in ("method", "family", "task", "seed", "k", "return", "score"):
        assert col in header
    assert header[: len(RECORD_FIELDS)] == list(RECORD_FIELDS)


def test_results_rows_cover_every_cell(first):
    rows = read_csv(first["out"] / "results.csv")
    got = Counter(
        (r["method"], int(r["task"]), int(r["seed"]), int(r["k"]), int(r["train_seed"]))
        for r in rows
    )
    want = Counter(
        (m, t, s, k, ts)
        for ts in TRAIN_SEEDS
        for m in METHODS
        if m != "oracle" or ts == TRAIN_SEEDS[0]  # the oracle only for the first train seed
        for t in range(N_TASKS)
        for s in EVAL_SEEDS
        for k in KS
    )
    assert got == want  # every cell exactly once
    assert {r["family"] for r in rows} == {PENDULUM}
    assert all(np.isfinite(float(r["return"])) for r in rows)
    assert len(first["result"]["records"]) == len(rows)


def test_scores_are_normalized_by_oracle(first):
    rows = read_csv(first["out"] / "results.csv")
    for t in range(N_TASKS):
        oracle0 = [
            float(r["score"])
            for r in rows
            if r["method"] == "oracle" and r["k"] == "0" and int(r["task"]) == t
        ]
        assert np.mean(oracle0) == pytest.approx(1.0)
    rand = {
        int(r["task"]): float(r["return"]) for r in read_csv(first["out"] / "records/random.csv")
    }
    assert sorted(rand) == list(range(N_TASKS))
    oracle_ret = {
        t: np.mean(
            [
                float(r["return"])
                for r in rows
                if r["method"] == "oracle" and r["k"] == "0" and int(r["task"]) == t
            ]
        )
        for t in range(N_TASKS)
    }
    for r in rows:
        t = int(r["task"])
        expected = (float(r["return"]) - rand[t]) / (oracle_ret[t] - rand[t])
        assert float(r["score"]) == pytest.approx(expected)


def test_summary_mentions_every_method(first):
    text = (first["out"] / "summary.md").read_text()
    assert text.startswith("# tiny")
    for m in METHODS:
        assert f"| {m} |" in text, m
    for k in KS:
        assert f"K={k}" in text
    assert PENDULUM in text
    agg = first["result"]["aggregate"]
    assert {(a["method"], a["k"]) for a in agg} == {(m, k) for m in METHODS for k in KS}


def test_summary_starts_with_provenance_and_states_budgets(first):
    text = (first["out"] / "summary.md").read_text()
    head = text.split("\n\n")[1]
    assert head.startswith("- command: `")
    assert f"metarobot {metarobot.__version__}" in head
    assert "- machine: " in head
    # Float results depend on these: the record names them and torch's CPU kernel level.
    assert "- numerics: torch " in head and "CPU kernels " in head and "MuJoCo " in head
    assert "training seed(s) × " in head and "held-out tasks" in head
    assert "## training budget (environment steps)" in text
    for section in ("## IQM", "## mean", "## median", "## optimality gap", "## per task"):
        assert section in text


@pytest.mark.parametrize(
    "name", ["adaptation_curve.png", "learning_curve.png", "within_episode.png"]
)
def test_plots_are_valid_pngs(first, name):
    path = first["out"] / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.width > 300 and img.height > 200


def test_logs_and_tensorboard(first):
    out = first["out"]
    for s in TRAIN_SEEDS:
        for m in META_METHODS:
            rows = read_csv(out / "logs" / f"{m}-s{s}.csv")
            assert len(rows) == ITERATIONS
            assert [float(r["iteration"]) for r in rows] == [1.0, 2.0]
            assert "pre_return" in rows[0]
            events = list((out / "tb" / f"{m}-s{s}").glob("events.out.tfevents.*"))
            assert events and events[0].stat().st_size > 0


def test_checkpoints(first):
    ck = first["out"] / "checkpoints"
    names = {p.name for p in ck.iterdir()}
    want = set()
    for s in TRAIN_SEEDS:
        want |= {f"{m}-s{s}.pt" for m in META_METHODS}
        want |= {f"expert-{i}-s{s}.pt" for i in range(2)}
        want.add(f"domain_randomization-s{s}.pt")
    want |= {f"oracle-t{t}-s0.pt" for t in range(N_TASKS)}
    assert want <= names
    assert not [n for n in names if "partial" in n]  # no unfinished checkpoints left over
    for name in sorted(want):
        pol = metarobot.load(str(ck / name))
        assert pol.meta["family"] == PENDULUM, name
        assert pol.net.hidden == (8, 8), name
    assert metarobot.load(str(ck / "oracle-t1-s0.pt")).meta["algorithm"] == "oracle"
    assert metarobot.load(str(ck / "expert-0-s1.pt")).meta["algorithm"] == "expert"
    dr = metarobot.load(str(ck / "domain_randomization-s0.pt"))
    assert dr.meta["algorithm"] == "domain_randomization"
    assert metarobot.load(str(ck / "maml-s0.pt")).meta["iterations"] == ITERATIONS


def test_training_seeds_give_different_policies(first):
    ck = first["out"] / "checkpoints"
    for name in ("maml", "domain_randomization", "expert-0"):
        a = metarobot.load(str(ck / f"{name}-s0.pt"))
        b = metarobot.load(str(ck / f"{name}-s1.pt"))
        assert any(not torch.equal(a.params[k], b.params[k]) for k in a.params), name


def test_timings_list_every_unit(first):
    with open(first["out"] / "timings.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["unit"] for r in rows} == expected_units()
    assert all(float(r["seconds"]) >= 0 for r in rows)


# ---------------------------------------------------------------- resume and determinism


def test_rerun_does_no_repeated_work(first, resumed):
    res = resumed["result"]
    assert res["ran"] == []
    assert set(res["skipped"]) == expected_units()
    assert resumed["snap"]["mtimes"] == first["snap"]["mtimes"]
    assert resumed["snap"]["records"] == first["snap"]["records"]
    assert resumed["snap"]["results"] == first["snap"]["results"]


def test_fresh_run_is_deterministic(first, root, config_path):
    out = root / "b"
    res = run_experiment(config_path, out, progress=False)
    assert set(res["ran"]) == expected_units()
    assert (out / "results.csv").read_bytes() == first["snap"]["results"]
    for name in ("maml-s1.pt", "expert-1-s0.pt", "domain_randomization-s0.pt"):
        a = metarobot.load(str(first["out"] / "checkpoints" / name))
        b = metarobot.load(str(out / "checkpoints" / name))
        for k in a.params:
            assert torch.equal(a.params[k], b.params[k]), (name, k)


def test_deleted_records_file_reruns_exactly_that_unit(first, root, config_path):
    out = root / "c"
    shutil.copytree(first["out"], out)
    (out / "records" / "maml-s1.csv").unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    res = run_experiment(config_path, out, progress=False)
    assert res["ran"] == ["evaluate maml (seed 1)"]
    assert (out / "results.csv").read_bytes() == first["snap"]["results"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()} == mtimes


def test_deleted_checkpoint_retrains_exactly_that_unit(first, root, config_path):
    out = root / "d"
    shutil.copytree(first["out"], out)
    (out / "checkpoints" / "oracle-t1-s0.pt").unlink()
    res = run_experiment(config_path, out, progress=False)
    assert res["ran"] == ["train oracle task 1 (seed 0)"]
    old = metarobot.load(str(first["out"] / "checkpoints" / "oracle-t1-s0.pt"))
    new = metarobot.load(str(out / "checkpoints" / "oracle-t1-s0.pt"))
    for k in old.params:
        assert torch.equal(old.params[k], new.params[k])


# Rule: resuming a folder with a changed config is refused (results of two configs never mix).
def test_resume_with_changed_config_does_not_mix_results(first, root):
    out = root / "e"
    shutil.copytree(first["out"], out)
    changed = root / "tiny3.toml"
    changed.write_text(TINY.replace("seeds = [0, 1]\nepisodes", "seeds = [0, 1, 2]\nepisodes"))
    assert load_config(changed).eval.seeds == [0, 1, 2]
    before = (out / "results.csv").read_bytes()
    with pytest.raises(ValueError, match=r"different config \(changed: \['eval'\]\)"):
        run_experiment(changed, out, progress=False)
    assert (out / "results.csv").read_bytes() == before


def test_run_from_config_object_without_copy(root, config_path):
    # A config object works too; with methods trimmed to the oracle it is quick.
    cfg = load_config(config_path)
    cfg.methods = ["oracle", "scratch"]
    cfg.train_seeds = [0]
    out = root / "f"
    res = run_experiment(cfg, out, progress=False)
    assert not (out / "config.toml").exists()
    assert set(res["ran"]) == {
        "train oracle task 0 (seed 0)",
        "train oracle task 1 (seed 0)",
        "evaluate random actions",
        "evaluate oracle (seed 0)",
        "evaluate scratch (seed 0)",
    }
    assert {r["method"] for r in res["records"]} == {"oracle", "scratch"}
    assert (out / "learning_curve.png").is_file()  # even with no meta-learner logs


def test_learning_curve_has_a_panel_per_kind_of_trainer(tmp_path):
    from metarobot.report import learning_curve_png

    meta = {"maml s0": [{"iteration": i, "pre_return": i, "post_return": 2 * i} for i in (1, 2)]}
    ppo = {
        f"{m} s{s}": {"env_steps": [100.0, 200.0, 300.0], "return": [1.0, 2.0 + s, 3.0]}
        for m in ("rma", "recurrent")
        for s in (0, 1)
    }
    sizes = {}
    for name, logs, training in (("both", meta, ppo), ("meta", meta, None), ("ppo", {}, ppo)):
        learning_curve_png(logs, tmp_path / f"{name}.png", "t", training=training)
        with Image.open(tmp_path / f"{name}.png") as img:
            sizes[name] = img.size
    assert sizes["both"][0] > 1.8 * sizes["meta"][0]  # two panels side by side
    assert sizes["ppo"] == sizes["meta"]
