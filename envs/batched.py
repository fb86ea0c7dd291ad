"""``BatchedMujocoEnv``: N randomized MuJoCo worlds stepped by one ``mujoco.rollout`` call.

Each world is a real family env (its own ``MjModel`` with its own task, its own ``MjData`` used
for resets). A vector step hands every world's state and model to ``mujoco.rollout`` — one C call
that runs the ``frame_skip`` physics steps of all worlds on a thread pool with the GIL released —
and computes observations, rewards and terminations for the whole batch with numpy (see
:mod:`metarobot.envs.kernels`).

Autoreset: ``"next_step"`` (Gymnasium's default, as in ``SyncVectorEnv``): the step after a world
ends resets it, ignores its action and returns its first observation with reward 0.
``"same_step"``: a world that ends is reset in the same step; its last observation and info are in
``info["final_obs"]`` / ``info["final_info"]`` (masked by ``info["_final_obs"]``).
``"disabled"``: nothing is reset automatically; call ``reset(options={"reset_mask": mask})``.

New tasks: ``reset(options={"tasks": [...]})`` (one per world) or ``{"task": t}`` (all worlds),
or ``set_tasks`` (used from each world's next reset, including autoresets).

Parity: resets run the very code of the single env, so first observations are identical; a step
is identical to ``env.step`` except that ``mujoco.rollout`` cannot return the constraint
solver's warm start, so each step after the first starts the solver from zero instead of the
previous acceleration. Results agree to the solver's tolerance (max |Δobs| ~1e-12 after 10
HalfCheetah steps), and chaotic robots drift apart over long horizons (see DESIGN.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from mujoco import rollout

from metarobot.envs.kernels import make_kernel
from metarobot.envs.randomization import Task
from metarobot.envs.randomized import RandomizedDynamics, find_randomized

__all__ = ["BatchedMujocoEnv", "make_batched"]

_STATE = mujoco.mjtState.mjSTATE_FULLPHYSICS
_MODES = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}


def _make_world(env_id: str, env_kwargs: dict[str, Any]) -> RandomizedDynamics:
    env = gym.make(env_id, disable_env_checker=True, **env_kwargs)
    try:
        return find_randomized(env)
    except ValueError:
        return RandomizedDynamics(env.unwrapped, family=env_id)


class BatchedMujocoEnv(VectorEnv):
    """N worlds of one family, each with its own task, stepped through ``mujoco.rollout``.

    Args:
        env_id: A registered id (a ``metarobot/...`` family, or a plain Gymnasium MuJoCo id whose
            worlds then all run the nominal task).
        tasks: One task per world. ``None`` means ``num_envs`` nominal tasks.
        num_envs: Number of worlds when ``tasks`` is None.
        nthread: Threads of the rollout pool; default: the number of CPU cores.
        chunk_size: Worlds per thread-pool task; default ``max(1, N // (4 · nthread))``
            (fewer, larger chunks than mujoco's default cut the pool's overhead; four chunks per
            thread keep the load balanced across worlds of unequal cost).
        autoreset_mode: ``"next_step"``, ``"same_step"`` or ``"disabled"``.
        max_episode_steps: Time limit; default: the registered one.
        **env_kwargs: Passed to ``gym.make`` for each world.

    Raises:
        ValueError: On an empty or wrong-family task list, a bad count, mode or thread number.
    """

    def __init__(
        self,
        env_id: str,
        tasks: Sequence[Task] | None = None,
        *,
        num_envs: int | None = None,
        nthread: int | None = None,
        chunk_size: int | None = None,
        autoreset_mode: str | AutoresetMode = "next_step",
        max_episode_steps: int | None = None,
        **env_kwargs: Any,
    ) -> None:
        if tasks is None:
            if (
                isinstance(num_envs, bool)
                or not isinstance(num_envs, (int, np.integer))
                or num_envs < 1
            ):
                raise ValueError(
                    f"num_envs must be an integer >= 1 when tasks is None, got {num_envs!r}"
                )
            n = int(num_envs)
        else:
            tasks = list(tasks)
            n = len(tasks)
            if n < 1:
                raise ValueError("tasks must hold at least one task (one per world), got 0")
            if num_envs is not None and num_envs != n:
                raise ValueError(
                    f"num_envs={num_envs!r} does not match len(tasks)={n}; give one task per world"
                )
        mode = (
            {v: k for k, v in _MODES.items()}[autoreset_mode]
            if isinstance(autoreset_mode, AutoresetMode)
            else autoreset_mode
        )
        if mode not in _MODES:
            raise ValueError(
                f"autoreset_mode must be one of {sorted(_MODES)}, got {autoreset_mode!r}"
            )
        if nthread is None:
            nthread = os.cpu_count() or 1
        if isinstance(nthread, bool) or not isinstance(nthread, (int, np.integer)) or nthread < 0:
            raise ValueError(f"nthread must be an integer >= 0, got {nthread!r}")

        self.env_id = env_id
        self.num_envs = n
        self.autoreset_mode = _MODES[mode]
        self.metadata = {"autoreset_mode": self.autoreset_mode}
        self.render_mode = None
        self._worlds: list[RandomizedDynamics] = [_make_world(env_id, env_kwargs) for _ in range(n)]
        if tasks is not None:
            for w, t in zip(self._worlds, tasks, strict=True):
                w.set_task(t)
        first = self._worlds[0]
        base = first.unwrapped
        self.kernel = make_kernel(base)
        self._goal_fn = type(first).goal_reward if first.goal_specs else None
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        spec = gym.spec(env_id)
        self.max_episode_steps = max_episode_steps or spec.max_episode_steps
        self.spec = spec

        m = base.model
        self.frame_skip = int(base.frame_skip)
        self._nq, self._nv, self._nu = m.nq, m.nv, m.nu
        self._nstate = mujoco.mj_stateSize(m, _STATE)
        self._timestep = float(m.opt.timestep)
        self._models = [w.unwrapped.model for w in self._worlds]
        self._nthread = int(nthread)
        if chunk_size is None:
            chunk_size = max(1, n // (4 * max(1, self._nthread)))
        if (
            isinstance(chunk_size, bool)
            or not isinstance(chunk_size, (int, np.integer))
            or chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
        self._chunk = int(chunk_size)
        self._pool = rollout.Rollout(nthread=self._nthread)
        self._datas = [mujoco.MjData(m) for _ in range(max(1, self._nthread))]
        self._state = np.zeros((n, self._nstate))
        self._warm = np.zeros((n, self._nv))
        self._out = np.zeros((n, self.frame_skip, self._nstate))
        self._ctrl = np.zeros((n, self.frame_skip, self._nu))
        self._obs = np.zeros((n, *self.single_observation_space.shape))
        self._elapsed = np.zeros(n, dtype=np.int64)
        self._needs_reset = np.ones(n, dtype=bool)
        self._goal = self._goal_arrays()
        self.closed = False

    # ------------------------------------------------------------------ tasks
    def _goal_arrays(self) -> dict[str, np.ndarray]:
        if self._goal_fn is None:
            return {}
        names = [k for k, _ in self._worlds[0].active_task.goal]
        return {
            k: np.array([w.active_task.goal_value(k) for w in self._worlds], dtype=np.float64)
            for k in names
        }

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """Give each world a task, used from its next reset on.

        Raises:
            ValueError: If ``len(tasks) != num_envs`` or a task is of another family.
        """
        tasks = list(tasks)
        if len(tasks) != self.num_envs:
            raise ValueError(
                f"tasks must hold exactly num_envs={self.num_envs} tasks, got {len(tasks)}"
            )
        for w, t in zip(self._worlds, tasks, strict=True):
            w.validate_task(t)
        for w, t in zip(self._worlds, tasks, strict=True):
            w.set_task(t)

    def get_tasks(self) -> list[Task]:
        """The task of each world (pending for its next reset, else active)."""
        return [w.get_task() for w in self._worlds]

    def sample_tasks(self, n: int, seed: int | None = None, split: str = "train") -> list[Task]:
        """Draw tasks of this family (see ``RandomizedDynamics.sample_tasks``)."""
        return self._worlds[0].sample_tasks(n, seed, split)

    # ------------------------------------------------------------------ resets
    def _reset_world(self, i: int, seed: int | None, task: Task | None) -> dict[str, Any]:
        w = self._worlds[i]
        obs, info = w.reset(seed=seed, options={"task": task} if task is not None else None)
        data = w.unwrapped.data
        mujoco.mj_getState(w.unwrapped.model, data, self._state[i], _STATE)
        self._warm[i] = data.qacc_warmstart
        self._obs[i] = obs
        self._elapsed[i] = 0
        self._needs_reset[i] = False
        return info

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset worlds; world i is seeded with ``seed + i`` (Gymnasium's convention).

        Args:
            seed: An int (world i gets ``seed + i``), a list of per-world seeds, or None.
            options: ``"tasks"`` (one per world), ``"task"`` (for all worlds) and/or
                ``"reset_mask"`` (a boolean array: reset only those worlds).

        Returns:
            Observations ``(N, obs_dim)`` and infos; ``info["task"]`` holds each world's task.

        Raises:
            ValueError: On a wrong number of seeds, tasks or mask entries, or an unknown option.
        """
        options = dict(options or {})
        unknown = set(options) - {"tasks", "task", "reset_mask"}
        if unknown:
            raise ValueError(
                f"unknown reset option(s) {sorted(unknown)}; allowed: tasks, task, reset_mask"
            )
        n = self.num_envs
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(
                    f"seed must be an int or a list of num_envs={n} seeds, got {len(seeds)}"
                )
        tasks: list[Task | None] = [None] * n
        if "tasks" in options:
            tl = list(options["tasks"])
            if len(tl) != n:
                raise ValueError(f"options['tasks'] must hold num_envs={n} tasks, got {len(tl)}")
            tasks = tl
        elif "task" in options:
            tasks = [options["task"]] * n
        for i, t in enumerate(tasks):
            if t is not None:
                self._worlds[i].validate_task(t)
        mask = np.ones(n, dtype=bool)
        if "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
            if mask.shape != (n,):
                raise ValueError(f"options['reset_mask'] must have shape ({n},), got {mask.shape}")
        task_info = np.empty(n, dtype=object)
        for i in np.flatnonzero(mask):
            info = self._reset_world(int(i), seeds[i], tasks[i])
            task_info[i] = info["task"]
        self._goal = self._goal_arrays()
        return self._obs.copy(), {"task": task_info, "_task": mask.copy()}

    # ------------------------------------------------------------------ steps
    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every world by one env step (``frame_skip`` physics steps).

        Args:
            actions: Array of shape ``(num_envs, action_dim)``.

        Returns:
            ``obs, rewards, terminations, truncations, infos`` as Gymnasium vector envs do;
            ``infos["diverged"]`` flags worlds whose simulation diverged this step.

        Raises:
            ValueError: If ``actions`` has the wrong shape or non-finite values.
        """
        actions = np.asarray(actions)
        n = self.num_envs
        if actions.shape != (n, self._nu):
            raise ValueError(f"actions must have shape ({n}, {self._nu}), got {actions.shape}")
        if not np.all(np.isfinite(actions)):
            raise ValueError("actions must be finite (got NaN or inf)")
        resetting = (
            self._needs_reset.copy()
            if self.autoreset_mode is AutoresetMode.NEXT_STEP
            else np.zeros(n, bool)
        )

        old = self._state.copy()
        self._ctrl[:] = actions[:, None, :]
        self._pool.rollout(
            self._models,
            self._datas,
            self._state,
            self._ctrl,
            control_spec=int(mujoco.mjtState.mjSTATE_CTRL),
            skip_checks=True,
            nstep=self.frame_skip,
            initial_warmstart=self._warm,
            state=self._out,
            chunk_size=self._chunk,
        )
        new = self._out[:, -1]
        self._warm[:] = 0.0  # mujoco.rollout does not return the solver warm start
        nq, nv = self._nq, self._nv
        qpos0, qpos1, qvel1 = old[:, 1 : 1 + nq], new[:, 1 : 1 + nq], new[:, 1 + nq : 1 + nq + nv]
        dt_min = old[:, 0] + (self.frame_skip - 0.5) * self._timestep
        diverged = (new[:, 0] < dt_min) | ~np.all(np.isfinite(new), axis=1)

        terms = self.kernel.step_terms(qpos0, qpos1, qvel1, actions)
        if self._goal_fn is not None:
            reward = self._goal_fn(terms, self._goal)
        else:
            reward = np.asarray(terms["reward"], dtype=np.float64)
        terminated = np.asarray(terms["terminated"], dtype=bool).copy()
        obs = self.kernel.observation(qpos1, qvel1)
        diverged |= ~np.all(np.isfinite(obs), axis=1) | ~np.isfinite(reward)
        ok = ~diverged
        self._state[ok] = new[ok]
        self._state[diverged] = old[diverged]
        obs[diverged] = self._obs[diverged]
        reward = np.where(diverged, 0.0, reward)
        terminated &= ok
        self._elapsed += 1
        truncated = diverged | (self._elapsed >= self.max_episode_steps)
        self._obs[:] = obs

        infos: dict[str, Any] = {"diverged": diverged, "_diverged": np.ones(n, dtype=bool)}
        done = terminated | truncated
        if resetting.any():
            for i in np.flatnonzero(resetting):
                self._reset_world(int(i), None, None)
            obs[resetting] = self._obs[resetting]
            reward[resetting] = 0.0
            terminated[resetting] = False
            truncated[resetting] = False
            infos["diverged"] = diverged & ~resetting
            done &= ~resetting
            self._goal = self._goal_arrays()
        if self.autoreset_mode is AutoresetMode.NEXT_STEP:
            self._needs_reset = done.copy()
        elif self.autoreset_mode is AutoresetMode.SAME_STEP and done.any():
            final_obs = np.empty(n, dtype=object)
            final_info = np.empty(n, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = obs[i].copy()
                final_info[i] = {"diverged": bool(diverged[i])}
                self._reset_world(int(i), None, None)
                obs[i] = self._obs[i]
            infos.update(
                final_obs=final_obs,
                _final_obs=done.copy(),
                final_info=final_info,
                _final_info=done.copy(),
            )
            self._goal = self._goal_arrays()
        return obs, reward, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        """Release the thread pool and the worlds."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        for w in self._worlds:
            w.close()


def make_batched(
    env_id: str, tasks: Sequence[Task] | None = None, **kwargs: Any
) -> BatchedMujocoEnv:
    """Make a :class:`BatchedMujocoEnv` (see its arguments)."""
    return BatchedMujocoEnv(env_id, tasks, **kwargs)
