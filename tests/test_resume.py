"""Meta-training survives being killed: resume from atomic state files, reject damaged ones."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import metarobot

FAMILY = "metarobot/InvertedPendulumRandParams-v0"
KW = {
    "meta_batch": 3,
    "episodes": 1,
    "post_episodes": 1,
    "hidden": (8, 8),
    "seed": 3,
    "nthread": 1,
    "device": "cpu",
}


def _strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("cls", [metarobot.MAML, metarobot.Reptile, metarobot.MetaSGD])
def test_resume_equals_uninterrupted(cls, tmp_path):
    ref = cls(FAMILY, **KW)
    p_ref = ref.train(5, progress=False)
    state = tmp_path / "state.pt"
    first = cls(FAMILY, **KW)
    first.train(2, progress=False, state_path=state, checkpoint_every=1)
    second = cls(FAMILY, **KW)
    p = second.train(5, progress=False, state_path=state, checkpoint_every=1)
    for k in p_ref.params:
        torch.testing.assert_close(p.params[k], p_ref.params[k], rtol=0, atol=0)
        torch.testing.assert_close(p.inner_lr[k], p_ref.inner_lr[k], rtol=0, atol=0)
    assert _strip(second.history) == _strip(ref.history)
    assert (tmp_path / "state.pt.prev").exists(), "the previous good state is kept"


def test_state_of_another_run_is_refused(tmp_path):
    state = tmp_path / "state.pt"
    metarobot.MAML(FAMILY, **KW).train(1, progress=False, state_path=state, checkpoint_every=1)
    other = metarobot.MAML(FAMILY, **{**KW, "seed": 4})
    with pytest.raises(ValueError, match="config"):
        other.train(2, progress=False, state_path=state)


def test_corrupt_state_falls_back_to_previous(tmp_path):
    state = tmp_path / "state.pt"
    metarobot.MAML(FAMILY, **KW).train(2, progress=False, state_path=state, checkpoint_every=1)
    good = state.read_bytes()
    state.write_bytes(good[: len(good) // 2])  # truncated
    learner = metarobot.MAML(FAMILY, **KW)
    with pytest.warns(UserWarning, match="state.pt"):
        assert learner.resume(state)
    assert learner.iteration == 1, "the .prev state (iteration 1) was used"
    (tmp_path / "state.pt.prev").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"state\.pt.*state\.pt\.prev"), pytest.warns(UserWarning):
        metarobot.MAML(FAMILY, **KW).resume(state)


def _train_cmd(out: Path, state: Path, iterations: int = 40) -> list[str]:
    return [
        sys.executable,
        "-m",
        "metarobot.cli",
        "train",
        "--algo",
        "maml",
        "--env",
        FAMILY,
        "--iterations",
        str(iterations),
        "--meta-batch",
        "3",
        "--episodes",
        "1",
        "--device",
        "cpu",
        "--seed",
        "5",
        "--out",
        str(out),
        "--state",
        str(state),
        "--checkpoint-every",
        "1",
        "--quiet",
    ]


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_is_identical(tmp_path):
    ref_out = tmp_path / "ref.pt"
    subprocess.run(
        _train_cmd(ref_out, tmp_path / "ref_state.pt"), check=True, timeout=300, capture_output=True
    )
    out, state = tmp_path / "run.pt", tmp_path / "run_state.pt"
    proc = subprocess.Popen(
        _train_cmd(out, state), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while not (state.with_name(state.name + ".prev")).exists():  # ≥ 2 iterations done
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = subprocess.run(_train_cmd(out, state), timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a, b = metarobot.load(ref_out), metarobot.load(out)
    assert a.meta["iterations"] == b.meta["iterations"] == 40
    for k in a.params:
        torch.testing.assert_close(a.params[k], b.params[k], rtol=0, atol=0)


TINY_TOML = """
name = "tiny"
family = "metarobot/InvertedPendulumRandParams-v0"
methods = ["maml", "reptile", "ensemble", "domain_randomization", "oracle", "scratch"]
[meta]
iterations = 6
meta_batch = 2
episodes = 1
post_episodes = 1
hidden = [8, 8]
checkpoint_every = 1
[baselines]
n_experts = 2
expert_timesteps = 256
dr_timesteps = 256
oracle_timesteps = 256
n_envs = 2
[eval]
ks = [0, 1]
seeds = [0, 1]
episodes = 1
n_test_tasks = 2
bootstrap_reps = 50
"""


@pytest.mark.slow
def test_sigkill_mid_experiment_then_rerun_is_identical(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)

    def cmd(out):
        return [
            sys.executable,
            "-m",
            "metarobot.cli",
            "run",
            str(cfg),
            "--out",
            str(out),
            "--quiet",
        ]

    subprocess.run(cmd(tmp_path / "ref"), check=True, timeout=600, capture_output=True)
    out = tmp_path / "run"
    proc = subprocess.Popen(cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "checkpoints" / "reptile-s0.state.pt"  # mid-way through the 2nd meta unit
    deadline = time.time() + 300
    while not state.exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "results.csv").exists()
    done = subprocess.run(cmd(out), timeout=600, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "reused" in done.stdout
    assert (out / "results.csv").read_bytes() == (tmp_path / "ref" / "results.csv").read_bytes()
