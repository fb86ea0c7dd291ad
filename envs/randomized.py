"""``RandomizedDynamics``: turn any Gymnasium MuJoCo env into a task distribution.

The wrapper keeps a pristine copy of every model field it may change and, at each ``reset``,
writes *absolute* values computed from that copy (``nominal × scale``), so values never compound
across resets. A task changes only at reset: ``set_task`` during an episode takes effect at the
next ``reset``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from metarobot.envs.randomization import (
    DYNAMICS_FIELDS,
    Choice,
    DisabledActuators,
    ParamSpec,
    Task,
    as_spec,
    n_elements,
    validate_task,
)

__all__ = ["RandomizedDynamics", "find_randomized"]

# MuJoCo warnings that mean the simulation diverged (MuJoCo then resets the data itself).
_DIVERGENCE_WARNINGS = (
    int(mujoco.mjtWarning.mjWARN_BADQACC),
    int(mujoco.mjtWarning.mjWARN_BADQPOS),
    int(mujoco.mjtWarning.mjWARN_BADQVEL),
)

# Stream id mixed into the task-resampling seed so it never collides with the env's own noise.
_TASK_STREAM = 0x7A5C


def divergence_count(data: mujoco.MjData) -> int:
    """Total number of divergence warnings MuJoCo has raised on ``data``."""
    return int(sum(data.warning[i].number for i in _DIVERGENCE_WARNINGS))


class RandomizedDynamics(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Randomize the physics of a Gymnasium MuJoCo environment, one task per episode.

    ## Description
    Wraps any env whose ``unwrapped`` is a ``gymnasium.envs.mujoco.MujocoEnv``. Each keyword
    names an ``MjModel`` field and gives the distribution of a *scale factor* on its nominal
    value: a ``(low, high)`` tuple is a uniform range shared by every element; a spec object
    (``Uniform``, ``LogUniform``, ``pearl_log_uniform``) may draw per element.

    ## Randomized parameters
    | keyword | field(s) written | elements |
    |---|---|---|
    | ``body_mass`` | ``body_mass``, ``body_inertia`` (same factor); ``mj_setConst`` | bodies |
    | ``geom_friction`` | all three ``geom_friction`` coefficients | geoms |
    | ``dof_damping`` | ``dof_damping`` | dofs |
    | ``gravity`` | ``opt.gravity`` | x, y, z |
    | ``actuator_gear`` | ``actuator_gear`` rows | actuators |
    | ``actuator_direction`` | sign of the gear rows (a motor wired in reverse) | actuators |
    | ``disabled_actuators`` | gear row and gain set to 0 (a crippled limb) | actuator groups |

    ``goal`` adds reward parameters (target velocity, direction) for reward-varying families;
    those families override :meth:`goal_reward`.

    ## Episode end
    As the wrapped env; in addition, a diverging simulation (non-finite state or a MuJoCo
    bad-QACC/QPOS/QVEL warning) ends the episode with ``truncated=True``,
    ``info["diverged"] = True``, reward 0 and the last finite observation, so no NaN reaches the
    caller.

    ## Info
    ``reset`` reports the active task in ``info["task"]``; ``step`` reports
    ``info["diverged"]``.

    Args:
        env: The MuJoCo env to wrap.
        body_mass: Scale range of body masses (inertia scaled alike).
        geom_friction: Scale range of geom friction.
        dof_damping: Scale range of joint damping.
        gravity: Scale range of gravity.
        actuator_gear: Scale range of actuator strength.
        actuator_direction: ``Choice`` of signs ±1 of the actuator gear (reversed wiring).
        disabled_actuators: Which actuators may fail (``DisabledActuators`` or a tuple of
            candidate indices, one failing per task).
        goal: Reward parameters, name → spec (``Uniform``/``Choice``); absolute values.
        test_overrides: Specs that replace the above when sampling the ``"test"`` split.
        family: The family id written into every task; defaults to the env spec id.
        resample_on_reset: Draw a fresh task at every reset that is not given one (domain
            randomization); the draw uses a generator seeded by ``reset(seed=...)``.

    Raises:
        ValueError: On an unknown keyword, a bad range, or an env that is not MuJoCo.
    """

    #: The ``MjModel`` fields :meth:`_apply` writes (``opt.<name>`` for options), in
    #: ``mujoco.batch`` naming: the batched simulator copies them per world, then runs
    #: ``set_const``. A subclass that writes more fields lists them here.
    MODEL_FIELDS: tuple[str, ...] = (
        "body_mass",
        "body_inertia",
        "geom_friction",
        "dof_damping",
        "opt.gravity",
        "actuator_gear",
        "actuator_gainprm",
        "actuator_biasprm",
    )

    def __init__(
        self,
        env: gym.Env,
        *,
        body_mass: Any = None,
        geom_friction: Any = None,
        dof_damping: Any = None,
        gravity: Any = None,
        actuator_gear: Any = None,
        actuator_direction: Any = None,
        disabled_actuators: Any = None,
        goal: Mapping[str, ParamSpec | Choice] | None = None,
        test_overrides: Mapping[str, Any] | None = None,
        family: str | None = None,
        resample_on_reset: bool = False,
        **unknown: Any,
    ) -> None:
        if unknown:
            allowed = [*DYNAMICS_FIELDS, "disabled_actuators", "goal"]
            raise ValueError(
                f"unknown parameter(s) {sorted(unknown)}; allowed parameters are {allowed}"
            )
        # Recorded so that env.spec / gym.make(env.spec) / check_env can rebuild the wrapper
        # (Gymnasium's wrapper convention); a subclass that records its own arguments first
        # keeps them (the first call wins).
        gym.utils.RecordConstructorArgs.__init__(
            self,
            body_mass=body_mass,
            geom_friction=geom_friction,
            dof_damping=dof_damping,
            gravity=gravity,
            actuator_gear=actuator_gear,
            actuator_direction=actuator_direction,
            disabled_actuators=disabled_actuators,
            goal=goal,
            test_overrides=test_overrides,
            family=family,
            resample_on_reset=resample_on_reset,
        )
        gym.Wrapper.__init__(self, env)
        base = env.unwrapped
        if not isinstance(base, MujocoEnv):
            raise ValueError(
                f"env must be a Gymnasium MuJoCo env (unwrapped MujocoEnv), got {type(base)!r}"
            )
        self._base: MujocoEnv = base
        model = base.model
        self._pristine = {
            "body_mass": model.body_mass.copy(),
            "body_inertia": model.body_inertia.copy(),
            "geom_friction": model.geom_friction.copy(),
            "dof_damping": model.dof_damping.copy(),
            "gravity": model.opt.gravity.copy(),
            "actuator_gear": model.actuator_gear.copy(),
            "actuator_gainprm": model.actuator_gainprm.copy(),
            "actuator_biasprm": model.actuator_biasprm.copy(),
        }
        raw = {
            "body_mass": body_mass,
            "geom_friction": geom_friction,
            "dof_damping": dof_damping,
            "gravity": gravity,
            "actuator_gear": actuator_gear,
            "actuator_direction": actuator_direction,
        }
        self._specs: dict[str, ParamSpec | Choice] = {
            k: as_spec(k, v) for k, v in raw.items() if v is not None
        }
        self._disabled = self._disabled_spec(disabled_actuators, model.nu)
        self._goal_specs: dict[str, ParamSpec | Choice] = {
            k: v.named(k) for k, v in sorted((goal or {}).items())
        }
        self._test_specs: dict[str, Any] = {}
        for k, v in (test_overrides or {}).items():
            if k in DYNAMICS_FIELDS:
                self._test_specs[k] = as_spec(k, v)
            elif k == "disabled_actuators":
                self._test_specs[k] = self._disabled_spec(v, model.nu)
            elif k in self._goal_specs:
                self._test_specs[k] = v.named(k)
            else:
                raise ValueError(f"test_overrides: unknown parameter {k!r}")
        spec_id = env.spec.id if env.spec is not None else None
        self.family: str = family or spec_id or type(base).__name__
        self._resample = bool(resample_on_reset)
        self._task_rng = np.random.default_rng()
        self._active: Task = self.nominal_task()
        self._pending: Task | None = None
        self._last_obs: np.ndarray | None = None
        self._apply(self._active)

    @property
    def resample_on_reset(self) -> bool:
        """Whether a reset without a task draws a fresh one (domain randomization)."""
        return self._resample

    @resample_on_reset.setter
    def resample_on_reset(self, value: bool) -> None:
        self._resample = bool(value)

    # ------------------------------------------------------------------ tasks
    @staticmethod
    def _disabled_spec(value: Any, nu: int) -> DisabledActuators | None:
        if value is None:
            return None
        if isinstance(value, DisabledActuators):
            spec = value
        elif isinstance(value, Sequence) and not isinstance(value, str):
            spec = DisabledActuators(tuple(value), 1)
        else:
            raise ValueError(
                "disabled_actuators must be a DisabledActuators spec or a tuple of candidate "
                f"actuator indices, got {value!r}"
            )
        spec.check_indices(nu)
        return spec

    def nominal_task(self) -> Task:
        """The task with every scale at 1, nothing disabled, and goals at their range start."""
        goal = {
            k: (s.values[0],) if isinstance(s, Choice) else (s.low,)
            for k, s in self._goal_specs.items()
        }
        return Task.make(self.family, {}, (), goal)

    def _sample_one(self, rng: np.random.Generator, split: str) -> Task:
        specs: dict[str, Any] = dict(self._specs)
        disabled = self._disabled
        goal_specs = dict(self._goal_specs)
        if split == "test":
            for k, v in self._test_specs.items():
                if k == "disabled_actuators":
                    disabled = v
                elif k in goal_specs:
                    goal_specs[k] = v
                else:
                    specs[k] = v
        model = self._base.model
        scales = {
            k: specs[k].sample(rng, n_elements(model, k)) for k in DYNAMICS_FIELDS if k in specs
        }
        dis = disabled.sample(rng) if disabled is not None else ()
        goal = {k: s.sample(rng, 1) for k, s in goal_specs.items()}
        return Task.make(self.family, scales, dis, goal)

    def sample_tasks(self, n: int, seed: int | None = None, split: str = "train") -> list[Task]:
        """Draw ``n`` tasks with a generator seeded by ``seed``.

        Args:
            n: Number of tasks, >= 1.
            seed: Seed of the draw; the same seed gives the same tasks.
            split: ``"train"`` or ``"test"`` (families such as ``AntCrippled`` draw test tasks
                from a different set).

        Returns:
            The tasks.

        Raises:
            ValueError: If ``n`` < 1 or ``split`` is unknown.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        rng = np.random.default_rng(seed)
        return [self._sample_one(rng, split) for _ in range(int(n))]

    def validate_task(self, task: Task) -> Task:
        """Check a task belongs to this family and fits this model.

        Raises:
            ValueError: Naming the offending field and the allowed range.
        """
        return validate_task(
            task, family=self.family, model=self._base.model, goal_names=self._goal_specs
        )

    def set_task(self, task: Task) -> None:
        """Use ``task`` from the next ``reset`` on (never mid-episode)."""
        self._pending = self.validate_task(task)

    def get_task(self) -> Task:
        """The task set for the next reset if one is pending, else the active task."""
        return self._pending if self._pending is not None else self._active

    @property
    def active_task(self) -> Task:
        """The task the current episode runs with."""
        return self._active

    # ------------------------------------------------------------------ physics
    def _apply(self, task: Task) -> None:
        """Write absolute values computed from the pristine model."""
        model = self._base.model
        p = self._pristine
        mass = np.asarray(task.scale("body_mass") or (1.0,))
        model.body_mass[:] = p["body_mass"] * mass
        model.body_inertia[:] = p["body_inertia"] * mass[:, None]
        fr = np.asarray(task.scale("geom_friction") or (1.0,))
        model.geom_friction[:] = p["geom_friction"] * fr[:, None]
        model.dof_damping[:] = p["dof_damping"] * np.asarray(task.scale("dof_damping") or (1.0,))
        model.opt.gravity[:] = p["gravity"] * np.asarray(task.scale("gravity") or (1.0,))
        gear = np.asarray(task.scale("actuator_gear") or (1.0,))
        gear = gear * np.asarray(task.scale("actuator_direction") or (1.0,))
        model.actuator_gear[:] = p["actuator_gear"] * gear[:, None]
        model.actuator_gainprm[:] = p["actuator_gainprm"]
        model.actuator_biasprm[:] = p["actuator_biasprm"]
        for i in task.disabled_actuators:
            model.actuator_gear[i] = 0.0
            model.actuator_gainprm[i] = 0.0
            model.actuator_biasprm[i] = 0.0
        try:
            mujoco.mj_setConst(model, self._base.data)
        except mujoco.FatalError as err:
            if task != self.nominal_task():
                self._apply(self.nominal_task())  # leave a usable model behind
            raise ValueError(f"task is not physically valid ({err}): {task}") from err

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Apply the pending (or a resampled) task, then reset the wrapped env.

        Args:
            seed: Seeds the wrapped env and, for ``resample_on_reset``, the task draw.
            options: ``{"task": Task}`` sets the task for this episode; other keys are passed on.

        Returns:
            Observation and info; ``info["task"]`` is the active task.
        """
        options = dict(options or {})
        task = options.pop("task", None)
        if seed is not None:
            self._task_rng = np.random.default_rng(np.random.SeedSequence([seed, _TASK_STREAM]))
        if task is not None:
            self.set_task(task)
        elif self._resample and self._pending is None:
            self._pending = self._sample_one(self._task_rng, "train")
        if self._pending is not None:
            self._active, self._pending = self._pending, None
        self._apply(self._active)
        obs, info = self.env.reset(seed=seed, options=options or None)
        self._last_obs = np.array(obs, copy=True)
        info["task"] = self._active
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the wrapped env; report (and contain) divergence."""
        data = self._base.data
        before = divergence_count(data)
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self._goal_specs:
            reward = float(
                self.goal_reward(self.single_terms(info, action), self._goal_arrays())[0]
            )
        diverged = (
            divergence_count(data) != before
            or not np.all(np.isfinite(obs))
            or not math.isfinite(float(reward))
        )
        info["diverged"] = diverged
        if diverged:
            obs = self._last_obs.copy() if self._last_obs is not None else np.zeros_like(obs)
            return obs, 0.0, False, True, info
        self._last_obs = np.array(obs, copy=True)
        return obs, reward, terminated, truncated, info

    # ------------------------------------------------------------------ rewards
    def _goal_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float64)[None, :] for k, v in self._active.goal}

    def single_terms(self, info: Mapping[str, Any], action: Any) -> dict[str, np.ndarray]:
        """Reward terms of one step, shaped like the batched simulator's (batch of one)."""
        act = np.asarray(action)
        base = self._base
        healthy = float(base.is_healthy) if hasattr(base, "is_healthy") else 1.0
        return {
            "x_velocity": np.array([float(info.get("x_velocity", 0.0))]),
            "y_velocity": np.array([float(info.get("y_velocity", 0.0))]),
            "ctrl_sq": np.array([np.sum(np.square(act))]),
            "healthy": np.array([healthy]),
        }

    @staticmethod
    def goal_reward(terms: Mapping[str, np.ndarray], goal: Mapping[str, np.ndarray]) -> np.ndarray:
        """Vectorized reward of a reward-varying family (overridden by those families).

        Args:
            terms: ``x_velocity``, ``y_velocity``, ``ctrl_sq`` (sum of squared actions) and
                ``healthy`` (0/1), each of shape ``(N,)``.
            goal: Goal parameters, each of shape ``(N, k)``.

        Returns:
            Rewards of shape ``(N,)``.
        """
        raise NotImplementedError("only reward-varying families define goal_reward")

    @property
    def goal_specs(self) -> dict[str, ParamSpec | Choice]:
        """Reward parameters of the family (empty for dynamics-only families)."""
        return dict(self._goal_specs)

    @property
    def specs(self) -> dict[str, ParamSpec | Choice]:
        """The training-split specs of the dynamics fields, field name → spec (a copy)."""
        return dict(self._specs)

    @property
    def disabled_spec(self) -> DisabledActuators | None:
        """The training-split actuator-failure spec, or None when no actuator fails."""
        return self._disabled

    @property
    def test_overrides(self) -> dict[str, Any]:
        """Specs that replace the training ones for the ``"test"`` split (a copy)."""
        return dict(self._test_specs)


def find_randomized(env: gym.Env) -> RandomizedDynamics:
    """Return the ``RandomizedDynamics`` layer inside a (possibly wrapped) env.

    Raises:
        ValueError: If there is none.
    """
    cur: Any = env
    while cur is not None:
        if isinstance(cur, RandomizedDynamics):
            return cur
        cur = getattr(cur, "env", None)
    raise ValueError(f"env {env!r} has no RandomizedDynamics layer")
