"""RL² (Duan et al. 2016): a recurrent policy meta-trained with PPO over trials, read top to bottom.

A *trial* is ``episodes_per_task`` consecutive episodes on one task. The policy sees
``(obs, previous action, previous reward, previous done)`` and keeps its hidden state across the
trial's episodes, so it can adapt without gradient steps; the state starts fresh with each trial.

One iteration:

1. ``collect_trials``: ``meta_batch_size`` trials in lockstep, each on its own task. Each trial's
   steps are stored left-aligned (``[trials, L, ...]`` with a mask), so a trial's sequence is exactly
   what its policy saw, with no padding in the middle.
2. Advantages: GAE over each whole trial with the critic head; episode ends inside a trial do not
   stop the discounting; the trial's end is terminal. With ``normalize_values`` the critic works in
   standardized units: its outputs are scaled back with the statistics it was trained against (the
   previous batch's returns), and its targets are this batch's returns, standardized.
3. PPO: ``ppo_epochs`` passes over minibatches of whole trials, recomputing the sequence model from a
   fresh state over the full trial (full backpropagation through time over the trial).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from fastadapt.config import RL2Config
from fastadapt.errors import ConfigError
from fastadapt.learners.common import Checkpointable, check_finite
from fastadapt.returns import gae
from fastadapt.runtime import resolve_device
from fastadapt.sampling import ActionMap, check_finite_array, split_seed
from fastadapt.sequence_policies import SequencePolicy, select_state
from fastadapt.task_sampling import make_task_sampler
from fastadapt.tasks import make_family
from fastadapt.tasks.core import TaskFamily, derive_seed


class Trials(NamedTuple):
    """Left-aligned trials: ``inputs [B, L, D]`` (what the policy saw), ``actions [B, L(, A)]``,
    ``log_probs``/``values``/``rewards``/``mask [B, L]``, ``episode_returns [B, episodes]``."""

    inputs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    episode_returns: torch.Tensor

    @property
    def num_steps(self) -> int:
        return int(self.mask.sum())


@torch.no_grad()
def collect_trials(
    family: TaskFamily,
    policy: SequencePolicy,
    tasks: Sequence[Any],
    episodes: int,
    seed: int,
    device: torch.device | str = "cpu",
    deterministic: bool = False,
) -> Trials:
    """Run one trial of ``episodes`` episodes on each task, all trials in lockstep."""
    B, H = len(tasks), family.horizon
    env_seed, act_seed = split_seed(seed)
    env = family.make_batch(tasks, 1, seed=env_seed)
    gen = torch.Generator().manual_seed(act_seed)  # on the CPU: the same actions on any device
    discrete = isinstance(family.action_space, gym.spaces.Discrete)
    to_env = ActionMap(family.action_space)
    A, D = policy.action_dim, policy.input_dim
    L = episodes * H
    inputs = torch.zeros(B, L, D, device=device)
    actions = torch.zeros(
        (B, L) if discrete else (B, L, A),
        device=device,
        dtype=torch.long if discrete else torch.float32,
    )
    logps, values, rewards, mask = (torch.zeros(B, L, device=device) for _ in range(4))
    ep_returns = torch.zeros(B, episodes, device=device)
    pos = torch.zeros(B, dtype=torch.long, device=device)
    rows = torch.arange(B, device=device)
    state = policy.initial_state(B, device)
    prev_a = torch.zeros(B, A, device=device)
    prev_r = torch.zeros(B, device=device)
    prev_d = torch.zeros(B, device=device)
    prev_o = torch.zeros(B, policy.obs_dim, device=device)
    for j in range(episodes):
        obs = env.reset()
        alive = torch.ones(B, dtype=torch.bool, device=device)
        for t in range(H):
            obs_t = torch.as_tensor(obs, device=device)
            x = policy.step_input(obs_t, prev_a, prev_r, prev_d, prev_o, (t / H, j / episodes))
            inputs[rows[alive], pos[alive]] = x[alive]
            dist, v, new_state = policy.step(x, state)
            state = select_state(new_state, state, alive)
            a = policy.dist_ops.mode(dist) if deterministic else policy.dist_ops.sample(dist, gen)
            logp = policy.dist_ops.log_prob(dist, a)
            obs, r, term, trunc = env.step(to_env(a.cpu().numpy()))
            check_finite_array(np.asarray(r), "rewards", t, 1, family.id, alive.cpu().numpy())
            r_t = torch.as_tensor(np.asarray(r), dtype=torch.float32, device=device)
            actions[rows[alive], pos[alive]] = a[alive]
            logps[rows[alive], pos[alive]] = logp[alive]
            values[rows[alive], pos[alive]] = v[alive]
            rewards[rows[alive], pos[alive]] = r_t[alive]
            mask[rows[alive], pos[alive]] = 1.0
            ep_returns[:, j] += r_t * alive
            ended = alive & torch.as_tensor(np.asarray(term) | np.asarray(trunc), device=device)
            prev_a = torch.where(alive[:, None], policy.encode_action(a), prev_a)
            prev_r = torch.where(alive, r_t, prev_r)
            prev_d = torch.where(alive, ended.float(), prev_d)
            prev_o = torch.where(alive[:, None], obs_t.float(), prev_o)
            pos = pos + alive.long()
            alive = alive & ~ended
            if not alive.any():
                break
    T = int(pos.max())
    return Trials(
        inputs[:, :T],
        actions[:, :T],
        logps[:, :T],
        values[:, :T],
        rewards[:, :T],
        mask[:, :T],
        ep_returns,
    )


def trial_advantages(trials: Trials, gamma: float, lam: float) -> torch.Tensor:
    """GAE over each whole trial (``[B, L]``); the trial's last step is terminal."""
    r, v, m = (x.unsqueeze(-1) for x in (trials.rewards, trials.values, trials.mask))
    next_m = torch.cat([m[:, 1:], torch.zeros_like(m[:, :1])], 1)
    last = m * (1 - next_m)
    adv = gae(r, v * m, torch.zeros_like(r[:, 0]), last, m, gamma, lam)
    return adv.squeeze(-1)


class RL2(Checkpointable):
    """The state of an RL² run and its iteration (:meth:`step`)."""

    name = "rl2"
    extra_meta = ("value_mean", "value_std")
    param_meta = extra_meta  # the critic's outputs are in these units

    def __init__(self, config: RL2Config, family: TaskFamily | None = None) -> None:
        config.validate()
        self.config = config
        self.family = family or make_family(config.env, **config.env_options())
        obs_space, act_space = self.family.observation_space, self.family.action_space
        if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
            raise ConfigError(f"RL² needs a flat Box observation space, got {obs_space}")
        discrete = isinstance(act_space, gym.spaces.Discrete)
        self.device = resolve_device(config.device)
        torch.manual_seed(derive_seed(config.seed, 0))
        self.policy = SequencePolicy(
            obs_space.shape[0],
            int(act_space.n) if discrete else act_space.shape[0],
            discrete,
            config.policy,
            config.hidden_size,
            config.layers,
            config.heads,
            max_len=config.episodes_per_task * self.family.horizon,
            init_log_std=config.init_log_std,
            time_inputs=config.time_inputs,
            separate_critic=config.separate_critic,
            prev_obs_inputs=config.prev_obs_inputs,
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr, eps=1e-5)
        self.task_sampler = make_task_sampler(config, self.family)
        self.iteration = 0
        self.env_steps = 0
        self.value_mean, self.value_std = 0.0, 1.0  # the critic's units (normalize_values)

    def trainable(self) -> dict[str, torch.Tensor]:
        return dict(self.policy.named_parameters())

    def fit_init_tensors(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Another run's tensors, with a Transformer's position tables (``param.pos``,
        ``param.critic_pos``) fitted to this run's trial length, so a policy trained on shorter
        (or longer) trials can start this one: the rows both tables have are the other run's, the
        positions only this run reaches keep this model's fresh rows. Other tensors pass as they
        are (and are checked by the caller)."""
        if self.policy.kind != "transformer":
            return tensors
        out = dict(tensors)
        for prefix in self.policy.streams:
            mine, theirs = getattr(self.policy, prefix + "pos"), tensors.get(f"param.{prefix}pos")
            if theirs is None or theirs.shape[1:] != mine.shape[1:]:
                continue  # missing or of another width: refused by the caller
            fitted = mine.detach().cpu().clone()
            rows = min(theirs.shape[0], mine.shape[0])
            fitted[:rows] = theirs[:rows]
            out[f"param.{prefix}pos"] = fitted
        return out

    def step(self) -> dict[str, float]:
        """Run one iteration and return its metrics."""
        cfg, it, pol = self.config, self.iteration, self.policy
        t0 = time.perf_counter()
        lr = cfg.lr * (1.0 - it / cfg.meta_iterations if cfg.lr_schedule == "linear" else 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        task_idx, tasks = self.task_sampler.sample(cfg.meta_batch_size, it)
        trials = collect_trials(
            self.family,
            pol,
            tasks,
            cfg.episodes_per_task,
            derive_seed(cfg.seed, 1, it),
            self.device,
        )
        t_sample = time.perf_counter() - t0
        ep = trials.episode_returns
        self.task_sampler.update(task_idx, ep[:, 0], ep[:, -1])
        m = trials.mask
        values = (trials.values * self.value_std + self.value_mean) * m
        adv = trial_advantages(trials._replace(values=values), cfg.gamma, cfg.gae_lambda)
        returns = adv + values
        if cfg.normalize_values:
            self.value_mean = float(returns[m > 0].mean())
            self.value_std = max(float(returns[m > 0].std()), 1e-6) if m.sum() > 1 else 1.0
        targets = (returns - self.value_mean) / self.value_std
        norm_adv = (adv - adv[m > 0].mean()) / (adv[m > 0].std() + 1e-8) * m
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, 2, it))
        B = cfg.meta_batch_size
        stats = []
        for _ in range(cfg.ppo_epochs):
            perm = torch.randperm(B, generator=gen)
            for mb in perm.chunk(cfg.minibatches):
                mb = mb.to(self.device)
                dist, v, _ = pol(trials.inputs[mb])
                logp = pol.dist_ops.log_prob(dist, trials.actions[mb])
                ratio = torch.exp(logp - trials.log_probs[mb])
                a, mm = norm_adv[mb], m[mb]
                n = mm.sum().clamp_min(1)
                pg = (
                    -(
                        torch.minimum(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a) * mm
                    ).sum()
                    / n
                )
                vf = (((v - targets[mb]) ** 2) * mm).sum() / n
                ent = (pol.dist_ops.entropy(dist) * mm).sum() / n
                loss = pg + cfg.value_coef * vf - cfg.entropy_coef * ent
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(pol.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    kl = ((trials.log_probs[mb] - logp) * mm).sum() / n
                stats.append(tuple(float(x.detach()) for x in (pg, vf, ent, kl)))
        check_finite(self.trainable(), it)
        steps = trials.num_steps
        self.env_steps += steps
        self.iteration += 1
        pg, vf, ent, kl = (float(np.mean(x)) for x in zip(*stats, strict=True))
        return {
            "iteration": float(self.iteration),
            "env_steps": float(self.env_steps),
            "return/pre_adapt": float(ep[:, 0].mean()),
            "return/post_adapt": float(ep[:, -1].mean()),
            "return/trial": float(ep.sum(1).mean()),
            "outer/policy_loss": pg,
            "outer/value_loss": vf,
            "outer/entropy": ent,
            "outer/kl": kl,
            "outer/lr": lr,
            "time/iteration_s": time.perf_counter() - t0,
            "time/sampling_s": t_sample,
            "time/env_steps_per_s": steps / t_sample,
        }


def evaluation_trials(
    learner: RL2, num_tasks: int = 100, seed: int = 1000, deterministic: bool = False
) -> tuple[list[Any], Trials]:
    """The held-out tasks :func:`evaluate_rl2` plays and one trial on each (same seeds)."""
    from fastadapt.tasks.core import sample_tasks

    lc = learner.config
    tasks = sample_tasks(learner.family, num_tasks, lc.seed, split="test")
    trials = collect_trials(
        learner.family,
        learner.policy,
        tasks,
        lc.episodes_per_task,
        derive_seed(seed, 7),
        learner.device,
        deterministic,
    )
    return tasks, trials


def evaluate_rl2(
    learner: RL2, num_tasks: int = 100, seed: int = 1000, deterministic: bool = False
) -> dict[str, Any]:
    """Held-out tasks: the return of each episode within a trial (mean and 95% CI over tasks) and
    the total reward per trial. Adaptation happens in the hidden state, without gradients."""
    from fastadapt.evaluation import mean_ci95, summarize
    from fastadapt.tasks.core import task_to_dict

    lc = learner.config
    tasks, trials = evaluation_trials(learner, num_tasks, seed, deterministic)
    ep = trials.episode_returns.cpu().numpy()  # [tasks, episodes]
    total, total_ci = mean_ci95(ep.sum(1))
    return {
        "env": lc.env,
        "algorithm": "rl2",
        "meta_iterations": learner.iteration,
        "x_label": "episode within the trial",
        "protocol": {
            "num_tasks": num_tasks,
            "episodes_per_trial": lc.episodes_per_task,
            "seed": seed,
            "deterministic": deterministic,
        },
        "test_tasks": [task_to_dict(t) for t in tasks[:10]],
        "total_reward": {"mean": total, "ci95": total_ci},
        "returns": {"rl2": summarize(ep.T)},
    }
