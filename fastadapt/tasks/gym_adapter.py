"""A user's own Gymnasium environment as a task family.

Give two callables: ``make_env(task) -> gym.Env`` builds an environment for one task, and
``sample_tasks(n, rng) -> list of tasks`` draws tasks with a ``numpy.random.Generator``. Tasks may be
any JSON-serializable value (a dict of parameters is usual). Batches are stepped through
``gymnasium.vector.SyncVectorEnv`` with autoreset disabled: this is the slower, general path with the
same interface as the built-in batched families.

Example::

    def make_env(task):
        env = gym.make("Pendulum-v1", g=task["g"])
        return env

    family = GymTaskFamily(
        "MyPendulum-v0",
        make_env,
        lambda n, rng: [{"g": float(g)} for g in rng.uniform(5, 15, n)],
        default_task={"g": 10.0},
        horizon=200,
    )
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from fastadapt.errors import ConfigError, SpaceError


class GymTaskFamily:
    """A task family over a user's Gymnasium environments (see the module docstring)."""

    task_type = dict

    def __init__(
        self,
        id: str,
        make_env: Callable[[Any], gym.Env],
        sample_tasks: Callable[[int, np.random.Generator], Sequence[Any]],
        default_task: Any = None,
        horizon: int | None = None,
    ) -> None:
        self.id = id
        self._make_env = make_env
        self._sample_tasks = sample_tasks
        self._default_task = default_task
        probe = make_env(default_task)
        try:
            self.observation_space = probe.observation_space
            self.action_space = probe.action_space
            spec_steps = probe.spec.max_episode_steps if probe.spec is not None else None
        finally:
            probe.close()
        if not isinstance(self.observation_space, gym.spaces.Box):
            raise SpaceError(
                f"{id}: observation space must be a Box, got {type(self.observation_space).__name__}"
            )
        if not isinstance(self.action_space, (gym.spaces.Box, gym.spaces.Discrete)):
            raise SpaceError(
                f"{id}: action space must be Box or Discrete, got {type(self.action_space).__name__}"
            )
        self.horizon = horizon if horizon is not None else spec_steps
        if self.horizon is None or self.horizon <= 0:
            raise ConfigError(
                f"{id}: give a positive horizon (the env has no TimeLimit), got {self.horizon}"
            )

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        tasks = list(self._sample_tasks(n, rng))
        if len(tasks) != n:
            raise ConfigError(f"{self.id}: sample_tasks({n}, rng) returned {len(tasks)} tasks")
        return tasks

    def default_task(self) -> Any:
        return self._default_task

    def validate_task(self, task: Any) -> Any:
        return task

    def make_env(self, task: Any) -> gym.Env:
        """One environment for ``task``, checked against the family's spaces."""
        env = self._make_env(task)
        if env.observation_space != self.observation_space:
            raise SpaceError(
                f"{self.id}: task {task!r} gave observation space {env.observation_space}, "
                f"expected {self.observation_space}"
            )
        if env.action_space != self.action_space:
            raise SpaceError(
                f"{self.id}: task {task!r} gave action space {env.action_space}, "
                f"expected {self.action_space}"
            )
        return env

    def make_batch(
        self, tasks: Sequence[Any], episodes_per_task: int, seed: int | None = None
    ) -> GymBatchEnv:
        return GymBatchEnv(self, tasks, episodes_per_task, seed)


class GymBatchEnv:
    """Lockstep episodes over ``SyncVectorEnv``. A finished environment is reset and its later
    steps are masked out by the sampler; they never enter a batch."""

    def __init__(
        self, family: GymTaskFamily, tasks: Sequence[Any], episodes_per_task: int, seed: int | None
    ) -> None:
        if episodes_per_task <= 0:
            raise ConfigError(f"episodes_per_task must be positive, got {episodes_per_task}")
        self.family = family
        self.num_envs = len(tasks) * episodes_per_task
        fns = [
            (lambda task=task: family.make_env(task))
            for task in tasks
            for _ in range(episodes_per_task)
        ]
        self.vec = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED)
        self.seed = seed
        self.t = 0
        self._done = np.zeros(self.num_envs, dtype=bool)

    def reset(self) -> np.ndarray:
        obs, _ = self.vec.reset(seed=self.seed)
        self.seed = None  # later resets continue the seeded streams
        self.t = 0
        self._done[:] = False
        return obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._done.any():  # keep finished envs steppable; their steps are masked out
            self.vec.reset(options={"reset_mask": self._done.copy()})
        obs, reward, terminated, truncated, _ = self.vec.step(actions)
        self.t += 1
        truncated = truncated | (self.t >= self.family.horizon)
        self._done = terminated | truncated
        return obs, np.asarray(reward, dtype=np.float64), terminated, truncated

    def close(self) -> None:
        self.vec.close()
