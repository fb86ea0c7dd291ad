"""Typed TOML experiment configs: every key checked, errors name the key."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import re
import sys
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metarobot import registry
from metarobot.config import (
    BaselineConfig,
    EvalConfig,
    ExperimentConfig,
    MetaSection,
    load_config,
    parse_config,
)
from metarobot.registry import method_names

METHODS = method_names()

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "experiments" / "configs").glob("*.toml"))
QUICKSTART = ROOT / "experiments" / "configs" / "quickstart.toml"
PENDULUM = "metarobot/InvertedPendulumRandParams-v0"

VALID_TOML = f"""
name = "tiny"
family = "{PENDULUM}"
methods = ["reptile", "oracle"]

[meta]
iterations = 2
meta_batch = 2
hidden = [8, 8]

[baselines]
n_experts = 2

[eval]
ks = [0, 1]
seeds = [0, 1]
n_test_tasks = 2
"""


def valid() -> dict:
    return tomllib.loads(VALID_TOML)


def write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------- shipped configs


def test_there_are_shipped_configs():
    assert QUICKSTART in CONFIGS
    assert len(CONFIGS) >= 2


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.name
    assert "oracle" in cfg.methods
    assert 0 in cfg.eval.ks
    raw = tomllib.loads(path.read_text())
    # Values written in the file are the values loaded (no silent default substitution).
    assert cfg.family == raw["family"]
    for section in ("meta", "baselines", "eval"):
        for key, value in raw.get(section, {}).items():
            assert getattr(getattr(cfg, section), key) == value, f"{section}.{key}"


def test_quickstart_holds_every_trained_method_to_one_budget():
    cfg = load_config(QUICKSTART)
    assert cfg.family == PENDULUM
    assert {"rma", "ensemble", "param_average", "domain_randomization", "oracle"} <= set(
        cfg.methods
    )
    assert cfg.budget_steps == 250_000
    assert len(cfg.train_seeds) >= 3  # a headline never rests on one training seed
    planned = registry.check_budget(cfg)
    trained = [m for m in cfg.methods if m not in ("oracle", "scratch")]
    assert all(0.95 * cfg.budget_steps <= planned[m] <= cfg.budget_steps for m in trained)


def test_defaults_fill_missing_sections():
    cfg = parse_config({"name": "x", "family": PENDULUM, "eval": {"n_test_tasks": 2}})
    assert cfg.meta == MetaSection()
    assert cfg.baselines == BaselineConfig()
    assert cfg.eval == dataclasses.replace(EvalConfig(), n_test_tasks=2)
    assert cfg.methods == list(METHODS)


def test_int_accepted_for_float_field():
    data = valid()
    data["meta"]["inner_lr"] = 1
    cfg = parse_config(data)
    assert cfg.meta.inner_lr == 1.0
    assert isinstance(cfg.meta.inner_lr, float)


# ---------------------------------------------------------------- errors name the key


def test_missing_required_key():
    data = valid()
    del data["family"]
    with pytest.raises(ValueError, match="family"):
        parse_config(data)


def test_unknown_top_level_key():
    data = valid()
    data["iteratons"] = 3
    with pytest.raises(ValueError, match="iteratons"):
        parse_config(data)


def test_unknown_key_in_meta_names_key_and_section():
    data = valid()
    data["meta"]["iteratons"] = 10
    with pytest.raises(ValueError) as err:
        parse_config(data)
    msg = str(err.value)
    assert "iteratons" in msg
    assert "meta" in msg


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("meta", "iterations", "ten", "meta.iterations"),
        ("meta", "iterations", True, "meta.iterations"),
        ("meta", "iterations", 2.5, "meta.iterations"),
        ("eval", "ks", 3, "eval.ks"),
        ("eval", "ks", [0, "1"], "eval.ks"),
        ("meta", "hidden", [0], "meta.hidden"),
        ("meta", "hidden", [], "meta.hidden"),
        ("meta", "inner_lr", "fast", "meta.inner_lr"),
        ("meta", "clip", 2, "meta.clip"),
        ("meta", "clip", 0.0, "meta.clip"),
        ("meta", "gamma", 1.5, "meta.gamma"),
        ("meta", "outer_lr", math.inf, "meta.outer_lr"),
        ("meta", "inner_lr", math.nan, "meta.inner_lr"),
        ("meta", "iterations", 0, "meta.iterations"),
        ("baselines", "n_envs", 0, "baselines.n_envs"),
        ("baselines", "expert_timesteps", -5, "baselines.expert_timesteps"),
        ("eval", "n_test_tasks", 99, "eval.n_test_tasks"),
        ("eval", "ks", [1, 2], "eval.ks"),
        ("eval", "ks", [0, -1], "eval.ks"),
        ("eval", "seeds", [], "eval.seeds"),
        ("eval", "episodes", 0, "eval.episodes"),
    ],
)
def test_bad_section_value_names_key(section, key, value, named):
    data = valid()
    data[section][key] = value
    with pytest.raises(ValueError) as err:
        parse_config(data)
    assert named in str(err.value)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("methods", ["nope", "oracle"], "methods"),
        ("methods", ["reptile"], "oracle"),
        ("methods", [], "methods"),
        ("methods", "oracle", "methods"),
        ("family", "metarobot/NoSuchFamily-v0", "family"),
        ("family", 3, "family"),
        ("name", ["x"], "name"),
        ("train_seeds", [-1], "train_seeds"),
        ("train_seeds", [], "train_seeds"),
        ("nthread", -1, "nthread"),
        ("torch_threads", 0, "torch_threads"),
        ("meta", 5, "meta"),
        ("eval", [1, 2], "eval"),
    ],
)
def test_bad_top_level_value_names_key(key, value, named):
    data = valid()
    data[key] = value
    with pytest.raises(ValueError) as err:
        parse_config(data)
    assert named in str(err.value)


def test_unknown_method_is_named():
    data = valid()
    data["methods"] = ["nope", "oracle"]
    with pytest.raises(ValueError, match="nope"):
        parse_config(data)


def test_unknown_family_is_named():
    data = valid()
    data["family"] = "metarobot/NoSuchFamily-v0"
    with pytest.raises(ValueError, match="NoSuchFamily"):
        parse_config(data)


def test_n_test_tasks_error_names_range():
    data = valid()
    data["eval"]["n_test_tasks"] = 99
    with pytest.raises(ValueError, match="<= 10"):
        parse_config(data)


# ---------------------------------------------------------------- files


def test_load_config_from_file(tmp_path):
    cfg = load_config(write(tmp_path, VALID_TOML))
    assert cfg.meta.iterations == 2
    assert cfg.eval.ks == [0, 1]
    assert cfg.methods == ["reptile", "oracle"]


def test_load_config_accepts_str_path(tmp_path):
    cfg = load_config(str(write(tmp_path, VALID_TOML)))
    assert cfg.name == "tiny"


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape("nope.toml")):
        load_config(tmp_path / "nope.toml")


def test_broken_toml_names_file(tmp_path):
    p = write(tmp_path, 'name = "x"\nfamily = \n[meta\n', "broken.toml")
    with pytest.raises(ValueError, match=re.escape("broken.toml")):
        load_config(p)


def test_unknown_key_from_file(tmp_path):
    p = write(tmp_path, VALID_TOML.replace("iterations = 2", "iteratons = 2"))
    with pytest.raises(ValueError, match="iteratons"):
        load_config(p)


# Rule: a config file that is not UTF-8 is a ValueError that names the file.
def test_non_utf8_file_error_names_file(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes(b'description = "caf\xe9"\n' + VALID_TOML.encode())
    with pytest.raises(ValueError, match=re.escape("latin1.toml")):
        load_config(p)


def test_utf8_text_round_trips(tmp_path):
    p = tmp_path / "utf8.toml"
    p.write_bytes('description = "≈ café — ok"\n'.encode() + VALID_TOML.encode())
    assert load_config(p).description == "≈ café — ok"


# ---------------------------------------------------------------- fuzzing

SECTIONS = {
    "": ExperimentConfig,
    "meta": MetaSection,
    "baselines": BaselineConfig,
    "eval": EvalConfig,
}
FIELD_NAMES = sorted({f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)})

scalars = st.one_of(
    st.booleans(),
    st.integers(-3, 12),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from([*METHODS, PENDULUM, "metarobot/Nope-v0", "oracle"]),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
patches = st.lists(
    st.tuples(
        st.sampled_from(sorted(SECTIONS)),
        st.one_of(st.sampled_from(FIELD_NAMES), st.text(min_size=1, max_size=8)),
        junk,
    ),
    min_size=1,
    max_size=4,
)


def _has_declared_type(value: object, tp: object) -> bool:
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_has_declared_type(v, item) for v in value)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, float)
    if tp is str:
        return isinstance(value, str)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return all(
            _has_declared_type(getattr(value, f.name), hints[f.name])
            for f in dataclasses.fields(tp)
        )
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patches)
def test_fuzz_junk_loads_or_raises_value_error(patch):
    data = copy.deepcopy(valid())
    for section, key, value in patch:
        target = data if section == "" else data.get(section)
        if isinstance(target, dict):
            target[key] = copy.deepcopy(value)
    try:
        cfg = parse_config(data)
    except ValueError as err:
        assert str(err)  # a message, never an empty error
        return
    # Whatever loads is fully typed and passes its own validation.
    assert _has_declared_type(cfg, ExperimentConfig)
    cfg.validate()
    assert "oracle" in cfg.methods
    assert 0 in cfg.eval.ks


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_random_file_text(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("fuzz") / "f.toml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    with contextlib.suppress(ValueError):  # anything else fails the test
        load_config(p)


def test_eval_split_chooses_the_held_out_tasks():
    from metarobot.envs import ood_split, task_split

    fid = "metarobot/HalfCheetahPhysical-v0"
    test = parse_config({"name": "x", "family": fid, "eval": {"n_test_tasks": 3}})
    ood = parse_config({"name": "x", "family": fid, "eval": {"n_test_tasks": 3, "split": "ood"}})
    assert test.test_tasks() == task_split(fid)[1][:3]
    assert ood.test_tasks() == ood_split(fid)[:3]
    with pytest.raises(ValueError, match=r"eval\.split must be one of"):
        parse_config({"name": "x", "family": fid, "eval": {"split": "val"}})
    with pytest.raises(ValueError, match="ood"):  # the pendulum family defines no ood split
        parse_config({"name": "x", "family": PENDULUM, "eval": {"split": "ood"}})
