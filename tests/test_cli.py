"""The ``metarobot`` command line (run through ``python -m metarobot.cli``)."""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import metarobot
import metarobot.envs as me
from metarobot.cli import build_parser, main
from metarobot.evaluation import RECORD_FIELDS, evaluate_method

PENDULUM = "metarobot/InvertedPendulumRandParams-v0"
SUBCOMMANDS = ("run", "train", "evaluate", "adapt", "bench")

TINY = f"""
name = "cli-tiny"
family = "{PENDULUM}"
methods = ["reptile", "oracle"]
nthread = 1

[meta]
iterations = 2
meta_batch = 2
episodes = 1
post_episodes = 1
hidden = [8, 8]

[baselines]
oracle_timesteps = 512
n_envs = 2

[eval]
ks = [0, 1]
seeds = [0]
episodes = 1
n_test_tasks = 2
bootstrap_reps = 20
"""


@pytest.fixture(autouse=True, scope="module")
def workdir(tmp_path_factory):
    # MuJoCo appends its warnings to MUJOCO_LOG.TXT in the working directory.
    old, threads = os.getcwd(), torch.get_num_threads()
    d = tmp_path_factory.mktemp("cli")
    os.chdir(d)
    torch.set_num_threads(1)
    yield d
    torch.set_num_threads(threads)
    os.chdir(old)


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "metarobot.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def experiment(workdir):
    """A tiny experiment run through ``metarobot run``; its checkpoints feed the other tests."""
    cfg = workdir / "tiny.toml"
    cfg.write_text(TINY)
    proc = cli("run", str(cfg), "--out", str(workdir / "exp"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return {"out": workdir / "exp", "stdout": proc.stdout, "config": cfg}


@pytest.fixture(scope="module")
def checkpoint(experiment):
    return experiment["out"] / "checkpoints" / "reptile-s0.pt"


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """``main(args)`` in-process (cheaper than a subprocess): exit code, stdout, stderr."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


# ---------------------------------------------------------------- help


def test_module_entry_point_help():
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    for sub in SUBCOMMANDS:
        assert sub in proc.stdout


def test_console_script_help():
    script = Path(sys.executable).parent / "metarobot"
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "run" in proc.stdout and "adapt" in proc.stdout


def test_parser_has_every_subcommand():
    assert set(subparsers()) == set(SUBCOMMANDS)


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_subcommand_help_mentions_every_option(sub, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([sub, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    options = [s for a in subparsers()[sub]._actions for s in a.option_strings]
    assert len(options) > 1
    for opt in options:
        assert opt in text, f"{sub} --help does not mention {opt}"


def test_run_help_names_out_and_backend(capsys):
    code, out, _ = run_main(capsys, "run", "--help")
    assert code == 0
    for opt in ("--out", "--backend", "--quiet", "config"):
        assert opt in out


def test_no_subcommand_is_a_usage_error(capsys):
    code, _, err = run_main(capsys)
    assert code == 2
    assert "usage" in err


# ---------------------------------------------------------------- run


def test_run_writes_results(experiment):
    out = experiment["out"]
    assert (out / "results.csv").is_file()
    assert (out / "summary.md").is_file()
    assert "| reptile |" in experiment["stdout"]  # the table is printed
    assert "ran " in experiment["stdout"]
    rows = list(csv.DictReader(open(out / "results.csv", newline="")))  # noqa: SIM115
    assert {r["method"] for r in rows} == {"reptile", "oracle"}
    assert len(rows) == 2 * 2 * 1 * 2  # methods × ks × seeds × tasks


def test_run_again_reuses_everything(experiment, capsys):
    before = (experiment["out"] / "results.csv").read_bytes()
    code, out, err = run_main(
        capsys, "run", str(experiment["config"]), "--out", str(experiment["out"]), "--quiet"
    )
    assert code == 0, err
    assert "ran 0 unit(s)" in out
    assert (experiment["out"] / "results.csv").read_bytes() == before


def test_run_bad_config_path_exits_2():
    proc = cli("run", "no/such/config.toml")
    assert proc.returncode == 2
    assert "no/such/config.toml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_invalid_config_exits_2(workdir, capsys):
    bad = workdir / "bad.toml"
    bad.write_text(TINY.replace("iterations = 2", "iteratons = 2"))
    code, _, err = run_main(capsys, "run", str(bad))
    assert code == 2
    assert "iteratons" in err


def test_run_rejects_unknown_backend(workdir, capsys):
    code, _, err = run_main(capsys, "run", str(workdir / "tiny.toml"), "--backend", "nope")
    assert code == 2
    assert "--backend" in err


# ---------------------------------------------------------------- adapt


def test_adapt_runs_rounds_of_fine_tuning(checkpoint, workdir, capsys):
    out = workdir / "rounds.pt"
    code, stdout, err = run_main(
        capsys,
        "adapt",
        "--checkpoint",
        str(checkpoint),
        "--env",
        PENDULUM,
        "--task-index",
        "1",
        "--episodes",
        "2",
        "--rounds",
        "3",
        "--optimizer",
        "adam",
        "--device",
        "cpu",
        "--no-safeguard",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert "3 rounds × 2 episode(s)" in stdout
    adapted = metarobot.load(str(out))
    assert adapted.meta["adapted"]["rounds"] == 3
    base = metarobot.load(str(checkpoint))
    task = me.task_split(PENDULUM)[1][1]
    again = metarobot.adapt(
        base,
        PENDULUM,
        task=task,
        episodes=2,
        seed=0,
        device="cpu",
        safe=False,
        rounds=3,
        optimizer="adam",
    )
    for k in base.params:
        torch.testing.assert_close(adapted.params[k], again.params[k])


def test_adapt_with_sac_rounds(checkpoint, workdir, capsys):
    # One SAC round only fits the critics (its warm-up), so the policy comes back unchanged.
    out = workdir / "sac.pt"
    code, stdout, err = run_main(
        capsys,
        "adapt",
        "--checkpoint",
        str(checkpoint),
        "--env",
        PENDULUM,
        "--task-index",
        "0",
        "--episodes",
        "1",
        "--algorithm",
        "sac",
        "--device",
        "cpu",
        "--no-safeguard",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert "rounds of SAC" in stdout
    adapted, base = metarobot.load(str(out)), metarobot.load(str(checkpoint))
    for k in base.params:
        torch.testing.assert_close(adapted.params[k], base.params[k], rtol=0, atol=0)


def test_adapt_writes_loadable_policy(checkpoint, workdir):
    out = workdir / "x.pt"
    proc = cli(
        "adapt",
        "--checkpoint",
        str(checkpoint),
        "--env",
        PENDULUM,
        "--task-index",
        "0",
        "--episodes",
        "1",
        "--device",
        "cpu",
        "--no-safeguard",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout
    adapted = metarobot.load(str(out))
    base = metarobot.load(str(checkpoint))
    task = me.task_split(PENDULUM)[1][0]
    assert me.Task.from_json(adapted.meta["adapted"]["task"]) == task
    assert adapted.meta["adapted"]["episodes"] == 1
    assert adapted.params.keys() == base.params.keys()
    assert any(not torch.equal(adapted.params[k], base.params[k]) for k in base.params)
    # Same as adapting in-process with the same arguments.
    again = metarobot.adapt(base, PENDULUM, task=task, episodes=1, seed=0, device="cpu", safe=False)
    for k in base.params:
        torch.testing.assert_close(adapted.params[k], again.params[k])


def test_adapt_with_task_json(checkpoint, workdir, capsys):
    task = me.task_split(PENDULUM)[0][3]
    out = workdir / "y.pt"
    code, _, err = run_main(
        capsys,
        "adapt",
        "--checkpoint",
        str(checkpoint),
        "--env",
        PENDULUM,
        "--task",
        task.to_json(),
        "--episodes",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert me.Task.from_json(metarobot.load(str(out)).meta["adapted"]["task"]) == task


def test_adapt_task_and_task_index_conflict(checkpoint, workdir):
    task = me.task_split(PENDULUM)[1][0]
    proc = cli(
        "adapt",
        "--checkpoint",
        str(checkpoint),
        "--env",
        PENDULUM,
        "--task",
        task.to_json(),
        "--task-index",
        "0",
        "--out",
        str(workdir / "z.pt"),
    )
    assert proc.returncode == 2
    assert "--task" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (workdir / "z.pt").exists()


def test_adapt_task_index_out_of_range(checkpoint, workdir):
    proc = cli(
        "adapt",
        "--checkpoint",
        str(checkpoint),
        "--env",
        PENDULUM,
        "--task-index",
        "99",
        "--out",
        str(workdir / "z.pt"),
    )
    assert proc.returncode == 2
    assert "--task-index" in proc.stderr
    assert "[0, 9]" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (workdir / "z.pt").exists()


def test_adapt_missing_checkpoint(workdir, capsys):
    code, _, err = run_main(
        capsys,
        "adapt",
        "--checkpoint",
        "nope.pt",
        "--env",
        PENDULUM,
        "--task-index",
        "0",
        "--out",
        str(workdir / "z.pt"),
    )
    assert code == 2
    assert "nope.pt" in err


# ---------------------------------------------------------------- evaluate


def test_evaluate_writes_records(checkpoint, workdir):
    out = workdir / "r.csv"
    proc = cli(
        "evaluate",
        "--checkpoint",
        str(checkpoint),
        "--ks",
        "0",
        "1",
        "--seeds",
        "0",
        "--tasks",
        "2",
        "--episodes",
        "1",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "K=0" in proc.stdout and "K=1" in proc.stdout
    rows = list(csv.DictReader(open(out, newline="")))  # noqa: SIM115
    assert list(rows[0]) == [f for f in RECORD_FIELDS if f != "score"]
    assert len(rows) == 2 * 1 * 2
    assert {(int(r["task"]), int(r["k"])) for r in rows} == {(t, k) for t in (0, 1) for k in (0, 1)}
    assert {r["method"] for r in rows} == {"reptile"}
    assert {r["family"] for r in rows} == {PENDULUM}
    # The same numbers as the library's protocol.
    pol = metarobot.load(str(checkpoint))
    recs = evaluate_method(
        "reptile",
        pol,
        PENDULUM,
        me.task_split(PENDULUM)[1][:2],
        ks=(0, 1),
        seeds=(0,),
        episodes=1,
    )
    assert [float(r["return"]) for r in rows] == [r["return"] for r in recs]


# Rule: --tasks beyond the test split is an error naming --tasks and the allowed range.
def test_evaluate_too_many_tasks_is_an_error(checkpoint, capsys):
    code, _, err = run_main(
        capsys,
        "evaluate",
        "--checkpoint",
        str(checkpoint),
        "--ks",
        "0",
        "--seeds",
        "0",
        "--tasks",
        "99",
        "--episodes",
        "1",
    )
    assert code == 2
    assert "--tasks" in err


# ---------------------------------------------------------------- train


def test_train_reptile(workdir):
    out = workdir / "m.pt"
    log = workdir / "m.csv"
    proc = cli(
        "train",
        "--algo",
        "reptile",
        "--env",
        PENDULUM,
        "--iterations",
        "1",
        "--meta-batch",
        "2",
        "--episodes",
        "1",
        "--device",
        "cpu",
        "--log",
        str(log),
        "--out",
        str(out),
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert "saved" in proc.stdout
    pol = metarobot.load(str(out))
    assert pol.meta["family"] == PENDULUM
    assert pol.meta["iterations"] == 1
    assert "reptile" in str(pol.meta.get("algorithm", "")).lower()
    assert len(list(csv.DictReader(open(log, newline="")))) == 1  # noqa: SIM115


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--algo", "nope"], "--algo"),
        (["--algo", "reptile", "--iterations", "0"], "--iterations"),
    ],
)
def test_train_bad_arguments_exit_2(args, named, workdir, capsys):
    code, _, err = run_main(
        capsys, "train", "--env", PENDULUM, "--out", str(workdir / "bad.pt"), *args
    )
    assert code == 2
    assert named in err
    assert not (workdir / "bad.pt").exists()


def test_train_unknown_env_exits_2(workdir, capsys):
    code, _, err = run_main(
        capsys,
        "train",
        "--algo",
        "maml",
        "--env",
        "metarobot/Nope-v0",
        "--out",
        str(workdir / "n.pt"),
    )
    assert code == 2
    assert "Nope" in err


def test_train_adapt_evaluate_a_context_policy(workdir, capsys):
    out = workdir / "rec.pt"
    code, stdout, err = run_main(
        capsys,
        "train",
        "--algo",
        "recurrent",
        "--env",
        PENDULUM,
        "--steps",
        "400",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert "env steps" in stdout
    pol = metarobot.load(str(out))
    assert pol.kind == "recurrent"
    adapted = workdir / "rec-adapted.pt"
    code, stdout, err = run_main(
        capsys,
        "adapt",
        "--checkpoint",
        str(out),
        "--env",
        PENDULUM,
        "--task-index",
        "0",
        "--episodes",
        "1",
        "--out",
        str(adapted),
    )
    assert code == 0, err
    assert "safeguard" in stdout
    assert metarobot.load(str(adapted)).meta["adapted"]["update"] == "carried GRU state"
    code, stdout, err = run_main(
        capsys,
        "evaluate",
        "--checkpoint",
        str(out),
        "--ks",
        "0",
        "1",
        "--seeds",
        "0",
        "--tasks",
        "2",
        "--episodes",
        "1",
    )
    assert code == 0, err
    assert "K=1: mean return" in stdout
