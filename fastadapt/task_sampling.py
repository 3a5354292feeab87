"""Which training tasks a meta-iteration sees: uniform draws, or prioritized over a fixed pool.

The prioritized sampler keeps a pool of training tasks and a score per task; tasks that adapted badly
are drawn more often. With score ``"post_return"`` a task's priority is its negated post-adaptation
return; with ``"improvement"`` it is the negated gain (post - pre). Scores are an exponential moving
average over the times a task was drawn; unseen tasks get the pool's highest score, so every task is
tried. Probabilities are ``(1 - floor) * softmax(z / temperature) + floor / pool_size`` with ``z`` the
standardized scores, so every task keeps at least ``floor / pool_size`` of the mass.

Draws are seeded by ``(seed, iteration)`` and the scores live in checkpoints, so resuming is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fastadapt.errors import ConfigError
from fastadapt.tasks.core import TaskFamily, derive_seed, sample_tasks

#: the training-split sub-stream the task pool is drawn from
POOL_STREAM = 2**31 - 2


class UniformTaskSampler:
    """Fresh tasks from the training split every iteration (the default)."""

    def __init__(self, family: TaskFamily, seed: int) -> None:
        self.family, self.seed = family, seed

    def sample(self, n: int, iteration: int) -> tuple[np.ndarray | None, list[Any]]:
        return None, sample_tasks(self.family, n, self.seed, "train", index=iteration)

    def update(self, indices: Any, pre: torch.Tensor, post: torch.Tensor) -> None:
        """Uniform sampling ignores outcomes."""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Nothing to restore."""


class PrioritizedTaskSampler:
    """Prioritized sampling over a pool of training tasks (see the module docstring)."""

    def __init__(
        self,
        family: TaskFamily,
        seed: int,
        pool_size: int = 100,
        temperature: float = 1.0,
        floor: float = 0.2,
        score: str = "post_return",
        ema: float = 0.5,
    ) -> None:
        if pool_size <= 0:
            raise ConfigError(f"task_pool_size must be positive, got {pool_size}")
        if not temperature > 0:
            raise ConfigError(f"priority_temperature must be positive, got {temperature}")
        if not 0 < floor <= 1:
            raise ConfigError(f"priority_floor must be in (0, 1], got {floor}")
        if score not in ("post_return", "improvement"):
            raise ConfigError(f"priority_score must be post_return or improvement, got {score!r}")
        if not 0 < ema <= 1:
            raise ConfigError(f"ema must be in (0, 1], got {ema}")
        self.seed, self.temperature, self.floor, self.score, self.ema = (
            seed,
            temperature,
            floor,
            score,
            ema,
        )
        self.pool = sample_tasks(family, pool_size, seed, "train", index=POOL_STREAM)
        self.scores = np.zeros(pool_size)
        self.seen = np.zeros(pool_size, dtype=bool)

    def probabilities(self) -> np.ndarray:
        """The current sampling distribution over the pool."""
        n = len(self.pool)
        if not self.seen.any():
            return np.full(n, 1.0 / n)
        s = np.where(self.seen, self.scores, self.scores[self.seen].max())
        z = (s - s.mean()) / (s.std() + 1e-8)
        w = np.exp((z - z.max()) / self.temperature)
        return (1 - self.floor) * w / w.sum() + self.floor / n

    def sample(self, n: int, iteration: int) -> tuple[np.ndarray, list[Any]]:
        rng = np.random.default_rng(derive_seed(self.seed, 5, iteration))
        idx = rng.choice(len(self.pool), size=n, replace=True, p=self.probabilities())
        return idx, [self.pool[i] for i in idx]

    def update(self, indices: np.ndarray, pre: torch.Tensor, post: torch.Tensor) -> None:
        """Record per-task mean returns before and after adaptation for the drawn ``indices``."""
        pre_np, post_np = pre.detach().cpu().numpy(), post.detach().cpu().numpy()
        value = -post_np if self.score == "post_return" else -(post_np - pre_np)
        for i, v in zip(indices, value, strict=True):
            self.scores[i] = (
                v if not self.seen[i] else (1 - self.ema) * self.scores[i] + self.ema * v
            )
            self.seen[i] = True

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "task_sampler.scores": torch.from_numpy(self.scores.copy()),
            "task_sampler.seen": torch.from_numpy(self.seen.copy()),
        }

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.scores = tensors["task_sampler.scores"].numpy().astype(float).copy()
        self.seen = tensors["task_sampler.seen"].numpy().astype(bool).copy()


def make_task_sampler(config: Any, family: TaskFamily):
    """The sampler a config asks for (``task_sampler``: uniform or prioritized)."""
    if config.task_sampler == "uniform":
        return UniformTaskSampler(family, config.seed)
    if config.task_sampler == "prioritized":
        return PrioritizedTaskSampler(
            family,
            config.seed,
            config.task_pool_size,
            config.priority_temperature,
            config.priority_floor,
            config.priority_score,
        )
    raise ConfigError(f"unknown task_sampler {config.task_sampler!r}; known: uniform, prioritized")
