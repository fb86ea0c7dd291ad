"""One place for argument checks: errors name the parameter and its allowed range."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["check_float", "check_int"]


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``.

    Raises:
        ValueError: If it is not an integer (bools are refused) or out of range.
    """
    rng = f"[{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
    return int(value)


def check_float(
    name: str, value: Any, low: float = 0.0, high: float = math.inf, low_open: bool = True
) -> float:
    """``value`` as a finite float in ``(low, high]`` (or ``[low, high]`` when not ``low_open``).

    Raises:
        ValueError: If it is not a finite real number in range.
    """
    bracket = "(" if low_open else "["
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    if not ok or not math.isfinite(v) or v > high or (v <= low if low_open else v < low):
        raise ValueError(
            f"{name} must be a finite number in {bracket}{low}, {high}], got {value!r}"
        )
    return v
