"""HalfCheetah with a random subset of its motors wired in reverse (actuator inversion)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metarobot.envs.families._base import Family, FixedMassHalfCheetahEnv, change_options
from metarobot.envs.randomization import Choice, LogUniform

__all__ = ["HalfCheetahReversed", "HalfCheetahReversedIID", "ReversedMotors"]


@dataclass(frozen=True)
class ReversedMotors(Choice):
    """Per-motor polarity: a random subset of motors wired in reverse.

    Each motor is reversed independently with probability ``probability``, conditioned on the
    number of reversed motors lying in ``counts``.

    :class:`~metarobot.envs.randomization.Choice` draws one sign shared by every actuator; this
    spec draws one sign per actuator (a vector of ±1 of length ``nu``), which ``Task``,
    ``RandomizedDynamics`` and the batched simulator already accept for ``actuator_direction``.
    Conditioning on ``counts`` is what makes an out-of-distribution split possible (train on at
    most two reversed motors, test on three). The draw is exact, with no rejection loop: the
    count ``k`` is drawn with probability proportional to ``C(n, k) p^k (1 − p)^(n − k)`` over
    ``counts``, then ``k`` distinct motors uniformly.

    Attributes:
        values: The signs, always ``(-1.0, 1.0)`` (kept for ``Choice`` compatibility).
        name: Parameter name used in error messages.
        probability: Probability that one motor is reversed, in (0, 1).
        counts: Allowed numbers of reversed motors, each an integer >= 0.
    """

    values: tuple[float, ...] = (-1.0, 1.0)
    name: str = field(default="actuator_direction", compare=False)
    probability: float = 0.5
    counts: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        super().__post_init__()
        if set(self.values) != {-1.0, 1.0}:
            raise ValueError(f"{self.name}: values must be (-1.0, 1.0), got {self.values!r}")
        try:
            p = float(self.probability)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{self.name}.probability must be a number in (0, 1), got {self.probability!r}"
            ) from err
        if not (math.isfinite(p) and 0.0 < p < 1.0):
            raise ValueError(
                f"{self.name}.probability must be a number in (0, 1), got {self.probability!r}"
            )
        counts = tuple(self.counts) if not isinstance(self.counts, (str, bytes)) else ()
        if not counts or any(
            isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0 for k in counts
        ):
            raise ValueError(
                f"{self.name}.counts must be a non-empty tuple of integers >= 0, "
                f"got {self.counts!r}"
            )
        object.__setattr__(self, "probability", p)
        object.__setattr__(self, "counts", tuple(sorted({int(k) for k in counts})))

    def named(self, name: str) -> ReversedMotors:
        """Return a copy whose error messages use ``name``."""
        return dataclasses.replace(self, name=name)

    def count_probabilities(self, n_elements: int) -> np.ndarray:
        """Probability of each entry of ``counts`` for a model with ``n_elements`` motors.

        Raises:
            ValueError: If a count exceeds ``n_elements``.
        """
        if max(self.counts) > n_elements:
            raise ValueError(
                f"{self.name}.counts must lie in [0, {n_elements}] for a model with "
                f"{n_elements} actuators, got {self.counts!r}"
            )
        p = self.probability
        w = np.array(
            [math.comb(n_elements, k) * p**k * (1.0 - p) ** (n_elements - k) for k in self.counts]
        )
        return w / w.sum()

    def sample(self, rng: np.random.Generator, n_elements: int = 1) -> np.ndarray:
        """Draw one sign per motor: -1 for a reversed motor, +1 for a normal one.

        Args:
            rng: The generator every draw goes through.
            n_elements: Number of actuators.

        Returns:
            A float64 array of length ``n_elements`` holding -1.0 and +1.0.
        """
        probs = self.count_probabilities(n_elements)
        k = self.counts[int(rng.choice(len(self.counts), p=probs))]
        signs = np.ones(n_elements, dtype=np.float64)
        signs[rng.choice(n_elements, size=k, replace=False)] = -1.0
        return signs

    def contains(self, values: Any) -> bool:
        """Whether ``values`` are signs whose number of -1 entries is an allowed count."""
        vals = [float(v) for v in values]
        return all(v in (-1.0, 1.0) for v in vals) and vals.count(-1.0) in self.counts


class HalfCheetahReversed(Family):
    """HalfCheetah with a random subset of its six motors wired in reverse.

    ## Description
    Gymnasium's ``HalfCheetah-v5`` in which each motor may be wired in reverse: the sign of its
    gear is flipped, so the same action pushes its joint the other way. Every motor is reversed
    independently with probability 1/4, conditioned on the number of reversed motors: training
    tasks reverse at most two motors, test tasks reverse exactly three, so every test task is a
    wiring never seen in training (an out-of-distribution split). A reactive policy cannot serve
    every wiring at once — the right torque for a joint depends on its polarity — so the
    polarity has to be inferred from a few steps of experience. Body masses get a mild shared
    scale so that tasks with the same wiring are still distinct.

    ## Randomized parameters
    | parameter | train | test | elements |
    |---|---|---|---|
    | actuator direction | each −1 w.p. 1/4, given ≤ 2 reversed | 3 reversed | per actuator |
    | body mass and inertia | U_log[0.8, 1.25] | same | shared |

    The number of reversed motors in a training task is 0, 1 or 2 with probabilities
    ≈ 0.21, 0.43, 0.36; given the number, the reversed motors are a uniform subset.

    ## Observation / Action
    As HalfCheetah-v5: 17-dim ``(qpos[1:], qvel)``; 6 torques in [-1, 1] (the polarity is not
    observed).

    ## Reward
    HalfCheetah-v5's: forward velocity − 0.1·|a|².

    ## Episode end
    Truncated after 200 steps, or on divergence (``info["diverged"]``).

    ## Version history
    - v0: initial release (Gymnasium HalfCheetah-v5).
    """

    ID = "metarobot/HalfCheetahReversed-v0"
    HORIZON = 200
    #: Probability that one motor is reversed (before conditioning on the count).
    REVERSE_PROBABILITY = 0.25
    #: Numbers of reversed motors in training tasks.
    TRAIN_COUNTS: tuple[int, ...] = (0, 1, 2)
    #: Numbers of reversed motors in test tasks (None: drawn as in training).
    TEST_COUNTS: tuple[int, ...] | None = (3,)

    def __init__(self, resample_on_reset: bool = False, **kwargs: Any) -> None:
        p = self.REVERSE_PROBABILITY
        test = self.TEST_COUNTS
        change, env_kwargs = change_options(kwargs)
        super().__init__(
            FixedMassHalfCheetahEnv(**env_kwargs),
            resample_on_reset=resample_on_reset,
            **change,
            body_mass=LogUniform(0.8, 1.25),
            actuator_direction=ReversedMotors(probability=p, counts=self.TRAIN_COUNTS),
            test_overrides=(
                None
                if test is None
                else {"actuator_direction": ReversedMotors(probability=p, counts=test)}
            ),
        )


class HalfCheetahReversedIID(HalfCheetahReversed):
    """HalfCheetahReversed with an in-distribution test split.

    ## Description
    The same robot and training distribution as
    :class:`HalfCheetahReversed`: each of the six motors is wired in reverse with probability
    1/4, given that at most two are. Here the test tasks are drawn from that same distribution
    (new body-mass draws, wirings of at most two reversed motors), so this family asks whether a
    policy can infer a wiring of the kind it trained on; ``HalfCheetahReversed`` asks whether it
    can infer a wiring it has never seen (three reversed motors).

    ## Randomized parameters
    | parameter | train and test | elements |
    |---|---|---|
    | actuator direction | each −1 w.p. 1/4, given ≤ 2 reversed | per actuator |
    | body mass and inertia | U_log[0.8, 1.25] | shared |

    ## Observation / Action
    As HalfCheetah-v5: 17-dim ``(qpos[1:], qvel)``; 6 torques in [-1, 1] (the polarity is not
    observed).

    ## Reward
    HalfCheetah-v5's: forward velocity − 0.1·|a|².

    ## Episode end
    Truncated after 200 steps, or on divergence (``info["diverged"]``).

    ## Version history
    - v0: initial release (Gymnasium HalfCheetah-v5).
    """

    ID = "metarobot/HalfCheetahReversedIID-v0"
    TEST_COUNTS = None
