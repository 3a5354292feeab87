"""A meta-trained agent as a product: load it, adapt it to a task or an environment, act.

agent = Agent.load("runs/nav")
returns = agent.adapt(gym.make("fastadapt/Navigation2D-v0", task={"goal_x": 0.3, "goal_y": -0.2}),
                      steps=2, episodes=20)
action = agent.act(obs)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from fastadapt.adaptation import inner_lr_schedule, sample_and_adapt
from fastadapt.errors import ConfigError, SpaceError
from fastadapt.policies import Params
from fastadapt.sampling import to_env_action
from fastadapt.tasks.core import FamilyEnv, derive_seed
from fastadapt.tasks.gym_adapter import GymTaskFamily


class Agent:
    """A meta-trained policy plus its adaptation rule. ``params`` are the current (meta or adapted)
    parameters."""

    def __init__(self, learner: Any) -> None:
        if not hasattr(learner, "meta_params"):
            raise ConfigError(
                f"Agent adapts gradient-based learners; a {learner.name} run adapts within a trial "
                "(use fastadapt.learners.rl2.collect_trials, or `fastadapt evaluate`)"
            )
        self.learner = learner
        self.family = learner.family
        self.policy = learner.policy
        self.device = learner.device
        self.meta_params: Params = {k: v.detach() for k, v in learner.meta_params.items()}
        self.params: Params = dict(self.meta_params)

    @classmethod
    def load(cls, path: str | Path) -> Agent:
        """Load a run directory (its final model or newest checkpoint) or a checkpoint file."""
        from fastadapt.train import load_learner

        return cls(load_learner(path))

    def reset(self) -> None:
        """Forget any adaptation: back to the meta-parameters."""
        self.params = dict(self.meta_params)

    def _target(self, target: Any) -> tuple[Any, Any]:
        """(family, task) for a task record/dict, a Gymnasium view of the family, or any env."""
        if isinstance(target, gym.Env):
            inner = target.unwrapped
            if isinstance(inner, FamilyEnv) and inner.family.id == self.family.id:
                return self.family, inner.task
            if (
                target.observation_space.shape != (self.policy.obs_dim,)
                or target.action_space != self.family.action_space
            ):
                raise SpaceError(
                    f"environment spaces {target.observation_space} / {target.action_space} do not "
                    f"match the agent's ({self.family.id}): {self.family.observation_space} / "
                    f"{self.family.action_space}"
                )
            horizon = target.spec.max_episode_steps if target.spec else None
            family = GymTaskFamily(
                "user-env",
                lambda _task: copy.deepcopy(target),
                lambda n, rng: [None] * n,
                default_task=None,
                horizon=horizon or self.family.horizon,
            )
            return family, None
        return self.family, self.family.validate_task(target)

    def adapt(
        self,
        target: Any,
        steps: int = 1,
        episodes: int = 20,
        lr: float | Sequence[float] | None = None,
        seed: int = 0,
        unit: str = "episodes",
    ) -> list[float]:
        """Adapt to ``target`` (a task record or dict of its fields, a ``gym.make`` of the family,
        or any Gymnasium env with the same spaces) with ``steps`` inner steps of ``episodes``
        episodes each (``unit="steps"``: whole episodes up to ``episodes x horizon`` steps). Returns
        the mean episode return before each step and after the last."""
        family, task = self._target(target)
        schedule = inner_lr_schedule(lr if lr is not None else self.learner.lr_schedule, steps)
        lrs = self.learner.lrs(steps, schedule if lr is not None else None)
        cfg = self.learner.config
        seeds = [derive_seed(seed, 11, k) for k in range(steps + 1)]
        trace = sample_and_adapt(
            family,
            self.policy,
            self.meta_params,
            [task],
            steps,
            lrs,
            episodes,
            seeds,
            cfg.gamma,
            cfg.gae_lambda,
            cfg.normalize_advantages,
            self.device,
            unit=unit,
        )
        if steps > 0:
            self.params = {k: v[0] for k, v in trace.params.items()}
        else:
            self.params = dict(self.meta_params)
        return [float(ep.mean_return.mean()) for ep in trace.episodes]

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray | int:
        """An action for one observation (or a batch ``[B, obs_dim]``) with the current params."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        single = x.dim() == 1
        if x.shape[-1] != self.policy.obs_dim:
            raise SpaceError(
                f"observation of shape {tuple(x.shape)}; expected (..., {self.policy.obs_dim})"
            )
        d = self.policy.dist(self.params, x.unsqueeze(0) if single else x)
        a = self.policy.mode(d) if deterministic else self.policy.sample(d)
        a = to_env_action(self.family.action_space, a.cpu().numpy())
        if isinstance(self.family.action_space, gym.spaces.Discrete):
            return int(a[0]) if single else a
        return a[0] if single else a
