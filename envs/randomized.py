"""``RandomizedDynamics``: turn any Gymnasium MuJoCo env into a task distribution.

The wrapper keeps a pristine copy of every model field it may change and, at each ``reset``,
writes *absolute* values computed from that copy (``nominal × scale``), so values never compound
across resets. ``set_task`` during an episode takes effect at the next ``reset``; the one way a
task changes within an episode is the wrapper's own change schedule (``change_step``,
``hazard``), which it reports in ``info["task_changed"]``.
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
# Stream id of the within-episode change schedule (hazard draws, second tasks).
_CHANGE_STREAM = 0x7A5D

#: Split names ``sample_tasks`` knows; ``"ood"`` exists only for families with ``ood_overrides``.
SPLITS: tuple[str, ...] = ("train", "test", "ood")


def divergence_count(data: mujoco.MjData) -> int:
    """Total number of divergence warnings MuJoCo has raised on ``data``."""
    return int(sum(data.warning[i].number for i in _DIVERGENCE_WARNINGS))


def add_point_mass(
    mass: float,
    ipos: np.ndarray,
    iquat: np.ndarray,
    inertia: np.ndarray,
    point_mass: float,
    offset: np.ndarray,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """A rigid body with a point mass fixed to it, as one rigid body (MuJoCo's parametrization).

    Args:
        mass: The body's mass.
        ipos: Its centre of mass in the body frame (``body_ipos``).
        iquat: Orientation of its principal axes in the body frame (``body_iquat``).
        inertia: Its principal moments of inertia about the centre of mass (``body_inertia``).
        point_mass: The added mass (>= 0).
        offset: Where the point mass sits, relative to ``ipos``, in the body frame.

    Returns:
        ``(mass, ipos, iquat, inertia)`` of the combined body: the new centre of mass, the
        principal axes and moments of the combined inertia tensor about it (parallel-axis
        theorem for both parts).
    """
    ipos = np.asarray(ipos, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    total = mass + point_mass
    com = ipos + point_mass * offset / total
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, np.asarray(iquat, dtype=np.float64))
    rot = rot.reshape(3, 3)
    tensor = rot @ np.diag(inertia) @ rot.T
    for m, r in ((mass, ipos - com), (point_mass, ipos + offset - com)):
        tensor = tensor + m * (np.dot(r, r) * np.eye(3) - np.outer(r, r))
    moments, axes = np.linalg.eigh(0.5 * (tensor + tensor.T))
    if np.linalg.det(axes) < 0:  # a rotation, not a reflection
        axes[:, 2] = -axes[:, 2]
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(axes).reshape(-1))
    return float(total), com, quat, moments


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
    | ``payload_mass`` | a point mass (× the robot's nominal total mass) added to one body: its
    ``body_mass``, ``body_ipos``, ``body_iquat``, ``body_inertia``; ``mj_setConst`` | 1 |
    | ``payload_com`` | where that point mass sits (metres, relative to the body's nominal
    centre of mass, body frame); changes nothing without payload mass | x, y, z |

    ``goal`` adds reward parameters (target velocity, direction) for reward-varying families;
    those families override :meth:`goal_reward`.

    ## Episode end
    As the wrapped env; in addition, a diverging simulation (non-finite state or a MuJoCo
    bad-QACC/QPOS/QVEL warning) ends the episode with ``truncated=True``,
    ``info["diverged"] = True``, reward 0 and the last finite observation, so no NaN reaches the
    caller.

    ## Dynamics that change within an episode
    ``change_step=k``: the first k steps of an episode run its task, then the task switches
    (once) to a second one; ``hazard=p``: before every step the task switches with probability
    p (RMA's re-sampling). The second task is ``change_to``: a fixed ``Task``, or the name of a
    split (``"train"``, ``"test"``, ``"ood"``) whose distribution it is drawn from. Every draw
    uses a generator seeded by ``reset(seed=...)`` (its own stream). The switch writes the new
    task's model values mid-episode (the state is kept); the next reset restores the
    episode's own task.

    ## Info
    ``reset`` reports the active task in ``info["task"]``; ``step`` reports
    ``info["diverged"]`` and, when a change schedule is set, ``info["task_changed"]`` (True on
    the first step run with the new task, which is then also in ``info["task"]``).

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
        payload_mass: Range of the payload, in multiples of the robot's nominal total mass.
        payload_com: Range of the payload's offset from its body's centre of mass, in metres
            (``SignedUniform``; per element: x, y, z drawn independently).
        payload_body: The body carrying the payload (name or id); default: body 1, the root
            body of the robot (the torso of Gymnasium's legged robots).
        goal: Reward parameters, name → spec (``Uniform``/``Choice``); absolute values.
        test_overrides: Specs that replace the above when sampling the ``"test"`` split.
        ood_overrides: Specs that replace the above when sampling the ``"ood"`` split (tasks
            outside the training ranges); without them the family has no ``"ood"`` split.
        family: The family id written into every task; defaults to the env spec id.
        resample_on_reset: Draw a fresh task at every reset that is not given one (domain
            randomization); the draw uses a generator seeded by ``reset(seed=...)``.
        change_step: Number of steps an episode runs its own task before switching to a second
            one (an integer >= 1), or None.
        hazard: Probability in [0, 1] of switching the task before each step.
        change_to: The second task: a ``Task`` of this family, or a split name whose
            distribution it is drawn from (default ``"train"``).

    Raises:
        ValueError: On an unknown keyword, a bad range, or an env that is not MuJoCo.
    """

    #: The ``MjModel`` fields :meth:`_apply` writes (``opt.<name>`` for options), in
    #: ``mujoco.batch`` naming: the batched simulator copies them per world, then runs
    #: ``set_const``. A subclass that writes more fields lists them here.
    MODEL_FIELDS: tuple[str, ...] = (
        "body_mass",
        "body_inertia",
        "body_ipos",
        "body_iquat",
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
        payload_mass: Any = None,
        payload_com: Any = None,
        payload_body: str | int | None = None,
        goal: Mapping[str, ParamSpec | Choice] | None = None,
        test_overrides: Mapping[str, Any] | None = None,
        ood_overrides: Mapping[str, Any] | None = None,
        family: str | None = None,
        resample_on_reset: bool = False,
        change_step: int | None = None,
        hazard: float = 0.0,
        change_to: Task | str = "train",
        **unknown: Any,
    ) -> None:
        if unknown:
            allowed = [
                *DYNAMICS_FIELDS,
                "disabled_actuators",
                "payload_body",
                "goal",
                "test_overrides",
                "ood_overrides",
                "change_step",
                "hazard",
                "change_to",
            ]
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
            payload_mass=payload_mass,
            payload_com=payload_com,
            payload_body=payload_body,
            goal=goal,
            test_overrides=test_overrides,
            ood_overrides=ood_overrides,
            family=family,
            resample_on_reset=resample_on_reset,
            change_step=change_step,
            hazard=hazard,
            change_to=change_to,
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
            "body_ipos": model.body_ipos.copy(),
            "body_iquat": model.body_iquat.copy(),
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
            "payload_mass": payload_mass,
            "payload_com": payload_com,
        }
        self._payload_body = self._resolve_body(payload_body, model)
        self._robot_mass = float(np.sum(model.body_mass))
        self._specs: dict[str, ParamSpec | Choice] = {
            k: as_spec(k, v) for k, v in raw.items() if v is not None
        }
        self._disabled = self._disabled_spec(disabled_actuators, model.nu)
        self._goal_specs: dict[str, ParamSpec | Choice] = {
            k: v.named(k) for k, v in sorted((goal or {}).items())
        }
        self._test_specs = self._overrides("test_overrides", test_overrides, model.nu)
        self._ood_specs = (
            None
            if ood_overrides is None
            else self._overrides("ood_overrides", ood_overrides, model.nu)
        )
        spec_id = env.spec.id if env.spec is not None else None
        self.family: str = family or spec_id or type(base).__name__
        self._resample = bool(resample_on_reset)
        self._task_rng = np.random.default_rng()
        self._task: Task = self.nominal_task()  # the episode's own task
        self._active: Task = self._task  # the task running now (differs after a change)
        self._pending: Task | None = None
        self._last_obs: np.ndarray | None = None
        self._change_step, self._hazard = self._check_schedule(change_step, hazard)
        self._change_to: Task | str = "train"
        self._change_rng = np.random.default_rng()
        self._elapsed = 0
        self._held_change: bool | None = None
        self._scratch: mujoco.MjData | None = None
        if self.changes_within_episode:
            self.set_change_to(change_to)
        elif not (isinstance(change_to, str) and change_to == "train"):
            raise ValueError("change_to needs change_step or hazard > 0 (when to change)")
        self._apply(self._active)

    @property
    def resample_on_reset(self) -> bool:
        """Whether a reset without a task draws a fresh one (domain randomization)."""
        return self._resample

    @resample_on_reset.setter
    def resample_on_reset(self, value: bool) -> None:
        self._resample = bool(value)

    # ------------------------------------------------------------------ construction helpers
    def _overrides(self, what: str, raw: Mapping[str, Any] | None, nu: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in (raw or {}).items():
            if k in DYNAMICS_FIELDS:
                out[k] = as_spec(k, v)
            elif k == "disabled_actuators":
                out[k] = self._disabled_spec(v, nu)
            elif k in self._goal_specs:
                out[k] = v.named(k)
            else:
                raise ValueError(f"{what}: unknown parameter {k!r}")
        return out

    @staticmethod
    def _resolve_body(body: str | int | None, model: mujoco.MjModel) -> int:
        if model.nbody < 2:
            if body is None:
                return 0  # no body to carry a payload; a task with payload mass is refused
            raise ValueError("payload_body: the model has no body besides the world")
        if body is None:
            return 1
        if isinstance(body, str):
            i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
            if i < 1:
                raise ValueError(f"payload_body: no body named {body!r} (besides the world)")
            return int(i)
        if isinstance(body, bool) or not isinstance(body, (int, np.integer)):
            raise ValueError(f"payload_body must be a body name or id, got {body!r}")
        if not 1 <= body < model.nbody:
            raise ValueError(
                f"payload_body: body id {body!r} out of range; allowed range is "
                f"[1, {model.nbody - 1}]"
            )
        return int(body)

    @staticmethod
    def _check_schedule(change_step: Any, hazard: Any) -> tuple[int | None, float]:
        if change_step is not None and (
            isinstance(change_step, bool)
            or not isinstance(change_step, (int, np.integer))
            or change_step < 1
        ):
            raise ValueError(f"change_step must be an integer >= 1 or None, got {change_step!r}")
        try:
            h = float(hazard)
        except (TypeError, ValueError):
            h = math.nan
        if isinstance(hazard, bool) or not 0.0 <= h <= 1.0:
            raise ValueError(f"hazard must be a probability in [0, 1], got {hazard!r}")
        return (None if change_step is None else int(change_step)), h

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

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names :meth:`sample_tasks` accepts for this family."""
        return SPLITS if self._ood_specs is not None else SPLITS[:2]

    def _check_split(self, split: Any) -> str:
        if split not in self.splits:
            extra = "" if "ood" in self.splits else " (this family defines no 'ood' split)"
            raise ValueError(f"split must be one of {list(self.splits)}{extra}, got {split!r}")
        return split

    def _sample_one(self, rng: np.random.Generator, split: str) -> Task:
        specs: dict[str, Any] = dict(self._specs)
        disabled = self._disabled
        goal_specs = dict(self._goal_specs)
        overrides = {"test": self._test_specs, "ood": self._ood_specs or {}}.get(split, {})
        for k, v in overrides.items():
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
            split: ``"train"``, ``"test"`` (families such as ``AntCrippled`` draw test tasks
                from a different set) or, for families with ``ood_overrides``, ``"ood"``
                (tasks outside the training ranges).

        Returns:
            The tasks.

        Raises:
            ValueError: If ``n`` < 1 or ``split`` is unknown.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        self._check_split(split)
        rng = np.random.default_rng(seed)
        return [self._sample_one(rng, split) for _ in range(int(n))]

    def validate_task(self, task: Task) -> Task:
        """Check a task belongs to this family and fits this model.

        Raises:
            ValueError: Naming the offending field and the allowed range.
        """
        validate_task(task, family=self.family, model=self._base.model, goal_names=self._goal_specs)
        mass = task.scale("payload_mass")
        if mass is not None and mass[0] > 0.0 and self._payload_body < 1:
            raise ValueError("payload_mass: this model has no body to carry a payload")
        return task

    def set_task(self, task: Task) -> None:
        """Use ``task`` from the next ``reset`` on (never mid-episode)."""
        self._pending = self.validate_task(task)

    def get_task(self) -> Task:
        """The task set for the next reset if one is pending, else the episode's task."""
        return self._pending if self._pending is not None else self._task

    @property
    def active_task(self) -> Task:
        """The task the simulation runs with now (after a within-episode change, the new one)."""
        return self._active

    # ------------------------------------------------------------------ within-episode changes
    @property
    def changes_within_episode(self) -> bool:
        """Whether a change schedule is set (``change_step`` or ``hazard`` > 0)."""
        return self._change_step is not None or self._hazard > 0.0

    @property
    def change_schedule(self) -> dict[str, Any]:
        """How the task changes within an episode: ``change_step``, ``hazard``, ``change_to``."""
        return {
            "change_step": self._change_step,
            "hazard": self._hazard,
            "change_to": self._change_to,
        }

    def set_change_schedule(
        self, change_step: int | None = None, hazard: float = 0.0, change_to: Task | str = "train"
    ) -> None:
        """Set (or clear, with the defaults) the within-episode change schedule.

        The same as passing ``change_step``, ``hazard`` and ``change_to`` to the constructor;
        takes effect at the next reset. The batched simulator uses it, so that a user's entry
        point need not accept these keywords.

        Raises:
            ValueError: On a bad schedule, or ``change_to`` without one.
        """
        self._change_step, self._hazard = self._check_schedule(change_step, hazard)
        self._change_to = "train"
        if self.changes_within_episode:
            self.set_change_to(change_to)
        elif not (isinstance(change_to, str) and change_to == "train"):
            raise ValueError("change_to needs change_step or hazard > 0 (when to change)")

    def set_change_to(self, change_to: Task | str) -> None:
        """Set the second task: a ``Task`` of this family or a split name to draw it from.

        Takes effect at the next change (within the current episode too).

        Raises:
            ValueError: Without a change schedule, or on a foreign task or unknown split.
        """
        if not self.changes_within_episode:
            raise ValueError("change_to needs change_step or hazard > 0 (when to change)")
        if isinstance(change_to, Task):
            self._change_to = self.validate_task(change_to)
        elif isinstance(change_to, str):
            self._change_to = self._check_split(change_to)
        else:
            raise ValueError(
                f"change_to must be a Task or a split name {list(self.splits)}, got {change_to!r}"
            )

    def advance_schedule(self, *, hold: bool = False) -> bool:
        """Count one step of the episode and switch the task if the schedule says so.

        :meth:`step` calls this before its physics; a batched engine calls it for worlds whose
        ``step`` it does not run (then copies the world's model when this returns True), or
        with ``hold=True`` just before running the world's ``step``, which then uses the held
        result instead of counting the step again.

        Returns:
            Whether the task changed before this step.
        """
        if not self.changes_within_episode:
            return False
        k, self._elapsed = self._elapsed, self._elapsed + 1
        due = self._change_step is not None and k == self._change_step
        if self._hazard > 0.0 and self._change_rng.random() < self._hazard:
            due = True
        if due:
            to = self._change_to
            new = to if isinstance(to, Task) else self._sample_one(self._change_rng, to)
            self._apply(new, live=True)
            self._active = new
        if hold:
            self._held_change = due
        return due

    # ------------------------------------------------------------------ physics
    def _apply(self, task: Task, live: bool = False) -> None:
        """Write absolute values computed from the pristine model.

        Args:
            task: The task.
            live: The episode is running: ``mj_setConst`` works on a scratch ``MjData`` so the
                simulation's own data (its state and everything derived from it) is untouched.
        """
        model = self._base.model
        p = self._pristine
        mass = np.asarray(task.scale("body_mass") or (1.0,))
        model.body_mass[:] = p["body_mass"] * mass
        model.body_inertia[:] = p["body_inertia"] * mass[:, None]
        model.body_ipos[:] = p["body_ipos"]
        model.body_iquat[:] = p["body_iquat"]
        payload = (task.scale("payload_mass") or (0.0,))[0] * self._robot_mass
        if payload > 0.0:
            b = self._payload_body
            offset = np.broadcast_to(np.asarray(task.scale("payload_com") or (0.0,)), (3,))
            m, ipos, iquat, inertia = add_point_mass(
                float(model.body_mass[b]),
                p["body_ipos"][b],
                p["body_iquat"][b],
                model.body_inertia[b].copy(),
                payload,
                offset,
            )
            model.body_mass[b] = m
            model.body_ipos[b] = ipos
            model.body_iquat[b] = iquat
            model.body_inertia[b] = inertia
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
        if live and self._scratch is None:
            self._scratch = mujoco.MjData(model)
        try:
            mujoco.mj_setConst(model, self._scratch if live else self._base.data)
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
            options: ``{"task": Task}`` sets the task for this episode; ``{"change_to": ...}``
                the second task of the change schedule (see :meth:`set_change_to`); other keys
                are passed on.

        Returns:
            Observation and info; ``info["task"]`` is the active task.
        """
        options = dict(options or {})
        task = options.pop("task", None)
        if "change_to" in options:
            self.set_change_to(options.pop("change_to"))
        if seed is not None:
            self._task_rng = np.random.default_rng(np.random.SeedSequence([seed, _TASK_STREAM]))
            self._change_rng = np.random.default_rng(np.random.SeedSequence([seed, _CHANGE_STREAM]))
        if task is not None:
            self.set_task(task)
        elif self._resample and self._pending is None:
            self._pending = self._sample_one(self._task_rng, "train")
        if self._pending is not None:
            self._task, self._pending = self._pending, None
        self._active = self._task
        self._elapsed = 0
        self._held_change = None
        self._apply(self._active)
        obs, info = self.env.reset(seed=seed, options=options or None)
        self._last_obs = np.array(obs, copy=True)
        info["task"] = self._active
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the wrapped env; report (and contain) divergence."""
        if self._held_change is None:
            changed = self.advance_schedule()
        else:
            changed, self._held_change = self._held_change, None
        data = self._base.data
        before = divergence_count(data)
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.changes_within_episode:
            info["task_changed"] = changed
            if changed:
                info["task"] = self._active
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

    @property
    def ood_overrides(self) -> dict[str, Any] | None:
        """Specs that replace the training ones for the ``"ood"`` split (a copy), or None."""
        return None if self._ood_specs is None else dict(self._ood_specs)

    @property
    def payload_body(self) -> int:
        """Id of the body that carries the payload."""
        return self._payload_body


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
