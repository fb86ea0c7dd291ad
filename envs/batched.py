"""``BatchedMujocoEnv``: N randomized MuJoCo worlds stepped together by ``mujoco.batch.Batch``.

Each world is a real env made by ``gym.make(env_id)`` (its own ``MjModel`` with its own task and
its own ``MjData``, used for resets). All worlds also live in one ``mujoco.batch.Batch``: one
simulation per world, whose state row is the world's ``mjSTATE_INTEGRATION`` state (including
the solver's warm start) and whose model fields written by tasks are expanded per simulation
(``RandomizedDynamics.MODEL_FIELDS``, then ``set_const``). A vector step writes the controls,
runs ``frame_skip`` physics steps of every world on the batch's thread pool (one C call, the GIL
released), then computes observations, rewards and episode ends in one of two ways:

- **kernel path** (robots with a kernel, :mod:`metarobot.envs.kernels`): numpy over the whole
  batch, from the bound ``qpos``/``qvel`` rows; no per-world Python.
- **generic path** (any Gymnasium MuJoCo env): each world's own ``step`` runs, with its physics
  call replaced by loading that world's ``MjData`` from the (persistent) batch. Slower, exact
  for any robot and wrapper stack; the kernels are tested against it.

Parity: ``mujoco.batch`` is documented bit-identical to a loop of ``mj_step`` over one
``MjData`` per simulation, resets run the single env's own code, and the state row carries the
warm start, so world i of ``make_batched(id, tasks).reset(seed=s)`` equals ``gym.make(id)`` reset
with seed ``s + i`` and task i, bit for bit, over whole episodes (tested for every family and
for unshipped Gymnasium robots).

Autoreset: ``"next_step"`` (Gymnasium's default, as in ``SyncVectorEnv``): the step after a world
ends resets it, ignores its action and returns its first observation with reward 0.
``"same_step"``: a world that ends is reset in the same step; its last observation and info are in
``info["final_obs"]`` / ``info["final_info"]`` (masked by ``info["_final_obs"]``).
``"disabled"``: nothing is reset automatically; call ``reset(options={"reset_mask": mask})``. A
world whose episode ended is not simulated until it is reset: it repeats its last observation
with reward 0 and no termination or truncation.

New tasks: ``reset(options={"tasks": [...]})`` (one per world) or ``{"task": t}`` (all worlds),
or ``set_tasks`` (used from each world's next reset, including autoresets).

Within-episode changes (``change_step`` / ``hazard`` / ``change_to``, passed to ``gym.make``
like any env keyword): before each vector step every active world runs its own change schedule
(its own counter and generator, so the same draws as the single env); a world whose task
changed gets its model fields re-expanded into the batch and ``set_const``, with its state
kept. ``infos["task_changed"]`` flags those worlds (and ``infos["task"]``, masked by
``infos["_task"]``, holds their new tasks); ``reset(options={"change_to": ...})`` sets the
second task (one for all worlds, or a list with one per world).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from mujoco.batch import Batch

from metarobot.envs.kernels import Kernel
from metarobot.envs.randomization import Task
from metarobot.envs.randomized import RandomizedDynamics
from metarobot.envs.worlds import kernel_for as _kernel_for
from metarobot.envs.worlds import make_world as _make_world
from metarobot.envs.worlds import time_limit as _time_limit

__all__ = ["ENGINES", "BatchedMujocoEnv", "make_batched"]

_STATE = mujoco.mjtState.mjSTATE_INTEGRATION
_MODES = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}
# MuJoCo warnings that mean a simulation diverged (as RandomizedDynamics counts them).
_DIVERGENCE = [
    int(mujoco.mjtWarning.mjWARN_BADQACC),
    int(mujoco.mjtWarning.mjWARN_BADQPOS),
    int(mujoco.mjtWarning.mjWARN_BADQVEL),
]

#: Simulation engines of :func:`make_batched`.
ENGINES: tuple[str, ...] = ("batch", "warp")


def _is_count(v: Any, low: int) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= low


class BatchedMujocoEnv(VectorEnv):
    """N worlds of one family, each with its own task, stepped through ``mujoco.batch.Batch``.

    Args:
        env_id: Any registered id of a Gymnasium MuJoCo env: a family (its env is or wraps a
            ``RandomizedDynamics``), or a plain id whose worlds all run the nominal task.
        tasks: One task per world. ``None`` means ``num_envs`` nominal tasks.
        num_envs: Number of worlds when ``tasks`` is None.
        nthread: Threads of the batch's pool; default (None) or 0: the number of CPU cores.
        autoreset_mode: ``"next_step"``, ``"same_step"`` or ``"disabled"``.
        max_episode_steps: Time limit; default: the registered one (passed to ``gym.make``).
        use_kernel: ``None`` (default): the vectorized kernel when the robot has one and its
            wrapper stack changes nothing a kernel cannot see, else the generic path; ``True``:
            require the kernel; ``False``: always the generic path (each world's own ``step``).
        persistent: Keep one ``MjData`` per world in the batch; default: only on the generic
            path (which reads every field of it); the kernel path reads only states and runs
            faster on shared data.
        **env_kwargs: Passed to ``gym.make`` for each world.

    Raises:
        ValueError: On an empty or wrong-family task list, a bad count, mode or thread number,
            ``use_kernel=True`` for a robot without a kernel, or an env that is not MuJoCo.
    """

    def __init__(
        self,
        env_id: str,
        tasks: Sequence[Task] | None = None,
        *,
        num_envs: int | None = None,
        nthread: int | None = None,
        autoreset_mode: str | AutoresetMode = "next_step",
        max_episode_steps: int | None = None,
        use_kernel: bool | None = None,
        persistent: bool | None = None,
        **env_kwargs: Any,
    ) -> None:
        if tasks is None:
            if not _is_count(num_envs, 1):
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
            nthread = 0
        if not _is_count(nthread, 0):
            raise ValueError(f"nthread must be an integer >= 0 (0: all cores), got {nthread!r}")
        if max_episode_steps is not None and not _is_count(max_episode_steps, 1):
            raise ValueError(
                f"max_episode_steps must be an integer >= 1 or None, got {max_episode_steps!r}"
            )
        if not (use_kernel is None or isinstance(use_kernel, bool)):
            raise ValueError(f"use_kernel must be None, True or False, got {use_kernel!r}")
        if not (persistent is None or isinstance(persistent, bool)):
            raise ValueError(f"persistent must be None, True or False, got {persistent!r}")

        self.env_id = env_id
        self.num_envs = n
        self.autoreset_mode = _MODES[mode]
        self.metadata = {"autoreset_mode": self.autoreset_mode}
        self.render_mode = None
        if max_episode_steps is not None:
            env_kwargs = {**env_kwargs, "max_episode_steps": int(max_episode_steps)}
        made = [_make_world(env_id, env_kwargs) for _ in range(n)]
        self._envs: list[gym.Env] = [e for e, _ in made]
        self._worlds: list[RandomizedDynamics] = [rd for _, rd in made]
        if tasks is not None:
            for w, t in zip(self._worlds, tasks, strict=True):
                w.set_task(t)
        first = self._worlds[0]
        base = first.unwrapped
        if not isinstance(base, MujocoEnv):
            raise ValueError(f"env_id {env_id!r} is not a Gymnasium MuJoCo env")

        kernel = _kernel_for(self._envs[0], first)
        if use_kernel is True and kernel is None:
            raise ValueError(
                f"use_kernel=True, but {env_id!r} has no kernel (robot {type(base).__name__} or "
                "its wrapper stack); use use_kernel=None for the generic path"
            )
        self.kernel: Kernel | None = kernel if use_kernel is not False else None
        self._goal_fn = type(first).goal_reward if first.goal_specs else None
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self.spec = gym.spec(env_id)
        self.max_episode_steps: int | None = _time_limit(self._envs[0])

        m = base.model
        self.frame_skip = int(base.frame_skip)
        self._nu = m.nu
        self._model_fields = tuple(type(first).MODEL_FIELDS)
        if persistent is None:
            persistent = self.kernel is None
        if self.kernel is None and not persistent:
            raise ValueError(
                "persistent=False needs the kernel path: the generic path reads each world's "
                "whole MjData from the batch"
            )
        self._batch = Batch(m, n, int(nthread), persistent=bool(persistent))
        self._rows = {f: self._batch.expand(f) for f in self._model_fields}
        self._qpos = self._batch.bind("qpos")
        self._qvel = self._batch.bind("qvel")
        self._ctrl = self._batch.bind("ctrl")
        self._stage = int(self.kernel.stage) if self.kernel is not None else 0
        self._derived = (
            {f: self._batch.bind(f) for f in self.kernel.derived} if self.kernel is not None else {}
        )
        self._applied: list[Task | None] = [None] * n
        #: Whether the worlds change their task within episodes (the same for every world).
        self.changes_within_episode = bool(first.changes_within_episode)
        self._obs = np.zeros((n, *self.single_observation_space.shape))
        self._elapsed = np.zeros(n, dtype=np.int64)
        self._needs_reset = np.ones(n, dtype=bool)
        #: With autoreset disabled: worlds whose episode ended (not simulated until reset).
        self._ended = np.zeros(n, dtype=bool)
        self._stepping: int | None = None
        self._sim_calls = 0
        self._resync = False
        if self.kernel is None:
            for i, env in enumerate(self._envs):
                self._hook_physics(i, env.unwrapped)
        self._sync(np.arange(n))
        self._goal = self._goal_arrays()
        self.closed = False

    # ------------------------------------------------------------------ accessors
    @property
    def worlds(self) -> tuple[RandomizedDynamics, ...]:
        """The ``RandomizedDynamics`` layer of each world (read-only; world i at index i).

        Their tasks, specs and models are the worlds' own; stepping them directly bypasses the
        batch.
        """
        return tuple(self._worlds)

    @property
    def nthread(self) -> int:
        """Threads of the batch's pool."""
        return int(self._batch.nthread)

    @property
    def persistent(self) -> bool:
        """Whether the batch keeps one ``MjData`` per world."""
        return bool(self._batch.persistent)

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

    # ------------------------------------------------------------------ batch <-> worlds
    def _sync(self, ids: np.ndarray) -> None:
        """Copy worlds' models (when their task changed) and states into the batch."""
        # A batch reset clears the simulations' warning counters, as the worlds' resets did.
        self._batch.reset(ids.astype(np.int32), stage=mujoco.mjtStage.mjSTAGE_NONE)
        changed = [
            int(i)
            for i in ids
            if self._applied[int(i)] is None
            or self._applied[int(i)] != self._worlds[int(i)].active_task
        ]
        self._sync_models(changed)
        for i in ids:
            base = self._worlds[int(i)].unwrapped
            mujoco.mj_getState(base.model, base.data, self._batch.state[int(i)], _STATE)

    def _sync_models(self, ids: Sequence[int]) -> None:
        """Copy the model fields of worlds ``ids`` into the batch and recompute their constants."""
        if not len(ids):
            return
        for i in ids:
            w = self._worlds[i]
            model = w.unwrapped.model
            for f, rows in self._rows.items():
                rows[i] = getattr(model.opt, f[4:]) if f.startswith("opt.") else getattr(model, f)
            self._applied[i] = w.active_task
        self._batch.set_const(np.asarray(ids, dtype=np.int32))

    def _advance_schedules(self, active: np.ndarray) -> np.ndarray:
        """Run each active world's change schedule for this step; apply changes to the batch."""
        changed = np.zeros(self.num_envs, dtype=bool)
        # On the generic path the world's own step runs next and must not count the step again.
        hold = self.kernel is None
        for i in np.flatnonzero(active):
            changed[i] = self._worlds[int(i)].advance_schedule(hold=hold)
        ids = [int(i) for i in np.flatnonzero(changed)]
        if ids:
            self._sync_models(ids)
            self._goal = self._goal_arrays()
        return changed

    def _hook_physics(self, i: int, base: MujocoEnv) -> None:
        """Make world i's own ``step`` take its physics from the batch (generic path)."""
        original = base._step_mujoco_simulation
        frame_skip = self.frame_skip

        def step_from_batch(ctrl: Any, n_frames: int) -> None:
            if self._stepping != i:  # called outside a vector step: plain physics
                original(ctrl, n_frames)
                return
            self._sim_calls += 1
            ctrl64 = np.asarray(ctrl, dtype=np.float64).reshape(-1)
            if (
                self._sim_calls == 1
                and n_frames == frame_skip
                and np.array_equal(ctrl64, self._ctrl[i])
            ):
                self._batch.get_data(i, base.data)
                original(ctrl, 0)  # the env's own post-step code (mj_rnePostConstraint, ...)
            else:
                # The env transformed its action, or simulates twice: the batch's result is
                # discarded and the world's data (still in its pre-step state) steps here.
                original(ctrl, n_frames)
                self._resync = True

        base._step_mujoco_simulation = step_from_batch  # type: ignore[method-assign]

    # ------------------------------------------------------------------ resets
    def _reset_worlds(
        self, ids: np.ndarray, seeds: Sequence[int | None], tasks: Sequence[Task | None]
    ) -> list[dict[str, Any]]:
        infos = []
        for i in ids:
            i = int(i)
            t = tasks[i]
            obs, info = self._envs[i].reset(
                seed=seeds[i], options={"task": t} if t is not None else None
            )
            self._obs[i] = obs
            self._elapsed[i] = 0
            self._needs_reset[i] = False
            self._ended[i] = False
            infos.append(info)
        self._sync(ids)
        self._goal = self._goal_arrays()
        return infos

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset worlds; world i is seeded with ``seed + i`` (Gymnasium's convention).

        Args:
            seed: An int (world i gets ``seed + i``), a list of per-world seeds, or None.
            options: ``"tasks"`` (one per world), ``"task"`` (for all worlds), ``"change_to"``
                (the second task of the change schedule: one for all worlds or a list with one
                per world; kept for later episodes) and/or ``"reset_mask"`` (a boolean array:
                reset only those worlds).

        Returns:
            Observations ``(N, obs_dim)`` and infos; ``info["task"]`` holds each world's task.

        Raises:
            ValueError: On a wrong number of seeds, tasks or mask entries, or an unknown option.
        """
        options = dict(options or {})
        unknown = set(options) - {"tasks", "task", "reset_mask", "change_to"}
        if unknown:
            raise ValueError(
                f"unknown reset option(s) {sorted(unknown)}; allowed: tasks, task, change_to, "
                "reset_mask"
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
        if "change_to" in options:
            to = options["change_to"]
            targets = list(to) if isinstance(to, (list, tuple)) else [to] * n
            if len(targets) != n:
                raise ValueError(
                    f"options['change_to'] must be one value or a list of num_envs={n}, "
                    f"got {len(targets)}"
                )
            for w, t in zip(self._worlds, targets, strict=True):
                w.set_change_to(t)
        ids = np.flatnonzero(mask)
        task_info = np.empty(n, dtype=object)
        for i, info in zip(ids, self._reset_worlds(ids, seeds, tasks), strict=True):
            task_info[i] = info["task"]
        return self._obs.copy(), {"task": task_info, "_task": mask.copy()}

    # ------------------------------------------------------------------ steps
    def _physics(self, active: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Step the active worlds' physics; return which of them diverged."""
        warn = self._batch.warning[:, _DIVERGENCE, 1]
        before = warn.sum(axis=1)
        self._ctrl[active] = actions[active]
        ids = None if active.all() else np.flatnonzero(active).astype(np.int32)
        if ids is None or ids.size:
            self._batch.step(ids, nstep=self.frame_skip, stage=self._stage)
        return (self._batch.warning[:, _DIVERGENCE, 1].sum(axis=1) != before) & active

    def _step_kernel(
        self, active: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        assert self.kernel is not None
        qpos0 = self._qpos.copy()
        diverged = self._physics(active, actions)
        qpos1, qvel1 = self._qpos.copy(), self._qvel.copy()
        derived = {k: v.copy() for k, v in self._derived.items()}
        terms = self.kernel.step_terms(qpos0, qpos1, qvel1, actions, **derived)
        if self._goal_fn is not None:
            reward = np.asarray(self._goal_fn(terms, self._goal), dtype=np.float64)
        else:
            reward = np.asarray(terms["reward"], dtype=np.float64)
        terminated = np.asarray(terms["terminated"], dtype=bool).copy()
        obs = self.kernel.observation(qpos1, qvel1, **derived)
        diverged |= active & (~np.all(np.isfinite(obs), axis=1) | ~np.isfinite(reward))
        obs[diverged] = self._obs[diverged]
        reward = np.where(diverged, 0.0, reward)
        terminated &= ~diverged
        self._elapsed += active
        truncated = diverged.copy()
        if self.max_episode_steps is not None:
            truncated |= self._elapsed >= self.max_episode_steps
        return obs, reward, terminated, truncated, diverged

    def _step_generic(
        self, active: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self._physics(active, actions)
        n = self.num_envs
        obs = self._obs.copy()
        reward = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        diverged = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(active):
            i = int(i)
            self._stepping, self._sim_calls, self._resync = i, 0, False
            try:
                o, r, term, trunc, info = self._envs[i].step(actions[i])
            finally:
                self._stepping = None
            if self._resync or self._sim_calls == 0:
                base = self._envs[i].unwrapped
                mujoco.mj_getState(base.model, base.data, self._batch.state[i], _STATE)
            obs[i], reward[i], terminated[i], truncated[i] = o, r, term, trunc
            diverged[i] = bool(info.get("diverged", False))
        self._elapsed += active
        return obs, reward, terminated, truncated, diverged

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
        # With autoreset disabled a world that ended is not simulated again until it is reset
        # (episodic trainers run batches until their last episode ends: an Ant falling in 40
        # of 200 steps would otherwise cost the whole 200).
        frozen = (
            self._ended.copy()
            if self.autoreset_mode is AutoresetMode.DISABLED
            else np.zeros(n, bool)
        )
        active = ~resetting & ~frozen
        changed = self._advance_schedules(active) if self.changes_within_episode else None
        if self.kernel is not None:
            obs, reward, terminated, truncated, diverged = self._step_kernel(active, actions)
        else:
            obs, reward, terminated, truncated, diverged = self._step_generic(active, actions)
        self._obs[active] = obs[active]

        infos: dict[str, Any] = {"diverged": diverged, "_diverged": np.ones(n, dtype=bool)}
        if changed is not None:
            new_tasks = np.empty(n, dtype=object)
            for i in np.flatnonzero(changed):
                new_tasks[i] = self._worlds[int(i)].active_task
            infos.update(
                task_changed=changed,
                _task_changed=np.ones(n, dtype=bool),
                task=new_tasks,
                _task=changed.copy(),
            )
        if resetting.any():
            ids = np.flatnonzero(resetting)
            self._reset_worlds(ids, [None] * n, [None] * n)
            obs[resetting] = self._obs[resetting]
            reward[resetting] = 0.0
            terminated[resetting] = False
            truncated[resetting] = False
        if frozen.any():  # an ended world repeats its last observation, with no new event
            obs[frozen] = self._obs[frozen]
            reward[frozen] = 0.0
            terminated[frozen] = truncated[frozen] = diverged[frozen] = False
        done = terminated | truncated
        if self.autoreset_mode is AutoresetMode.DISABLED:
            self._ended |= done
        if self.autoreset_mode is AutoresetMode.NEXT_STEP:
            self._needs_reset = done.copy()
        elif self.autoreset_mode is AutoresetMode.SAME_STEP and done.any():
            final_obs = np.empty(n, dtype=object)
            final_info = np.empty(n, dtype=object)
            ids = np.flatnonzero(done)
            for i in ids:
                final_obs[i] = obs[i].copy()
                final_info[i] = {"diverged": bool(diverged[i])}
            self._reset_worlds(ids, [None] * n, [None] * n)
            obs[done] = self._obs[done]
            infos.update(
                final_obs=final_obs,
                _final_obs=done.copy(),
                final_info=final_info,
                _final_info=done.copy(),
            )
        return obs, reward, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        """Release the worlds (the batch goes with the env)."""
        for env in self._envs:
            env.close()


def make_batched(
    env_id: str,
    tasks: Sequence[Task] | None = None,
    *,
    engine: str = "batch",
    device: str | None = None,
    **kwargs: Any,
) -> VectorEnv:
    """N worlds of ``env_id``, one task each, as one Gymnasium ``VectorEnv``.

    Args:
        env_id: A registered id (see :class:`BatchedMujocoEnv`).
        tasks: One task per world (or None with ``num_envs=``).
        engine: ``"batch"``: :class:`BatchedMujocoEnv` on ``mujoco.batch`` (CPU, bit-identical
            to ``gym.make``); ``"warp"``: ``metarobot.envs.warp.WarpBatchedEnv`` on MuJoCo Warp
            (GPU, or Warp's CPU device).
        device: The Warp device (``"cuda:0"``, ``"cpu"``); for ``engine="batch"`` only None or
            ``"cpu"``.
        **kwargs: The engine's arguments (``num_envs``, ``nthread``, ``autoreset_mode``,
            ``max_episode_steps``, ...) and ``gym.make`` keywords for each world.

    Returns:
        The vector env.

    Raises:
        ValueError: On an unknown engine, or a device the engine cannot use.
    """
    if engine == "batch":
        if device not in (None, "cpu"):
            raise ValueError(
                f"device must be None or 'cpu' for engine='batch' (mujoco.batch runs on CPU "
                f"threads), got {device!r}; use engine='warp' for a GPU"
            )
        return BatchedMujocoEnv(env_id, tasks, **kwargs)
    if engine == "warp":
        from metarobot.envs.warp import WarpBatchedEnv  # lazy: mujoco-warp is an optional extra

        if device is not None:
            kwargs["device"] = device
        # CPU thread count means nothing to the Warp engine: callers may pass it to either.
        kwargs.pop("nthread", None)
        return WarpBatchedEnv(env_id, tasks, **kwargs)
    raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
