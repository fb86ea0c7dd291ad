"""HalfCheetah families compile Gymnasium's model without MuJoCo 4's settotalmass warning."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.envs.mujoco import half_cheetah_v5

import metarobot.envs as me
from metarobot.envs.families._base import compile_with_masses_written_out

XML = Path(half_cheetah_v5.__file__).parent / "assets" / "half_cheetah.xml"
CHEETAHS = [f for f in me.FAMILY_IDS if "HalfCheetah" in f]


def fields(obj):
    out = {}
    for name in dir(obj):
        if name.startswith("_"):
            continue
        value = getattr(obj, name, None)
        if isinstance(value, np.ndarray):
            out[name] = value
    return out


def test_model_equals_the_settotalmass_compile_bit_for_bit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mujoco.MjModel.from_xml_path(str(XML))
    model = compile_with_masses_written_out(XML)
    for holder in ("", "opt", "stat"):
        a = fields(getattr(ref, holder) if holder else ref)
        b = fields(getattr(model, holder) if holder else model)
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{holder}.{name}")
    for name in ("meanmass", "meaninertia", "meansize", "extent"):
        assert getattr(model.stat, name) == getattr(ref.stat, name), name


@pytest.mark.parametrize("fid", CHEETAHS)
def test_family_compiles_without_warning_or_log_file(fid, tmp_path):
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            env = gym.make(fid)
            env.reset(seed=0)
            env.step(env.action_space.sample())
            venv = me.make_batched(fid, me.task_split(fid)[0][:2], nthread=1)
            venv.reset(seed=0)
            venv.close()
    finally:
        os.chdir(old)
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_nominal_family_is_bit_identical_to_gymnasium_half_cheetah_v5():
    fam = gym.make("metarobot/HalfCheetahRandParams-v0", max_episode_steps=1000)
    nominal = fam.get_wrapper_attr("nominal_task")()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = gym.make("HalfCheetah-v5")
    obs, _ = fam.reset(seed=3, options={"task": nominal})
    r_obs, _ = ref.reset(seed=3)
    np.testing.assert_array_equal(obs, r_obs)
    rng = np.random.default_rng(0)
    for k in range(1000):
        a = rng.uniform(-1, 1, 6).astype(np.float32)
        got, exp = fam.step(a), ref.step(a)
        np.testing.assert_array_equal(got[0], exp[0], err_msg=f"step {k}")
        assert got[1:4] == exp[1:4], f"step {k}"
    assert got[3] and exp[3]
