"""Experiment units run the same on every backend: in-process, worker processes, Ray.

Results are compared byte for byte, which holds on any CPU: every unit sets the same torch thread
count (``torch_threads``) in whichever process runs it and depends on nothing but its config and
seed, so the same machine computes the same bits (across machine types only statistics agree).
"""

import csv
import filecmp
from pathlib import Path

import pytest

from metarobot.config import parse_config
from metarobot.experiment import run_experiment

TINY = {
    "name": "tiny",
    "family": "metarobot/InvertedPendulumRandParams-v0",
    "methods": [
        "maml",
        "rma",
        "recurrent",
        "ensemble",
        "domain_randomization",
        "oracle",
        "scratch",
    ],
    "train_seeds": [0],
    "meta": {"iterations": 2, "meta_batch": 2, "episodes": 1, "post_episodes": 1, "hidden": [8, 8]},
    "baselines": {
        "n_experts": 2,
        "expert_timesteps": 256,
        "dr_timesteps": 256,
        "oracle_timesteps": 256,
        "n_envs": 2,
    },
    "rma": {"teacher_steps": 512, "student_steps": 64, "history": 4, "z_dim": 2, "student_envs": 2},
    "recurrent": {"steps": 64, "n_envs": 2, "hidden": 8, "minibatches": 1},
    "eval": {"ks": [0, 1], "seeds": [0, 1], "episodes": 1, "n_test_tasks": 2, "bootstrap_reps": 50},
}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    run_experiment(parse_config(TINY), out, progress=False)
    return out


def test_bad_backend_arguments(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        run_experiment(parse_config(TINY), tmp_path, backend="dask", progress=False)
    with pytest.raises(ValueError, match="workers"):
        run_experiment(parse_config(TINY), tmp_path, workers=0, progress=False)


@pytest.mark.slow
def test_worker_processes_match_in_process(local_run, tmp_path):
    result = run_experiment(parse_config(TINY), tmp_path, workers=2, progress=False)
    assert len(result["ran"]) > 0
    assert filecmp.cmp(local_run / "results.csv", Path(tmp_path) / "results.csv", shallow=False)


@pytest.mark.slow
def test_ray_local_cluster_matches_local_backend(local_run, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_experiment(parse_config(TINY), tmp_path, backend="ray", progress=False)
    finally:
        ray.shutdown()
    with open(local_run / "timings.csv", newline="") as fh:
        local_units = {row["unit"] for row in csv.DictReader(fh)}
    assert set(result["ran"]) == local_units, "every unit ran as a Ray task"
    assert filecmp.cmp(local_run / "results.csv", Path(tmp_path) / "results.csv", shallow=False)
