"""Shared test setup."""

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _mujoco_log_in_tmp(tmp_path_factory):
    """Run each module in a temporary folder with one torch thread.

    MuJoCo appends its warnings to MUJOCO_LOG.TXT in the working directory, which must not land in
    the repository; tiny networks are many times slower with two torch threads on 2 cores.
    """
    old, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(tmp_path_factory.mktemp("workdir"))
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    os.chdir(old)
