"""Parameter specifications and the :class:`Task` value object.

A *spec* describes how one physical quantity is drawn for a task: a uniform or log-uniform range
of scale factors applied to the nominal (pristine) model value, shared across all elements of the
field or drawn per element. A *task* is the frozen, hashable, JSON-serializable record of one draw.

Example:
    >>> spec = LogUniform(1.5**-3, 1.5**3, per_element=True)   # PEARL's 1.5^u, u ~ U[-3, 3]
    >>> rng = np.random.default_rng(0)
    >>> spec.sample(rng, n_elements=4).shape
    (4,)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "DYNAMICS_FIELDS",
    "Choice",
    "DisabledActuators",
    "LogUniform",
    "ParamSpec",
    "SignedUniform",
    "Task",
    "Uniform",
    "allowed_range",
    "as_spec",
    "check_disabled_actuators",
    "check_scale_values",
    "check_spec",
    "n_elements",
    "pearl_log_uniform",
    "validate_task",
]

#: Names of the dynamics fields a task may set: scales following ``mujoco.MjModel`` field names,
#: plus the payload (a point mass added to one body; see ``RandomizedDynamics``).
DYNAMICS_FIELDS: tuple[str, ...] = (
    "body_mass",
    "geom_friction",
    "dof_damping",
    "gravity",
    "actuator_gear",
    "actuator_direction",
    "payload_mass",
    "payload_com",
)

#: Fields whose values are signs (±1: a motor wired normally or in reverse), not scales.
SIGN_FIELDS: tuple[str, ...] = ("actuator_direction",)

#: Fields whose values are signed lengths (metres), not scales: the payload's position
#: ``(x, y, z)`` relative to the nominal centre of mass of its body, in that body's frame.
OFFSET_FIELDS: tuple[str, ...] = ("payload_com",)


def _check_finite_nonneg(name: str, value: float) -> float:
    """Return ``value`` as float or raise a ValueError naming the parameter."""
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real number in [0, inf), got {value!r}") from err
    if not math.isfinite(v) or v < 0.0:
        raise ValueError(f"{name} must be a finite number in [0, inf), got {value!r}")
    return v + 0.0  # -0.0 becomes 0.0: numpy refuses uniform(0.0, -0.0) ("high - low < 0")


def _check_finite(name: str, value: float) -> float:
    """Return ``value`` as float or raise a ValueError naming the parameter (any sign)."""
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a real number in (-inf, inf), got {value!r}") from err
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number in (-inf, inf), got {value!r}")
    return v + 0.0


@dataclass(frozen=True)
class ParamSpec:
    """Base class of a scalar distribution, shared or per element.

    Attributes:
        low: Lower bound of the range (inclusive).
        high: Upper bound of the range (inclusive).
        per_element: Draw one independent value per element of the field (e.g. per body) when
            True; one value shared by every element when False.
        name: Parameter name used in error messages (filled in by the owner).
    """

    low: float
    high: float
    per_element: bool = False
    name: str = field(default="value", compare=False)

    #: Whether the bounds may be negative (offsets); scale factors may not.
    SIGNED: ClassVar[bool] = False

    def __post_init__(self) -> None:
        check = _check_finite if self.SIGNED else _check_finite_nonneg
        low = check(f"{self.name}.low", self.low)
        high = check(f"{self.name}.high", self.high)
        if low > high:
            raise ValueError(f"{self.name}: low must be <= high, got low={low!r} > high={high!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def named(self, name: str) -> ParamSpec:
        """Return a copy whose error messages use ``name``."""
        return type(self)(self.low, self.high, self.per_element, name)

    def sample(self, rng: np.random.Generator, n_elements: int) -> np.ndarray:
        """Draw values.

        Args:
            rng: The generator every draw goes through.
            n_elements: Number of elements of the field.

        Returns:
            A float64 array of length ``n_elements`` if ``per_element`` else of length 1.
        """
        raise NotImplementedError

    def contains(self, values: Iterable[float]) -> bool:
        """Whether every value lies within ``[low, high]`` (with float tolerance)."""
        arr = np.asarray(list(values), dtype=np.float64)
        tol = 1e-12 * max(1.0, abs(self.low), abs(self.high))
        return bool(np.all((arr >= self.low - tol) & (arr <= self.high + tol)))


@dataclass(frozen=True)
class Uniform(ParamSpec):
    """Uniform distribution on ``[low, high]``."""

    def sample(self, rng: np.random.Generator, n_elements: int) -> np.ndarray:  # noqa: D102
        size = n_elements if self.per_element else 1
        return rng.uniform(self.low, self.high, size=size)


@dataclass(frozen=True)
class SignedUniform(Uniform):
    """Uniform distribution on ``[low, high]`` whose bounds may be negative.

    For offsets (``payload_com``, in metres), not for scale factors: the field's validator
    refuses a negative bound for any scale field.
    """

    SIGNED: ClassVar[bool] = True


@dataclass(frozen=True)
class LogUniform(ParamSpec):
    """Log-uniform distribution on ``[low, high]`` (both > 0).

    ``LogUniform(b**-k, b**k)`` is the distribution of ``b**u`` with ``u ~ U[-k, k]``.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.low <= 0.0:
            raise ValueError(
                f"{self.name}: a log-uniform range needs low > 0, got low={self.low!r}; "
                "allowed range is (0, inf)"
            )

    def sample(self, rng: np.random.Generator, n_elements: int) -> np.ndarray:  # noqa: D102
        size = n_elements if self.per_element else 1
        return np.exp(rng.uniform(math.log(self.low), math.log(self.high), size=size))


def pearl_log_uniform(base: float, limit: float = 3.0, per_element: bool = True) -> LogUniform:
    """PEARL's ``rand_params`` convention: scale ``base**u`` with ``u ~ U[-limit, limit]``."""
    if not (math.isfinite(base) and base > 1.0):
        raise ValueError(f"base must be a finite number in (1, inf), got {base!r}")
    if not (math.isfinite(limit) and limit >= 0.0):
        raise ValueError(f"limit must be a finite number in [0, inf), got {limit!r}")
    return LogUniform(base**-limit, base**limit, per_element=per_element)


@dataclass(frozen=True)
class Choice:
    """A uniform choice among a fixed set of float values (e.g. a running direction of ±1).

    Attributes:
        values: The allowed values.
        name: Parameter name used in error messages.
    """

    values: tuple[float, ...]
    name: str = field(default="value", compare=False)

    def __post_init__(self) -> None:
        if len(self.values) == 0:
            raise ValueError(f"{self.name}: Choice needs at least one value")
        vals = tuple(float(v) for v in self.values)
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"{self.name}: Choice values must be finite, got {self.values!r}")
        object.__setattr__(self, "values", vals)

    def named(self, name: str) -> Choice:
        """Return a copy whose error messages use ``name``."""
        return Choice(self.values, name)

    def sample(self, rng: np.random.Generator, n_elements: int = 1) -> np.ndarray:
        """Draw one value (as a length-1 array)."""
        return np.array([self.values[int(rng.integers(len(self.values)))]], dtype=np.float64)

    def contains(self, values: Iterable[float]) -> bool:
        """Whether every value is one of the allowed values."""
        return all(float(v) in self.values for v in values)


@dataclass(frozen=True)
class DisabledActuators:
    """Actuator failure: ``count`` actuator groups drawn from ``candidates`` are disabled.

    A group is a tuple of actuator indices that fail together (a leg of the Ant has two motors).

    Attributes:
        candidates: Groups that may fail, e.g. ``((0, 1), (2, 3))`` or ``(0, 1, 2)`` for single
            actuators.
        count: How many distinct groups fail in one task.
        name: Parameter name used in error messages.
        probability: Probability that a task has the failure at all (else no actuator fails).
    """

    candidates: tuple[tuple[int, ...], ...]
    count: int = 1
    name: str = field(default="disabled_actuators", compare=False)
    probability: float = 1.0

    def __post_init__(self) -> None:
        groups: list[tuple[int, ...]] = []
        if isinstance(self.candidates, (str, bytes)) or not isinstance(self.candidates, Iterable):
            raise ValueError(
                f"{self.name}: candidates must be a tuple of actuator indices or index groups, "
                f"got {self.candidates!r}"
            )
        for group in self.candidates:
            if isinstance(group, (int, np.integer)) and not isinstance(group, bool):
                g: tuple[Any, ...] = (group,)
            elif isinstance(group, Iterable) and not isinstance(group, (str, bytes)):
                g = tuple(group)
            else:
                raise ValueError(
                    f"{self.name}: candidate groups must be actuator indices >= 0 or tuples of "
                    f"them, got {group!r}"
                )
            if not g or any(
                isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0 for i in g
            ):
                raise ValueError(
                    f"{self.name}: candidate groups must be non-empty tuples of actuator indices "
                    f">= 0, got {group!r}"
                )
            groups.append(tuple(int(i) for i in g))
        if not groups:
            raise ValueError(f"{self.name}: needs at least one candidate group")
        if not (isinstance(self.count, (int, np.integer)) and 0 <= self.count <= len(groups)):
            raise ValueError(
                f"{self.name}: count must be an integer in [0, {len(groups)}], got {self.count!r}"
            )
        object.__setattr__(self, "candidates", tuple(groups))
        try:
            p = float(self.probability)
        except (TypeError, ValueError):
            p = math.nan
        if isinstance(self.probability, bool) or not (0.0 <= p <= 1.0):
            raise ValueError(
                f"{self.name}: probability must be a number in [0, 1], got {self.probability!r}"
            )
        object.__setattr__(self, "probability", p)

    def named(self, name: str) -> DisabledActuators:
        """Return a copy whose error messages use ``name``."""
        return DisabledActuators(self.candidates, self.count, name, self.probability)

    def sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        """Draw the sorted tuple of disabled actuator indices."""
        # A certain failure draws nothing extra, so the splits of existing families stay frozen.
        if self.probability < 1.0 and rng.random() >= self.probability:
            return ()
        picks = rng.choice(len(self.candidates), size=self.count, replace=False)
        return tuple(sorted({i for p in picks for i in self.candidates[int(p)]}))

    def check_indices(self, nu: int) -> None:
        """Raise if a candidate index does not exist in a model with ``nu`` actuators."""
        for group in self.candidates:
            for i in group:
                if i >= nu:
                    raise ValueError(
                        f"{self.name}: actuator index {i} out of range; allowed range is "
                        f"[0, {nu - 1}]"
                    )


def as_spec(name: str, value: Any) -> ParamSpec | Choice:
    """Turn a user value into a spec: a ``(lo, hi)`` tuple means a uniform scale range.

    Args:
        name: Parameter name, used in error messages.
        value: A :class:`ParamSpec`, a :class:`Choice` or a ``(low, high)`` pair.

    Returns:
        The spec, named ``name``.

    Raises:
        ValueError: If ``value`` is neither, or the range is invalid.
    """
    if isinstance(value, (ParamSpec, Choice)):
        spec = value.named(name)
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        cls = SignedUniform if name in OFFSET_FIELDS else Uniform
        spec = cls(value[0], value[1], False, name)
    else:
        raise ValueError(
            f"{name} must be a (low, high) tuple of values in {allowed_range(name)} or a "
            f"spec object (Uniform, LogUniform, SignedUniform, Choice), got {value!r}"
        )
    if name in DYNAMICS_FIELDS:
        check_spec(name, spec)
    return spec


def _floats(name: str, values: Any) -> tuple[float, ...]:
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64)).ravel()
    except (TypeError, ValueError) as err:
        raise ValueError(f"Task value {name!r} must be numbers, got {values!r}") from err
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Task value {name!r} must be finite, got {values!r}")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class Task:
    """One member of a task distribution: frozen, hashable, JSON round-trippable.

    Attributes:
        family: The family id the task belongs to (e.g. ``"metarobot/HalfCheetahRandParams-v0"``).
        scales: Sorted ``(field, values)`` pairs; each value multiplies the nominal model value
            of that MjModel field (one value shared, or one per element); ``payload_mass`` (in
            multiples of the robot's nominal total mass) and ``payload_com`` (metres, x, y, z)
            describe a point mass added to one body instead.
        disabled_actuators: Sorted actuator indices whose force is zero in this task.
        goal: Sorted ``(name, values)`` pairs of reward parameters (target velocity, direction).
    """

    family: str
    scales: tuple[tuple[str, tuple[float, ...]], ...] = ()
    disabled_actuators: tuple[int, ...] = ()
    goal: tuple[tuple[str, tuple[float, ...]], ...] = ()

    @classmethod
    def make(
        cls,
        family: str,
        scales: Mapping[str, Any] | None = None,
        disabled_actuators: Iterable[int] = (),
        goal: Mapping[str, Any] | None = None,
    ) -> Task:
        """Build a task from plain mappings, normalizing and validating every value.

        Raises:
            ValueError: On an unknown field name, a negative or non-finite scale, or a negative
                actuator index.
        """
        for arg, val in (("scales", scales), ("goal", goal)):
            if val is not None and not isinstance(val, Mapping):
                raise ValueError(f"{arg} must be a mapping of name -> values, got {val!r}")
        scale_items = tuple(
            (name, check_scale_values(name, values))
            for name, values in sorted((scales or {}).items())
        )
        dis = check_disabled_actuators(disabled_actuators)
        goal_items = tuple((str(k), _floats(k, v)) for k, v in sorted((goal or {}).items()))
        return cls(str(family), scale_items, dis, goal_items)

    def scale(self, name: str) -> tuple[float, ...] | None:
        """The scale values of one field, or None when the task leaves it nominal."""
        return dict(self.scales).get(name)

    def goal_value(self, name: str) -> tuple[float, ...] | None:
        """The values of one reward parameter, or None."""
        return dict(self.goal).get(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "family": self.family,
            "scales": {k: list(v) for k, v in self.scales},
            "disabled_actuators": list(self.disabled_actuators),
            "goal": {k: list(v) for k, v in self.goal},
        }

    def to_json(self) -> str:
        """Serialize; floats are written with full (round-trip) precision."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Task:
        """Parse the output of :meth:`to_json`.

        Raises:
            ValueError: If the text is not a task record.
        """
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"task JSON could not be parsed: {err}") from err
        if not isinstance(raw, dict) or "family" not in raw:
            raise ValueError("task JSON must be an object with a 'family' key")
        unknown = set(raw) - {"family", "scales", "disabled_actuators", "goal"}
        if unknown:
            raise ValueError(f"task JSON has unknown keys {sorted(unknown)}")
        return cls.make(
            raw["family"],
            raw.get("scales") or {},
            raw.get("disabled_actuators") or (),
            raw.get("goal") or {},
        )

    def __str__(self) -> str:
        parts = [self.family.split("/")[-1]]
        for k, v in self.scales:
            parts.append(
                f"{k}=" + ",".join(f"{x:.3g}" for x in v[:4]) + ("…" if len(v) > 4 else "")
            )
        if self.disabled_actuators:
            parts.append(f"disabled={list(self.disabled_actuators)}")
        for k, v in self.goal:
            parts.append(f"{k}=" + ",".join(f"{x:.3g}" for x in v))
        return "Task(" + " ".join(parts) + ")"


# ---------------------------------------------------------------------------- the task validator
# Every rule about which values a task may hold lives here, once: specs (``as_spec``), tasks
# (``Task.make``), the wrapper (``validate_task``) and experiments/fuzz_tasks.py all call it.


def n_elements(model: Any, name: str) -> int:
    """Number of elements of a dynamics field in ``model`` (bodies, geoms, dofs, ...).

    Args:
        model: A ``mujoco.MjModel`` (anything with ``nbody``, ``ngeom``, ``nv``, ``nu``).
        name: One of :data:`DYNAMICS_FIELDS`.

    Raises:
        ValueError: If ``name`` is not a dynamics field.
    """
    sizes = {
        "body_mass": "nbody",
        "geom_friction": "ngeom",
        "dof_damping": "nv",
        "actuator_gear": "nu",
        "actuator_direction": "nu",
    }
    if name in ("gravity", "payload_com"):
        return 3
    if name == "payload_mass":
        return 1
    if name not in sizes:
        raise ValueError(f"unknown parameter {name!r}; allowed names are {list(DYNAMICS_FIELDS)}")
    return int(getattr(model, sizes[name]))


def allowed_range(name: str) -> str:
    """The values a scale of field ``name`` may take, in words (used in every error)."""
    if name in SIGN_FIELDS:
        return "-1 or +1"
    if name == "body_mass":
        return "(0, inf) (a moving body needs mass)"
    if name == "payload_mass":
        return "[0, inf) (multiples of the robot's nominal total mass)"
    if name in OFFSET_FIELDS:
        return "(-inf, inf) (metres)"
    return "[0, inf)"


def _value_ok(name: str, v: float) -> bool:
    if not math.isfinite(v):
        return False
    if name in SIGN_FIELDS:
        return v in (-1.0, 1.0)
    if name in OFFSET_FIELDS:
        return True
    if name == "body_mass":
        return v > 0.0
    return v >= 0.0


def check_scale_values(name: str, values: Any, n: int | None = None) -> tuple[float, ...]:
    """Validate the scale values of one field of a task; return them as floats.

    Args:
        name: One of :data:`DYNAMICS_FIELDS`.
        values: One value (shared) or one per element (``payload_com``: x, y, z).
        n: Number of elements of the field in the model, when known: ``values`` must then hold
            1 or ``n`` values.

    Returns:
        The values as a tuple of floats.

    Raises:
        ValueError: Naming the field and its allowed range.
    """
    if name not in DYNAMICS_FIELDS:
        raise ValueError(f"unknown parameter {name!r}; allowed names are {list(DYNAMICS_FIELDS)}")
    vals = _floats(name, values)
    bad = [v for v in vals if not _value_ok(name, v)]
    if bad:
        raise ValueError(
            f"{name}: scales must be finite and in {allowed_range(name)}, got {bad[0]!r} "
            f"in {values!r}"
        )
    if n is not None and len(vals) not in (1, n):
        raise ValueError(f"{name}: a task needs 1 or {n} scale values, got {len(vals)}")
    return vals


def check_disabled_actuators(indices: Any, nu: int | None = None) -> tuple[int, ...]:
    """Validate disabled actuator indices; return them sorted and unique.

    Args:
        indices: Actuator indices (integers, or integral floats as JSON may hold them).
        nu: Number of actuators of the model, when known: indices must be below it.

    Raises:
        ValueError: Naming ``disabled_actuators`` and the allowed range.
    """
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable):
        raise ValueError(f"disabled_actuators must be a list of actuator indices, got {indices!r}")
    hi = "inf" if nu is None else str(nu - 1)
    out = set()
    for i in indices:
        if (
            isinstance(i, bool)
            or not isinstance(i, (int, np.integer, float))
            or (isinstance(i, float) and not i.is_integer())
            or i < 0
            or (nu is not None and i >= nu)
        ):
            raise ValueError(
                f"disabled_actuators: index {i!r} out of range; allowed are integers in [0, {hi}]"
            )
        out.add(int(i))
    return tuple(sorted(out))


def check_spec(name: str, spec: ParamSpec | Choice) -> None:
    """Validate that every value a spec can draw is a valid scale of field ``name``.

    Raises:
        ValueError: Naming the field and its allowed range.
    """
    if name in SIGN_FIELDS:
        if not (isinstance(spec, Choice) and all(v in (-1.0, 1.0) for v in spec.values)):
            raise ValueError(
                f"{name} must be a Choice of signs, e.g. Choice((-1.0, 1.0)), got {spec!r}"
            )
        return
    bounds = spec.values if isinstance(spec, Choice) else (spec.low, spec.high)
    bad = [v for v in bounds if not _value_ok(name, v)]
    if bad:
        raise ValueError(
            f"{name}: scales must be finite and in {allowed_range(name)}, got {bad[0]!r} "
            f"in {spec!r}"
        )


def validate_task(task: Any, *, family: str, model: Any, goal_names: Iterable[str]) -> Task:
    """Check that ``task`` belongs to ``family`` and fits ``model``.

    Args:
        task: The candidate task.
        family: The family id of the env.
        model: The env's ``mujoco.MjModel`` (element counts, number of actuators).
        goal_names: The reward parameters the family needs.

    Returns:
        ``task`` itself.

    Raises:
        ValueError: Naming the offending field and the allowed range.
    """
    if not isinstance(task, Task):
        raise ValueError(f"task must be a metarobot Task, got {type(task)!r}")
    if task.family != family:
        raise ValueError(f"task belongs to family {task.family!r}, but this env is {family!r}")
    for name, values in task.scales:
        check_scale_values(name, values, n_elements(model, name))
    check_disabled_actuators(task.disabled_actuators, int(model.nu))
    names, need = {k for k, _ in task.goal}, set(goal_names)
    if names != need:
        raise ValueError(
            f"goal: this family needs goal parameters {sorted(need)}, got {sorted(names)}"
        )
    return task
