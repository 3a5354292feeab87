"""``PendulumDynamics-v0``: Gymnasium's Pendulum swing-up with mass, length and gravity varied.

At the default task (m = 1, l = 1, g = 10) it equals ``Pendulum-v1`` step for step (tested): torque
clipped to [-2, 2], speed clipped to [-8, 8], dt = 0.05, 200-step horizon, reward
``-(angle^2 + 0.1 * speed^2 + 0.001 * torque^2)``.

Default ranges: mass [0.5, 2.0] kg, length [0.5, 2.0] m, gravity [5, 15] m/s^2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from fastadapt.errors import ConfigError
from fastadapt.tasks.core import ArrayTaskFamily, check_range

MAX_SPEED = 8.0
MAX_TORQUE = 2.0
DT = 0.05


@dataclass(frozen=True)
class PendulumTask:
    """Pendulum physics."""

    mass: float = 1.0
    length: float = 1.0
    gravity: float = 10.0


def angle_normalize(x: np.ndarray) -> np.ndarray:
    """Wrap angles to [-pi, pi)."""
    return ((x + np.pi) % (2 * np.pi)) - np.pi


class PendulumDynamics(ArrayTaskFamily):
    """Pendulum swing-up with sampled physics."""

    id = "PendulumDynamics-v0"
    task_type = PendulumTask

    def __init__(
        self,
        mass: tuple[float, float] = (0.5, 2.0),
        length: tuple[float, float] = (0.5, 2.0),
        gravity: tuple[float, float] = (5.0, 15.0),
        horizon: int = 200,
    ) -> None:
        self.ranges = {"mass": tuple(mass), "length": tuple(length), "gravity": tuple(gravity)}
        for name, (lo, hi) in self.ranges.items():
            check_range(name, lo, hi, positive=True)
        if horizon <= 0:
            raise ConfigError(f"horizon must be positive, got {horizon}")
        self.horizon = horizon
        high = np.array([1.0, 1.0, MAX_SPEED], dtype=np.float32)
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(-MAX_TORQUE, MAX_TORQUE, shape=(1,), dtype=np.float32)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[PendulumTask]:
        draws = {k: rng.uniform(lo, hi, size=n) for k, (lo, hi) in self.ranges.items()}
        return [PendulumTask(**{k: float(v[i]) for k, v in draws.items()}) for i in range(n)]

    def default_task(self) -> PendulumTask:
        return PendulumTask()

    def validate_task(self, task):
        task = super().validate_task(task)
        for name in ("mass", "length", "gravity"):
            if not getattr(task, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(task, name)}")
        return task

    def task_arrays(self, tasks: Sequence[PendulumTask]) -> dict[str, np.ndarray]:
        return {f: np.array([getattr(t, f) for t in tasks]) for f in ("mass", "length", "gravity")}

    def init_state(self, params, rng):
        n = len(params["mass"])
        return rng.uniform(low=[-np.pi, -1.0], high=[np.pi, 1.0], size=(n, 2))

    def transition(self, params, state, action, rng):
        th, thdot = state[:, 0], state[:, 1]
        g, m, l = params["gravity"], params["mass"], params["length"]
        u = np.clip(action[:, 0], -MAX_TORQUE, MAX_TORQUE).astype(np.float32)  # as Pendulum-v1
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)
        # Pendulum-v1 forms the torque term in float32 (a Python float times a float32 torque);
        # doing the same keeps the default task equal to it bit for bit.
        torque_term = (3.0 / (m * l**2)).astype(np.float32) * u
        newthdot = thdot + (3 * g / (2 * l) * np.sin(th) + torque_term) * DT
        newthdot = np.clip(newthdot, -MAX_SPEED, MAX_SPEED)
        newth = th + newthdot * DT
        return np.stack([newth, newthdot], axis=1), -costs, np.zeros(len(th), dtype=bool)

    def observe(self, params, state):
        th, thdot = state[:, 0], state[:, 1]
        return np.stack([np.cos(th), np.sin(th), thdot], axis=1).astype(np.float32)
