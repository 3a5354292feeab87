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


def check_env_spaces(env: gym.Env, family: Any, obs_dim: int) -> None:
    """Raise :class:`SpaceError` unless ``env`` has the observation shape and action space of the
    family the agent was trained on."""
    if env.observation_space.shape != (obs_dim,) or env.action_space != family.action_space:
        raise SpaceError(
            f"environment spaces {env.observation_space} / {env.action_space} do not match the "
            f"agent's ({family.id}): {family.observation_space} / {family.action_space}"
        )


class Agent:
    """A meta-trained policy plus its adaptation rule. ``params`` are the current (meta or adapted)
    parameters."""

    def __init__(self, learner: Any) -> None:
        if not hasattr(learner, "meta_params"):
            raise ConfigError(
                f"Agent adapts gradient-based learners; a {learner.name} run adapts within a trial "
                "(load it with TrialAgent)"
            )
        self.learner = learner
        self.family = learner.family
        self.policy = learner.policy
        self.device = learner.device
        self.meta_params: Params = {k: v.detach() for k, v in learner.meta_params.items()}
        self.params: Params = dict(self.meta_params)

    @classmethod
    def load(cls, path: str | Path, device: str = "") -> Agent:
        """Load a run directory (its final model or newest checkpoint) or a checkpoint file, on
        ``device`` (empty: the run's own, or the CPU where that GPU is missing)."""
        from fastadapt.train import load_learner

        return cls(load_learner(path, device))

    def reset(self) -> None:
        """Forget any adaptation: back to the meta-parameters."""
        self.params = dict(self.meta_params)

    def _target(self, target: Any) -> tuple[Any, Any]:
        """(family, task) for a task record/dict, a Gymnasium view of the family, or any env."""
        if isinstance(target, gym.Env):
            inner = target.unwrapped
            if isinstance(inner, FamilyEnv) and inner.family.id == self.family.id:
                return self.family, inner.task
            check_env_spaces(target, self.family, self.policy.obs_dim)
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
        unit: str = "",
    ) -> list[float]:
        """Adapt to ``target`` (a task record or dict of its fields, a ``gym.make`` of the family,
        or any Gymnasium env with the same spaces) with ``steps`` inner steps of ``episodes``
        episodes each (``unit="steps"``: whole episodes up to ``episodes x horizon`` steps; empty:
        the unit the run trained with). Returns the mean episode return before each step and after
        the last."""
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
            unit=unit or cfg.batch_unit,
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


class TrialAgent:
    """A meta-trained RL² policy as a product: it adapts without gradients, in its memory of the
    trial so far. :meth:`reset` starts a trial (a new task); then :meth:`act` on each observation
    and :meth:`observe` each step's outcome, or :meth:`play` whole episodes of a Gymnasium env.

        agent = TrialAgent.load("runs/bandits")
        env = gym.make("fastadapt/Bandit-v0", task={"arm_probs": [0.2, 0.9, 0.5, 0.1, 0.4]})
        returns = agent.play(env, episodes=100)  # one trial: the return of each episode
    """

    def __init__(self, learner: Any, seed: int = 0) -> None:
        from fastadapt.sequence_policies import SequencePolicy

        if not isinstance(getattr(learner, "policy", None), SequencePolicy):
            raise ConfigError(
                f"TrialAgent runs RL² policies; a {learner.name} run adapts by gradient steps "
                "(load it with Agent)"
            )
        self.learner = learner
        self.family = learner.family
        self.policy = learner.policy.eval()
        self.device = learner.device
        self.horizon = self.family.horizon
        self.trial_episodes = learner.config.episodes_per_task
        self._gen = torch.Generator().manual_seed(seed)
        self.reset()

    @classmethod
    def load(cls, path: str | Path, seed: int = 0, device: str = "") -> TrialAgent:
        """Load an RL² run directory (its final model or newest checkpoint) or checkpoint file;
        ``seed`` seeds the sampling of actions; ``device`` as in :meth:`Agent.load`."""
        from fastadapt.train import load_learner

        return cls(load_learner(path, device), seed)

    def reset(self) -> None:
        """Start a new trial: forget everything seen (the state the policy was trained from)."""
        self._state = self.policy.initial_state(1, self.device)
        zero = torch.zeros(1, device=self.device)
        # the previous step's action (encoded), reward, done flag and observation
        no_obs = torch.zeros(1, self.policy.obs_dim, device=self.device)
        self._prev = (
            torch.zeros(1, self.policy.action_dim, device=self.device),
            zero,
            zero,
            no_obs,
        )
        self._obs = no_obs  # the observation of the action awaiting observe()
        self._action: torch.Tensor | None = None
        self.episode, self.step_in_episode = 0, 0

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray | int:
        """The action for ``obs``, given the trial so far; call :meth:`observe` before the next.
        Sampling (the default) is how the policy was trained to explore."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device).reshape(1, -1)
        if x.shape[1] != self.policy.obs_dim:
            raise SpaceError(
                f"observation of shape {np.shape(obs)}; expected ({self.policy.obs_dim},)"
            )
        if self._action is not None:
            raise ConfigError("act() twice without observe(): report each step's outcome")
        clock = (self.step_in_episode / self.horizon, self.episode / self.trial_episodes)
        self._obs = x
        x = self.policy.step_input(x, *self._prev, clock)
        dist, _, self._state = self.policy.step(x, self._state)
        ops = self.policy.dist_ops
        self._action = ops.mode(dist) if deterministic else ops.sample(dist, self._gen)
        a = to_env_action(self.family.action_space, self._action.cpu().numpy())
        return int(a[0]) if self.policy.discrete else a[0]

    def observe(self, reward: float, terminated: bool, truncated: bool = False) -> None:
        """The outcome of the last action: its reward and whether the episode ended. The trial
        (and the policy's memory) goes on across episodes until :meth:`reset`."""
        if self._action is None:
            raise ConfigError("observe() without act(): there is no action to report on")
        done = bool(terminated or truncated)
        r, d = (torch.tensor([float(x)], device=self.device) for x in (reward, done))
        self._prev = (self.policy.encode_action(self._action).reshape(1, -1), r, d, self._obs)
        self._action = None
        self.step_in_episode = 0 if done else self.step_in_episode + 1
        self.episode += int(done)

    def play(
        self, env: gym.Env, episodes: int | None = None, seed: int = 0, deterministic: bool = False
    ) -> list[float]:
        """Run ``episodes`` episodes (default: the trial length it was trained on) of ``env`` as
        one new trial, each at most the family's horizon long; returns each episode's return."""
        check_env_spaces(env, self.family, self.policy.obs_dim)
        self.reset()
        returns = []
        for k in range(self.trial_episodes if episodes is None else episodes):
            obs, _ = env.reset(seed=derive_seed(seed, 13, k))
            total = 0.0
            for t in range(self.horizon):
                obs, r, terminated, truncated, _ = env.step(self.act(obs, deterministic))
                total += float(r)
                truncated = truncated or t == self.horizon - 1
                self.observe(float(r), terminated, truncated)
                if terminated or truncated:
                    break
            returns.append(total)
        return returns
