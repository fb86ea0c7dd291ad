"""On the smallest reversed-motor problem, memory is what a policy needs (any training seed).

The slider (``tests/slider_family.py``) starts every episode in the same state, and its motor
is wired backwards in half of the tasks: a policy that sees only the current observation must
push the same way in both, and goes backwards in one of them. A recurrent policy sees its last
action and the velocity it produced, so it can tell after one step.
"""

from __future__ import annotations

import numpy as np
import pytest
import slider_family  # tests/ is on sys.path under pytest's default import mode

import metarobot.envs as me
from metarobot import baselines
from metarobot.evaluation import evaluation_returns
from metarobot.ppo import PPOSettings
from metarobot.recurrent import train_recurrent

ENV = slider_family.ENV_ID
STEPS = 20_000  # the same env-step budget for both policies


def _direction(task: me.Task) -> float:
    return float(dict(task.scales)["actuator_direction"][0])


@pytest.fixture(scope="module")
def split() -> tuple[list[me.Task], list[me.Task]]:
    train, test = me.task_split(ENV)
    assert {_direction(t) for t in test} == {-1.0, 1.0}  # both polarities are held out
    return train, test


@pytest.mark.slow
# The verdict must not hinge on one lucky seed: checked locally on seeds 0-4 (worst recurrent
# return 9.25 against the bound 5; the history-free policy's worse polarity at most -1.31).
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_history_free_policy_fails_where_the_recurrent_policy_succeeds(split, seed):
    train, test = split
    free = baselines.train_domain_randomization(ENV, STEPS, seed=seed, tasks=train, nthread=1)
    rec = train_recurrent(
        ENV,
        steps=STEPS,
        seed=seed,
        tasks=train,
        n_envs=32,
        nthread=1,
        hidden=16,
        init_log_std=-0.5,
        # Returns of ~15 need no reward scaling; these settings learn both polarities by 20k.
        settings=PPOSettings(
            lr=0.01, epochs=8, minibatches=4, batch_steps=800, scale_rewards=False
        ),
    )
    r_free = evaluation_returns([free] * len(test), ENV, test, episodes=2, seed=0, nthread=1)
    r_rec = evaluation_returns([rec] * len(test), ENV, test, episodes=2, seed=0, nthread=1)
    reversed_ = np.array([_direction(t) < 0 for t in test])
    # A history-free policy serves one polarity and goes nowhere (or backwards) in the other.
    worst_free = min(r_free[reversed_].mean(), r_free[~reversed_].mean())
    assert worst_free < 1.0
    # The recurrent policy moves forward in every held-out task, whichever way its motor turns.
    assert r_rec.min() > 5.0
    assert r_rec.mean() > r_free.mean() + 4.0
