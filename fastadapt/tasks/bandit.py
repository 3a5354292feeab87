"""The RL² paper's two families: ``Bandit-v0`` and ``TabularMDP-v0`` (Duan et al., 2016).

``Bandit-v0``: a k-armed Bernoulli bandit; each task draws every arm's success probability uniformly
from [0, 1]. One episode is one pull (horizon 1, a constant observation) that terminates the episode, so a
trial of n episodes on one task is n pulls, as in the paper.

``TabularMDP-v0``: 10 states, 5 actions, episodes of 10 steps starting in state 0. Each task draws the
mean reward of every (state, action) from N(1, 1) and every transition distribution from a flat
Dirichlet; rewards are N(mean, 1). The observation is the one-hot state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from fastadapt.errors import ConfigError, TaskError
from fastadapt.tasks.core import ArrayTaskFamily


@dataclass(frozen=True)
class BanditTask:
    """Success probability of each arm."""

    arm_probs: tuple[float, ...]


class Bandit(ArrayTaskFamily):
    """k-armed Bernoulli bandits."""

    id = "Bandit-v0"
    task_type = BanditTask

    horizon = 1

    def __init__(self, k: int = 5) -> None:
        if k < 2:
            raise ConfigError(f"a bandit needs k >= 2 arms, got {k}")
        self.k = k
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(k)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[BanditTask]:
        return [BanditTask(tuple(float(p) for p in row)) for row in rng.uniform(size=(n, self.k))]

    def default_task(self) -> BanditTask:
        return BanditTask(tuple(float(p) for p in np.linspace(0.1, 0.9, self.k)))

    def validate_task(self, task):
        task = super().validate_task(task)
        probs = np.asarray(task.arm_probs, dtype=float)
        if probs.shape != (self.k,) or not np.all((probs >= 0) & (probs <= 1)):
            raise TaskError(f"{self.id} (k={self.k}) needs {self.k} probabilities in [0, 1]")
        return task

    def task_arrays(self, tasks: Sequence[BanditTask]) -> dict[str, np.ndarray]:
        return {"arm_probs": np.array([t.arm_probs for t in tasks], dtype=np.float64)}

    def init_state(self, params, rng):
        return np.zeros((len(params["arm_probs"]), 1), dtype=np.float32)

    def transition(self, params, state, action, rng):
        n = len(state)
        p = params["arm_probs"][np.arange(n), action]
        reward = (rng.random(n) < p).astype(np.float64)
        return state, reward, np.ones(n, dtype=bool)

    def observe(self, params, state):
        return np.ones((len(state), 1), dtype=np.float32)


@dataclass(frozen=True)
class TabularMDPTask:
    """Mean rewards ``[S][A]`` and transition probabilities ``[S][A][S]``."""

    reward_means: tuple[tuple[float, ...], ...]
    transitions: tuple[tuple[tuple[float, ...], ...], ...]


class TabularMDP(ArrayTaskFamily):
    """Random tabular MDPs."""

    id = "TabularMDP-v0"
    task_type = TabularMDPTask

    def __init__(self, num_states: int = 10, num_actions: int = 5, horizon: int = 10) -> None:
        if num_states < 1 or num_actions < 2 or horizon < 1:
            raise ConfigError(
                f"TabularMDP needs num_states >= 1, num_actions >= 2, horizon >= 1; got "
                f"{num_states}, {num_actions}, {horizon}"
            )
        self.num_states, self.num_actions, self.horizon = num_states, num_actions, horizon
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(num_states,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(num_actions)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[TabularMDPTask]:
        s, a = self.num_states, self.num_actions
        means = rng.normal(1.0, 1.0, size=(n, s, a))
        trans = rng.dirichlet(np.ones(s), size=(n, s, a))
        return [TabularMDPTask(_tuples(means[i]), _tuples(trans[i])) for i in range(n)]

    def default_task(self) -> TabularMDPTask:
        s, a = self.num_states, self.num_actions
        return TabularMDPTask(_tuples(np.ones((s, a))), _tuples(np.full((s, a, s), 1.0 / s)))

    def validate_task(self, task):
        task = super().validate_task(task)
        s, a = self.num_states, self.num_actions
        means, trans = np.asarray(task.reward_means), np.asarray(task.transitions)
        if means.shape != (s, a) or trans.shape != (s, a, s):
            raise TaskError(
                f"{self.id} needs reward_means {(s, a)} and transitions {(s, a, s)}, got "
                f"{means.shape} and {trans.shape}"
            )
        if np.any(trans < 0) or not np.allclose(trans.sum(-1), 1.0, atol=1e-6):
            raise TaskError(f"{self.id}: every transitions[s][a] must be a probability vector")
        return task

    def task_arrays(self, tasks: Sequence[TabularMDPTask]) -> dict[str, np.ndarray]:
        trans = np.array([t.transitions for t in tasks], dtype=np.float64)
        cdf = np.cumsum(trans, axis=-1)
        cdf[..., -1] = 1.0
        return {"reward_means": np.array([t.reward_means for t in tasks]), "transition_cdf": cdf}

    def init_state(self, params, rng):
        return np.zeros(len(params["reward_means"]), dtype=np.int64)

    def transition(self, params, state, action, rng):
        n = len(state)
        idx = np.arange(n)
        reward = params["reward_means"][idx, state, action] + rng.standard_normal(n)
        cdf = params["transition_cdf"][idx, state, action]
        nxt = (cdf < rng.random(n)[:, None]).sum(axis=1)
        return np.minimum(nxt, self.num_states - 1), reward, np.zeros(n, dtype=bool)

    def observe(self, params, state):
        obs = np.zeros((len(state), self.num_states), dtype=np.float32)
        obs[np.arange(len(state)), state] = 1.0
        return obs


def _tuples(a: np.ndarray):
    return tuple(_tuples(x) for x in a) if a.ndim > 1 else tuple(float(x) for x in a)
