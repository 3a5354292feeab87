"""``Navigation2D-v0``: the MAML paper's 2D point robot.

The robot starts at the origin; the task is a goal drawn uniformly from ``[-0.5, 0.5]^2``. The action
is a velocity, clipped to ``[-0.1, 0.1]^2`` by the sampler (the space's bounds). The reward is the
negative *Euclidean* distance to the goal after the move, as in the MAML authors' code (the paper's
text says "squared"; the code, whose numbers the paper reports, uses the distance). The episode
terminates when the robot is within 0.01 of the goal on both axes; the horizon is 100 steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from fastadapt.errors import ConfigError
from fastadapt.tasks.core import ArrayTaskFamily, check_range


@dataclass(frozen=True)
class NavigationTask:
    """A goal position."""

    goal_x: float
    goal_y: float


class Navigation2D(ArrayTaskFamily):
    """Point robot navigating to a goal; tasks differ by the goal."""

    id = "Navigation2D-v0"
    task_type = NavigationTask

    def __init__(self, goal_low: float = -0.5, goal_high: float = 0.5, horizon: int = 100) -> None:
        check_range("goal", goal_low, goal_high)
        if horizon <= 0:
            raise ConfigError(f"horizon must be positive, got {horizon}")
        self.goal_low, self.goal_high, self.horizon = goal_low, goal_high, horizon
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-0.1, 0.1, shape=(2,), dtype=np.float32)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[NavigationTask]:
        goals = rng.uniform(self.goal_low, self.goal_high, size=(n, 2))
        return [NavigationTask(float(x), float(y)) for x, y in goals]

    def default_task(self) -> NavigationTask:
        return NavigationTask(0.25, 0.25)

    def task_arrays(self, tasks: Sequence[NavigationTask]) -> dict[str, np.ndarray]:
        return {"goal": np.array([[t.goal_x, t.goal_y] for t in tasks], dtype=np.float32)}

    def init_state(self, params: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        return np.zeros((len(params["goal"]), 2), dtype=np.float32)

    def transition(self, params, state, action, rng):
        state = state + np.clip(action, -0.1, 0.1)
        delta = state - params["goal"]
        reward = -np.sqrt((delta * delta).sum(axis=1))
        terminated = (np.abs(delta) < 0.01).all(axis=1)
        return state, reward, terminated

    def observe(self, params, state):
        return state
