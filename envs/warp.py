"""``WarpBatchedEnv``: N randomized MuJoCo worlds stepped by MuJoCo Warp, on a GPU or on the CPU.

The same vector env as :class:`metarobot.envs.batched.BatchedMujocoEnv` (tasks, seeds, the three
autoreset modes, ``info["diverged"]``), with the physics of every world in one MuJoCo Warp
``Data`` on a Warp device (``"cuda"`` or Warp's ``"cpu"`` device, which needs no GPU).

Tasks: the model is put on the device with per-world copies (``batch_sizes``) of every field a
task writes (masses, inertias, friction, damping, gravity, actuator gear and gains) and of the
constants derived from them; when a world's task changes its fields are uploaded and MuJoCo
Warp's ``set_const`` recomputes the derived constants (subtree masses, ``body_invweight0``,
``dof_invweight0``, ``actuator_acc0``) on the device, as the CPU path does with ``mj_setConst``.
The absolute field values come from the family env's own task code (``RandomizedDynamics``), run
on one host copy of the env, so both engines write the very same numbers.

Resets: initial states are computed on the host by the family env's own reset code (one host env
serves every world; each world keeps its own random generator, so world i seeded with ``s + i``
starts exactly as ``gym.make(env_id)`` reset with that seed and task) and uploaded.

Steps: actions are copied into ``ctrl``, ``frame_skip`` MuJoCo Warp steps run on the device
(replayed as one captured CUDA graph on a GPU; that path has not run on a GPU yet), and
observations, rewards and terminations are computed from ``wp.to_torch`` views of
``qpos``/``qvel`` by torch ports of :mod:`metarobot.envs.kernels`. Observations, rewards and
flags are float32/bool torch tensors on the device (``as_torch=True``) or float64/bool numpy
arrays (``as_torch=False``). Per step the host reads one small vector of done flags (to run
resets); reward-varying families (``goal_reward``) also move their four reward terms through
the host, since their rewards are written in numpy.

Precision: MuJoCo Warp computes in float32; on Warp's CPU device, mass-randomized worlds agree
with the CPU engine (float64) to 1e-3 relative over 50 steps for every robot with a kernel but
Ant (tests/test_warp.py): MuJoCo Warp 4.0.0 orients the pyramidal friction frame of a steep
capsule-plane contact differently from MuJoCo, so Ant's feet get other friction forces from
their first such contact on.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch

try:
    import mujoco_warp as mjw
    import warp as wp
except ImportError as err:  # an optional extra: say how to get it
    raise ImportError(
        "the Warp engine needs MuJoCo Warp: pip install 'metarobot[gpu]' (mujoco-warp, warp-lang)"
    ) from err
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from metarobot.envs.kernels import (
    AntKernel,
    HalfCheetahKernel,
    InvertedPendulumKernel,
    Kernel,
    ReacherKernel,
    SwimmerKernel,
    _HealthyKernel,
    supported_robots,
)
from metarobot.envs.randomization import Task
from metarobot.envs.randomized import RandomizedDynamics
from metarobot.envs.worlds import kernel_for as _kernel_for
from metarobot.envs.worlds import make_world as _make_world
from metarobot.envs.worlds import time_limit as _time_limit

__all__ = ["TorchKernel", "WarpBatchedEnv", "resolve_device"]

_MODES = {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}

#: Constants ``set_const`` derives from the task fields; per world too, so each world keeps its own.
DERIVED_FIELDS: tuple[str, ...] = (
    "body_subtreemass",
    "body_invweight0",
    "dof_invweight0",
    "actuator_acc0",
    "tendon_invweight0",
    "cam_poscom0",
    "light_poscom0",
)

_DEVICE_RE = re.compile(r"cpu|cuda(:\d+)?")


def resolve_device(device: str | torch.device | None) -> str:
    """The Warp device name for ``device``.

    Args:
        device: ``"cpu"`` (Warp's CPU device), ``"cuda"`` / ``"cuda:N"``, or None (the first
            GPU when Warp sees one, else the CPU).

    Returns:
        ``"cpu"`` or ``"cuda:N"``.

    Raises:
        ValueError: On another value, or a CUDA device this machine does not have.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device is None:
        return "cuda:0" if wp.get_cuda_device_count() > 0 else "cpu"
    if not isinstance(device, str) or not _DEVICE_RE.fullmatch(device):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N' (or None), got {device!r}")
    if device == "cpu":
        return "cpu"
    count = wp.get_cuda_device_count()
    if count == 0:
        raise ValueError(
            f"device={device!r}: Warp finds no CUDA device on this machine (no NVIDIA GPU or "
            "driver); use device='cpu' (Warp's CPU device) or the CPU engine (engine='batch')"
        )
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= count:
        raise ValueError(
            f"device={device!r}: allowed CUDA devices on this machine are cuda:0 … cuda:{count - 1}"
        )
    return f"cuda:{index}"


# ---------------------------------------------------------------------- kernels
class TorchKernel:
    """Torch port of a :class:`metarobot.envs.kernels.Kernel` (same constants, same formulas).

    Works on float32 tensors of any device; every robot of :func:`make_kernel` is supported.

    Args:
        kernel: The numpy kernel of the robot (read for its constants).
        model: The robot's model (read for the Reacher's link geometry).
        device: Torch device of the tensors.

    Raises:
        ValueError: If the kernel has no torch port.
    """

    def __init__(self, kernel: Kernel, model: mujoco.MjModel, device: torch.device) -> None:
        self.kernel = kernel
        self.dt = kernel.dt
        self.device = device
        k = kernel
        if type(k) in (HalfCheetahKernel, SwimmerKernel):
            self.kind = "forward"
        elif type(k) is _HealthyKernel:
            self.kind = "healthy"
            self._state_range = k.state_range
        elif type(k) is AntKernel:
            self.kind = "ant"
        elif type(k) is InvertedPendulumKernel:
            self.kind = "pendulum"
        elif type(k) is ReacherKernel:
            self.kind = "reacher"

            def t(x: np.ndarray) -> torch.Tensor:
                return torch.as_tensor(np.asarray(x), dtype=torch.float32, device=device)

            # The fingertip and target positions the numpy kernel reads from ``xpos`` at the
            # final state: planar forward kinematics of the two links and the target's slides.
            m = model
            self._p0, self._p1 = t(m.body("body0").pos), t(m.body("body1").pos)
            self._p2 = t(m.body("fingertip").pos)
            target = m.body("target")
            self._target = t(target.pos)
            self._target_joints = [
                (int(m.jnt_qposadr[j]), float(m.qpos0[m.jnt_qposadr[j]]), t(m.jnt_axis[j]))
                for j in range(target.jntadr[0], target.jntadr[0] + target.jntnum[0])
            ]
        else:
            raise ValueError(
                f"the Warp engine has no torch port of {type(k).__name__}; ported kernels: "
                "HalfCheetah, Swimmer, Hopper, Walker2d, Ant, InvertedPendulum, Reacher"
            )
        if kernel.stage != int(mujoco.mjtStage.mjSTAGE_NONE) and self.kind != "reacher":
            raise ValueError(
                f"{type(k).__name__} reads derived data {kernel.derived}; the Warp engine has no "
                "port of it"
            )

    # -- observations
    def observation(self, qpos: torch.Tensor, qvel: torch.Tensor) -> torch.Tensor:
        """Observations ``(N, obs_dim)`` from ``(N, nq)`` and ``(N, nv)``."""
        k = self.kernel
        if self.kind in ("forward", "ant"):
            return torch.cat([qpos[:, k.skip :], qvel], dim=1)
        if self.kind == "healthy":
            return torch.cat([qpos[:, k.skip :], qvel.clamp(-10.0, 10.0)], dim=1)
        if self.kind == "pendulum":
            return torch.cat([qpos, qvel], dim=1)
        theta = qpos[:, :2]
        vec = self._reacher_vec(qpos)
        return torch.cat([theta.cos(), theta.sin(), qpos[:, 2:], qvel[:, :2], vec[:, :2]], dim=1)

    def _reacher_vec(self, qpos: torch.Tensor) -> torch.Tensor:
        a0, a01 = qpos[:, 0], qpos[:, 0] + qpos[:, 1]

        def rot(v: torch.Tensor, ang: torch.Tensor) -> torch.Tensor:
            c, s = ang.cos(), ang.sin()
            return torch.stack([c * v[0] - s * v[1], s * v[0] + c * v[1], v[2].expand_as(ang)], 1)

        tip = self._p0 + rot(self._p1, a0) + rot(self._p2, a01)
        target = self._target.expand(qpos.shape[0], 3)
        for adr, q0, axis in self._target_joints:
            target = target + (qpos[:, adr] - q0)[:, None] * axis
        return tip - target

    # -- rewards
    def step_terms(
        self,
        qpos0: torch.Tensor,
        qpos1: torch.Tensor,
        qvel1: torch.Tensor,
        action: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Reward terms of a step, as :meth:`metarobot.envs.kernels.Kernel.step_terms`."""
        k: Any = self.kernel
        n = qpos1.shape[0]
        zeros = torch.zeros(n, dtype=qpos1.dtype, device=qpos1.device)
        ones = torch.ones_like(zeros)
        ctrl_sq = action.square().sum(dim=1)
        never = torch.zeros(n, dtype=torch.bool, device=qpos1.device)
        if self.kind in ("forward", "healthy"):
            xv = (qpos1[:, 0] - qpos0[:, 0]) / self.dt
            t = {"x_velocity": xv, "y_velocity": zeros, "ctrl_sq": ctrl_sq}
            if self.kind == "forward":
                t["healthy"], t["terminated"] = ones, never
                t["reward"] = k.fw * xv - k.ctrl_w * ctrl_sq
                return t
            h = self._healthy(qpos1, qvel1)
            t["healthy"] = h.to(qpos1.dtype)
            t["terminated"] = ~h & k.terminate
            t["reward"] = k.fw * xv + k.healthy_reward * t["healthy"] - k.ctrl_w * ctrl_sq
            return t
        if self.kind == "ant":
            vel = (qpos1[:, :2] - qpos0[:, :2]) / self.dt  # torso xpos == free-joint qpos
            finite = torch.isfinite(qpos1).all(dim=1) & torch.isfinite(qvel1).all(dim=1)
            z = qpos1[:, 2]
            h = finite & (k.z_range[0] <= z) & (z <= k.z_range[1])
            hf = h.to(qpos1.dtype)
            return {
                "x_velocity": vel[:, 0],
                "y_velocity": vel[:, 1],
                "ctrl_sq": ctrl_sq,
                "healthy": hf,
                "terminated": ~h & k.terminate,
                "reward": k.fw * vel[:, 0] + k.healthy_reward * hf - k.ctrl_w * ctrl_sq,
            }
        if self.kind == "pendulum":
            obs = self.observation(qpos1, qvel1)
            term = ~torch.isfinite(obs).all(dim=1) | (obs[:, 1].abs() > 0.2)
            alive = (~term).to(qpos1.dtype)
            return {
                "x_velocity": zeros,
                "y_velocity": zeros,
                "ctrl_sq": ctrl_sq,
                "healthy": alive,
                "terminated": term,
                "reward": alive,
            }
        dist = torch.linalg.vector_norm(self._reacher_vec(qpos1), dim=1)
        return {
            "x_velocity": zeros,
            "y_velocity": zeros,
            "ctrl_sq": ctrl_sq,
            "healthy": ones,
            "terminated": never,
            "reward": -dist * k.w_dist - ctrl_sq * k.w_ctrl,
        }

    def _healthy(self, qpos: torch.Tensor, qvel: torch.Tensor) -> torch.Tensor:
        k: Any = self.kernel
        z, angle = qpos[:, 1], qpos[:, 2]
        ok = (k.z_range[0] < z) & (z < k.z_range[1])
        ok &= (k.angle_range[0] < angle) & (angle < k.angle_range[1])
        if self._state_range is not None:
            state = torch.cat([qpos, qvel], dim=1)[:, 2:]
            lo, hi = self._state_range
            ok &= ((lo < state) & (state < hi)).all(dim=1)
        return ok


# ---------------------------------------------------------------------- the env
class WarpBatchedEnv(VectorEnv):
    """N worlds of one family, each with its own task, stepped by MuJoCo Warp on one device.

    Args:
        env_id: A registered id (a ``metarobot/...`` family, or a plain Gymnasium MuJoCo id whose
            worlds then all run the nominal task).
        tasks: One task per world. ``None`` means ``num_envs`` nominal tasks.
        num_envs: Number of worlds when ``tasks`` is None.
        device: ``"cpu"`` (Warp's CPU device: no GPU needed), ``"cuda"`` / ``"cuda:N"``, or None
            (a GPU when Warp sees one, else the CPU).
        autoreset_mode: ``"next_step"``, ``"same_step"`` or ``"disabled"``.
        max_episode_steps: Time limit; default: the registered one (passed to ``gym.make``).
        as_torch: Return torch tensors on the device (float32 observations and rewards); False:
            numpy arrays on the host (float64), as the CPU engine.
        nconmax: Contacts allocated per world (MuJoCo Warp's ``make_data``); default: its guess.
        njmax: Constraint rows allocated per world; default: MuJoCo Warp's guess.
        cuda_graph: Replay the ``frame_skip`` physics steps as one captured CUDA graph (CUDA
            devices only; ignored on the CPU).
        **env_kwargs: Passed to ``gym.make`` for the host env.

    Raises:
        ValueError: On an empty or wrong-family task list, a bad count, mode or device, a robot
            without a vectorized kernel, ``resample_on_reset=True`` (give tasks explicitly), or
            a within-episode change schedule (``change_step``, ``hazard``).
    """

    def __init__(
        self,
        env_id: str,
        tasks: Sequence[Task] | None = None,
        *,
        num_envs: int | None = None,
        device: str | torch.device | None = None,
        autoreset_mode: str | AutoresetMode = "next_step",
        max_episode_steps: int | None = None,
        as_torch: bool = True,
        nconmax: int | None = None,
        njmax: int | None = None,
        cuda_graph: bool = True,
        **env_kwargs: Any,
    ) -> None:
        n = self._check_count(tasks, num_envs)
        tasks = None if tasks is None else list(tasks)
        mode = (
            {v: k for k, v in _MODES.items()}[autoreset_mode]
            if isinstance(autoreset_mode, AutoresetMode)
            else autoreset_mode
        )
        if mode not in _MODES:
            raise ValueError(
                f"autoreset_mode must be one of {sorted(_MODES)}, got {autoreset_mode!r}"
            )
        if env_kwargs.get("resample_on_reset"):
            raise ValueError(
                "resample_on_reset=True is not supported by the Warp engine; draw tasks with "
                "sample_tasks and give them with set_tasks or reset(options={'tasks': ...})"
            )
        for name, value in (("nconmax", nconmax), ("njmax", njmax)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0
            ):
                raise ValueError(f"{name} must be an integer >= 0 or None, got {value!r}")
        if max_episode_steps is not None and (
            isinstance(max_episode_steps, bool)
            or not isinstance(max_episode_steps, (int, np.integer))
            or max_episode_steps < 1
        ):
            raise ValueError(
                f"max_episode_steps must be an integer >= 1 or None, got {max_episode_steps!r}"
            )
        self.device = resolve_device(device)
        self.torch_device = torch.device(self.device)
        self.as_torch = bool(as_torch)

        self.env_id = env_id
        self.num_envs = n
        self.autoreset_mode = _MODES[mode]
        self.metadata = {"autoreset_mode": self.autoreset_mode}
        self.render_mode = None
        if max_episode_steps is not None:
            env_kwargs = {**env_kwargs, "max_episode_steps": int(max_episode_steps)}
        # One host env runs every world's reset (the family's own code); see _host_reset.
        self._env, self._host = _make_world(env_id, env_kwargs)
        host = self._host
        if host.changes_within_episode:
            sched = host.change_schedule
            self._env.close()
            raise ValueError(
                f"change_step={sched['change_step']!r}, hazard={sched['hazard']!r}: the Warp "
                "engine does not support tasks that change within an episode; use "
                "engine='batch'"
            )
        base = host.unwrapped
        kernel = _kernel_for(self._env, host)
        if kernel is None:
            raise ValueError(
                f"env_id {env_id!r} has no vectorized kernel (robot {type(base).__name__} or its "
                f"wrapper stack), which the Warp engine needs; robots with one are "
                f"{supported_robots()}; use engine='batch' for any other robot"
            )
        self.kernel = TorchKernel(kernel, base.model, self.torch_device)
        self._goal_fn = type(host).goal_reward if host.goal_specs else None
        self.single_observation_space = host.observation_space
        self.single_action_space = host.action_space
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self.spec = gym.spec(env_id)
        self.max_episode_steps: int | None = _time_limit(self._env)

        # Per-world task bookkeeping (the host env holds only the world being reset).
        nominal = host.nominal_task()
        self._active: list[Task] = [nominal] * n
        self._pending: list[Task | None] = [None] * n
        if tasks is not None:
            for t in tasks:
                host.validate_task(t)
            self._pending = list(tasks)
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._uploaded: list[Task | None] = [None] * n

        mjm = base.model
        self._env.reset(seed=0, options={"task": nominal})  # a nominal host model
        self.frame_skip = int(base.frame_skip)
        self._nq, self._nv, self._nu, self._na = mjm.nq, mjm.nv, mjm.nu, mjm.na
        self._wp_device = wp.get_device(self.device)
        with wp.ScopedDevice(self._wp_device):
            # The fields tasks write (RandomizedDynamics.MODEL_FIELDS) and the constants
            # derived from them get one copy per world; options (opt.gravity) are batched by
            # replacing the option's array with one row per world.
            self._task_fields = tuple(type(host).MODEL_FIELDS)
            model_fields = [f for f in self._task_fields if not f.startswith("opt.")]
            sizes = {f: n for f in (*model_fields, *DERIVED_FIELDS)}
            self.model = mjw.put_model(mjm, batch_sizes=sizes)
            for f in self._task_fields:
                if f.startswith("opt."):
                    one = getattr(self.model.opt, f[4:])
                    rows = np.repeat(one.numpy()[:1], n, axis=0)
                    setattr(self.model.opt, f[4:], wp.array(rows, dtype=one.dtype))
            self.data = mjw.make_data(mjm, nworld=n, nconmax=nconmax, njmax=njmax)
        self._fields = {f: wp.to_torch(self._model_array(f)) for f in self._task_fields}
        d = self.data
        self._qpos = wp.to_torch(d.qpos)
        self._qvel = wp.to_torch(d.qvel)
        self._ctrl = wp.to_torch(d.ctrl)
        self._warm = wp.to_torch(d.qacc_warmstart)
        self._time = wp.to_torch(d.time)
        self._act = wp.to_torch(d.act) if self._na else None
        self._graph: Any = None
        self._use_graph = bool(cuda_graph) and self._wp_device.is_cuda
        self._stepped_once = False
        tdev = self.torch_device
        self._obs = self.kernel.observation(self._qpos, self._qvel).clone()
        self._elapsed = torch.zeros(n, dtype=torch.int64, device=tdev)
        self._needs_reset = np.ones(n, dtype=bool)
        self._goal = self._goal_arrays()
        self.closed = False

    @property
    def host_env(self) -> RandomizedDynamics:
        """The host copy of the robot (its spaces, tasks and nominal model; all worlds share it).

        The worlds themselves live on the device; stepping this env does not touch them.
        """
        return self._host

    def _model_array(self, name: str) -> wp.array:
        """The device array of a model field (``opt.<name>`` for options)."""
        if name.startswith("opt."):
            return getattr(self.model.opt, name[4:])
        return getattr(self.model, name)

    @staticmethod
    def _check_count(tasks: Sequence[Task] | None, num_envs: int | None) -> int:
        if tasks is None:
            if (
                isinstance(num_envs, bool)
                or not isinstance(num_envs, (int, np.integer))
                or num_envs < 1
            ):
                raise ValueError(
                    f"num_envs must be an integer >= 1 when tasks is None, got {num_envs!r}"
                )
            return int(num_envs)
        n = len(list(tasks))
        if n < 1:
            raise ValueError("tasks must hold at least one task (one per world), got 0")
        if num_envs is not None and num_envs != n:
            raise ValueError(
                f"num_envs={num_envs!r} does not match len(tasks)={n}; give one task per world"
            )
        return n

    # ------------------------------------------------------------------ tasks
    def _goal_arrays(self) -> dict[str, np.ndarray]:
        if self._goal_fn is None:
            return {}
        names = [k for k, _ in self._active[0].goal]
        return {
            k: np.array([t.goal_value(k) for t in self._active], dtype=np.float64) for k in names
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
        for t in tasks:
            self._host.validate_task(t)
        self._pending = tasks

    def get_tasks(self) -> list[Task]:
        """The task of each world (pending for its next reset, else active)."""
        return [p if p is not None else a for p, a in zip(self._pending, self._active, strict=True)]

    def sample_tasks(self, n: int, seed: int | None = None, split: str = "train") -> list[Task]:
        """Draw tasks of this family (see ``RandomizedDynamics.sample_tasks``)."""
        return self._host.sample_tasks(n, seed, split)

    # ------------------------------------------------------------------ resets
    def _host_reset(self, i: int, seed: int | None, task: Task | None) -> dict[str, np.ndarray]:
        """Run the family's reset for world i on the host env; return its state and fields."""
        base = self._host.unwrapped
        task = task or self._pending[i] or self._active[i]
        if seed is None:
            # World i continues its own random stream, as its own env would.
            rng = self._rngs[i]
            base.np_random = rng if rng is not None else np.random.default_rng()
        _, info = self._env.reset(seed=seed, options={"task": task})
        self._rngs[i] = base.np_random
        self._active[i], self._pending[i] = info["task"], None
        data, model = base.data, base.model
        out = {
            "qpos": data.qpos.copy(),
            "qvel": data.qvel.copy(),
            "warm": data.qacc_warmstart.copy(),
            "time": np.array(data.time),
            "act": data.act.copy(),
        }
        if self._uploaded[i] != self._active[i]:
            for f in self._task_fields:
                src = getattr(model.opt, f[4:]) if f.startswith("opt.") else getattr(model, f)
                out[f] = np.array(src, dtype=np.float64)
        return out

    def _reset_worlds(
        self, worlds: np.ndarray, seeds: Sequence[int | None], tasks: Sequence[Task | None]
    ) -> None:
        """Reset ``worlds`` on the host, upload their states (and new tasks), refresh obs."""
        if len(worlds) == 0:
            return
        states = [
            self._host_reset(int(i), s, t) for i, s, t in zip(worlds, seeds, tasks, strict=True)
        ]
        dev = self.torch_device
        idx = torch.as_tensor(worlds, dtype=torch.int64, device=dev)

        def up(key: str) -> torch.Tensor:
            rows = np.stack([s[key] for s in states])
            return torch.as_tensor(rows, dtype=torch.float32, device=dev)

        with torch.no_grad():
            self._qpos[idx] = up("qpos")
            self._qvel[idx] = up("qvel")
            self._warm[idx] = up("warm")
            self._time[idx] = up("time")
            if self._act is not None:
                self._act[idx] = up("act")
            first = self._task_fields[0] if self._task_fields else None
            new = [k for k, s in enumerate(states) if first is not None and first in s]
            if new:
                sel = idx[new]
                for f, tensor in self._fields.items():
                    rows = np.stack([states[k][f] for k in new])
                    tensor[sel] = torch.as_tensor(rows, dtype=tensor.dtype, device=dev).reshape(
                        len(new), *tensor.shape[1:]
                    )
                self._sync_in()
                with wp.ScopedDevice(self._wp_device):
                    # Derived constants (subtree mass, invweight0, acc0) follow the new masses.
                    mjw.set_const(self.model, self.data)
                self._sync_out()
                for k in new:
                    self._uploaded[int(worlds[k])] = self._active[int(worlds[k])]
            self._obs[idx] = self.kernel.observation(self._qpos[idx], self._qvel[idx])
            self._elapsed[idx] = 0
        self._needs_reset[worlds] = False
        self._goal = self._goal_arrays()

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
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
        for t in tasks:
            if t is not None:
                self._host.validate_task(t)
        mask = np.ones(n, dtype=bool)
        if "reset_mask" in options:
            mask = np.asarray(_to_numpy(options["reset_mask"]), dtype=bool)
            if mask.shape != (n,):
                raise ValueError(f"options['reset_mask'] must have shape ({n},), got {mask.shape}")
        worlds = np.flatnonzero(mask)
        self._reset_worlds(worlds, [seeds[i] for i in worlds], [tasks[i] for i in worlds])
        task_info = np.empty(n, dtype=object)
        for i in worlds:
            task_info[i] = self._active[i]
        return self._out(self._obs.clone()), {"task": task_info, "_task": mask.copy()}

    # ------------------------------------------------------------------ steps
    def _physics(self) -> None:
        """Run ``frame_skip`` MuJoCo Warp steps of every world."""
        with wp.ScopedDevice(self._wp_device):
            if self._graph is not None:
                wp.capture_launch(self._graph)
                return
            if self._use_graph and self._stepped_once:
                try:
                    with wp.ScopedCapture() as capture:
                        for _ in range(self.frame_skip):
                            mjw.step(self.model, self.data)
                    self._graph = capture.graph
                    wp.capture_launch(self._graph)
                    return
                except Exception as err:  # fall back to eager launches, loudly
                    warnings.warn(
                        f"CUDA graph capture failed ({err}); stepping without graphs",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    self._use_graph = False
            for _ in range(self.frame_skip):
                mjw.step(self.model, self.data)
            self._stepped_once = True

    def _sync_in(self) -> None:
        """Make Warp's stream wait for torch's writes (CUDA only)."""
        if self._wp_device.is_cuda:
            torch_stream = wp.stream_from_torch(torch.cuda.current_stream(self.torch_device))
            self._wp_device.stream.wait_stream(torch_stream)

    def _sync_out(self) -> None:
        """Make torch's stream wait for Warp's physics (CUDA only)."""
        if self._wp_device.is_cuda:
            torch.cuda.current_stream(self.torch_device).wait_stream(
                wp.stream_to_torch(self._wp_device.stream)
            )

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step every world by one env step (``frame_skip`` physics steps).

        Args:
            actions: Tensor or array of shape ``(num_envs, action_dim)``.

        Returns:
            ``obs, rewards, terminations, truncations, infos`` as Gymnasium vector envs do
            (torch tensors on the device, or numpy arrays with ``as_torch=False``);
            ``infos["diverged"]`` flags worlds whose simulation diverged this step.

        Raises:
            ValueError: If ``actions`` has the wrong shape or non-finite values.
        """
        n, dev = self.num_envs, self.torch_device
        act = torch.as_tensor(actions, dtype=torch.float32, device=dev)
        if tuple(act.shape) != (n, self._nu):
            raise ValueError(f"actions must have shape ({n}, {self._nu}), got {tuple(act.shape)}")
        if not bool(torch.isfinite(act).all()):
            raise ValueError("actions must be finite (got NaN or inf)")
        resetting = (
            self._needs_reset.copy()
            if self.autoreset_mode is AutoresetMode.NEXT_STEP
            else np.zeros(n, bool)
        )
        with torch.no_grad():
            old_qpos, old_qvel, old_time = (
                self._qpos.clone(),
                self._qvel.clone(),
                self._time.clone(),
            )
            old_act = self._act.clone() if self._act is not None else None
            self._ctrl.copy_(act)
            self._sync_in()
            self._physics()
            self._sync_out()
            qpos1, qvel1 = self._qpos, self._qvel
            terms = self.kernel.step_terms(old_qpos, qpos1, qvel1, act)
            obs = self.kernel.observation(qpos1, qvel1)
            reward = terms["reward"]
            if self._goal_fn is not None:
                host_terms = {
                    k: terms[k].double().cpu().numpy()
                    for k in ("x_velocity", "y_velocity", "ctrl_sq", "healthy")
                }
                goal_r = np.asarray(self._goal_fn(host_terms, self._goal), dtype=np.float64)
                reward = torch.as_tensor(goal_r, dtype=torch.float32, device=dev)
            diverged = ~(
                torch.isfinite(qpos1).all(dim=1)
                & torch.isfinite(qvel1).all(dim=1)
                & torch.isfinite(obs).all(dim=1)
                & torch.isfinite(reward)
            )
            if self._act is not None:
                diverged |= ~torch.isfinite(self._act).all(dim=1)
            # Worlds reset this step (next_step mode) were stepped only to be overwritten.
            active = torch.as_tensor(~resetting, device=dev)
            diverged &= active
            # A diverged world keeps its last finite state and observation, reward 0.
            div_col = diverged[:, None]
            self._qpos.copy_(torch.where(div_col, old_qpos, qpos1))
            self._qvel.copy_(torch.where(div_col, old_qvel, qvel1))
            self._warm.masked_fill_(div_col, 0.0)
            self._time.copy_(torch.where(diverged, old_time, self._time))
            if self._act is not None and old_act is not None:
                self._act.copy_(torch.where(div_col, old_act, self._act))
            obs = torch.where(div_col, self._obs, obs)
            reward = torch.where(diverged, torch.zeros_like(reward), reward)
            terminated = terms["terminated"] & ~diverged
            self._elapsed += active
            truncated = diverged.clone()
            if self.max_episode_steps is not None:
                truncated |= self._elapsed >= self.max_episode_steps
            self._obs = obs.clone()
            done = terminated | truncated
            # One small read per step: which worlds the host must reset.
            if self.autoreset_mode is AutoresetMode.DISABLED:
                done_host = np.zeros(n, dtype=bool)
            else:
                done_host = done.cpu().numpy()

            infos: dict[str, Any] = {"diverged": diverged, "_diverged": np.ones(n, dtype=bool)}
            if resetting.any():
                worlds = np.flatnonzero(resetting)
                self._reset_worlds(worlds, [None] * len(worlds), [None] * len(worlds))
                ridx = torch.as_tensor(worlds, dtype=torch.int64, device=dev)
                obs[ridx] = self._obs[ridx]
                reward[ridx] = 0.0
                terminated[ridx] = False
                truncated[ridx] = False
                done_host &= ~resetting
            if self.autoreset_mode is AutoresetMode.NEXT_STEP:
                self._needs_reset = done_host.copy()
            elif self.autoreset_mode is AutoresetMode.SAME_STEP and done_host.any():
                worlds = np.flatnonzero(done_host)
                final_obs = obs.clone()
                div_host = infos["diverged"].cpu().numpy()
                self._reset_worlds(worlds, [None] * len(worlds), [None] * len(worlds))
                ridx = torch.as_tensor(worlds, dtype=torch.int64, device=dev)
                obs[ridx] = self._obs[ridx]
                final_info = np.empty(n, dtype=object)
                for i in worlds:
                    final_info[i] = {"diverged": bool(div_host[i])}
                if self.as_torch:
                    infos["final_obs"] = final_obs
                else:
                    fo = np.empty(n, dtype=object)
                    fo_np = _as_float64(final_obs)
                    for i in worlds:
                        fo[i] = fo_np[i]
                    infos["final_obs"] = fo
                infos.update(
                    _final_obs=done_host.copy(),
                    final_info=final_info,
                    _final_info=done_host.copy(),
                )
        if not self.as_torch:
            infos["diverged"] = infos["diverged"].cpu().numpy()
            return (
                _as_float64(obs),
                _as_float64(reward),
                terminated.cpu().numpy(),
                truncated.cpu().numpy(),
                infos,
            )
        return obs, reward, terminated, truncated, infos

    def _out(self, x: torch.Tensor) -> Any:
        return x if self.as_torch else _as_float64(x)

    def close_extras(self, **kwargs: Any) -> None:
        """Release the graph and the host env."""
        self._graph = None
        self._env.close()


def _as_float64(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float64)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
