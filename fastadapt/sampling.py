"""Closed-loop sampling: lockstep episodes for many tasks into one time-major batch.

Gaussian policies act in normalized coordinates: an action ``a`` in ``[-1, 1]^n`` maps to the Box's
bounds, ``low + (a + 1) / 2 * (high - low)``, clipped to them (``to_env_action``). This is rllab's
``normalize`` wrapper, under which the MAML paper's numbers were produced: a unit initial standard
deviation then means "half the action range", whatever the units. Boxes with infinite bounds are
passed through unscaled.

``collect_episodes`` runs ``episodes_per_task`` episodes of every task at once, each task under its own
policy parameters, and returns :class:`Episodes` with axes ``[tasks, T, episodes, ...]``. ``T`` is the
longest episode in the batch (at most the family's horizon); ``mask`` marks real steps. Episodes start
together and are never reset automatically: after its last step an episode's slots are masked out.

``collect_step_budget`` is the other unit of a batch, the one rllab's ``batch_size`` (and so the MAML
reference code) counts in: whole episodes are collected per task, ``episodes_per_task`` at a time,
until the task has at least ``episodes_per_task x horizon`` steps. A task whose policy finishes
early (reaching a goal) so gets more, shorter episodes. Tasks then hold different numbers of
episodes; the batch pads them with empty episodes (``lengths == 0``, fully masked), which
:attr:`Episodes.mean_return` and every masked loss ignore. ``collect`` picks the unit by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from fastadapt.errors import ConfigError, NonFiniteError
from fastadapt.policies import MLPPolicy, Params
from fastadapt.tasks.core import TaskFamily, derive_seed

#: the units a batch's size can be given in (see the module docstring)
BATCH_UNITS = ("episodes", "steps")


def check_batch_unit(unit: str) -> None:
    """Refuse a batch unit other than those in :data:`BATCH_UNITS`."""
    if unit not in BATCH_UNITS:
        raise ConfigError(
            f"unknown batch unit {unit!r} (batch_unit); known: {', '.join(BATCH_UNITS)}"
        )


class Episodes(NamedTuple):
    """A time-major batch of episodes. ``t`` indexes steps; step ``t`` took ``actions[:, t]`` in
    ``obs[:, t]`` and received ``rewards[:, t]``.

    Shapes: ``obs [tasks, T, E, obs_dim]``, ``actions [tasks, T, E, A]`` (float) or
    ``[tasks, T, E]`` (long), ``log_probs``/``rewards``/``mask``/``terminated`` ``[tasks, T, E]``,
    ``bootstrap_obs [tasks, E, obs_dim]`` (the observation after each episode's last step, used to
    bootstrap a truncated episode), ``lengths [tasks, E]``.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    terminated: torch.Tensor
    bootstrap_obs: torch.Tensor
    lengths: torch.Tensor

    @property
    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return of each episode, ``[tasks, E]``."""
        return (self.rewards * self.mask).sum(1)

    @property
    def num_episodes(self) -> torch.Tensor:
        """Number of real (non-empty) episodes of each task, ``[tasks]``."""
        return (self.lengths > 0).sum(1)

    @property
    def mean_return(self) -> torch.Tensor:
        """Mean undiscounted return over each task's real episodes, ``[tasks]`` (empty padding
        episodes excluded)."""
        return self.episode_returns.sum(1) / self.num_episodes.clamp_min(1)

    @property
    def num_steps(self) -> int:
        """Number of real environment steps in the batch."""
        return int(self.lengths.sum())

    def to(self, device: torch.device | str) -> Episodes:
        """The same batch on ``device``."""
        return Episodes(*(x.to(device) for x in self))


class ActionMap:
    """The map from policy actions to environment actions for one action space."""

    def __init__(self, space: gym.spaces.Space) -> None:
        self.discrete = isinstance(space, gym.spaces.Discrete)
        self.scale = self.low = self.high = None
        if not self.discrete:
            low = np.asarray(space.low, dtype=np.float32)
            high = np.asarray(space.high, dtype=np.float32)
            self.low, self.high = low, high
            if np.all(np.isfinite(low)) and np.all(np.isfinite(high)):
                self.scale = 0.5 * (high - low)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        if self.discrete:
            return a
        if self.scale is not None:
            a = self.low + (a + 1.0) * self.scale
        return np.clip(a, self.low, self.high).astype(np.float32)


def to_env_action(space: gym.spaces.Space, a: np.ndarray) -> np.ndarray:
    """Policy actions to environment actions (see the module docstring)."""
    return ActionMap(space)(a)


def split_seed(seed: int) -> tuple[int, int]:
    """The environment seed and the action-noise seed one sampling seed stands for."""
    env_ss, act_ss = np.random.SeedSequence(seed).spawn(2)
    return int(env_ss.generate_state(1)[0]), int(act_ss.generate_state(1)[0])


@torch.no_grad()
def collect_episodes(
    family: TaskFamily,
    policy: MLPPolicy,
    params: Params,
    tasks: Sequence[Any],
    episodes_per_task: int,
    seed: int,
    device: torch.device | str = "cpu",
    deterministic: bool = False,
    task_ids: Sequence[int] | None = None,
) -> Episodes:
    """Sample ``episodes_per_task`` episodes of every task with the policy in closed loop.

    ``params`` are shared (one set for all tasks) or per task (leading dim ``len(tasks)``). Continuous
    actions are clipped to the action space's bounds before stepping; log-probs are those of the
    unclipped samples. The same ``seed`` gives the same batch. ``deterministic`` acts greedily.
    Raises :class:`NonFiniteError` naming the task and step if the environment returns NaN or inf
    (``task_ids`` names the tasks in messages; default their positions in ``tasks``).
    """
    n_tasks, E = len(tasks), episodes_per_task
    if n_tasks == 0 or E <= 0:
        raise ConfigError(f"need at least one task and episode, got {n_tasks} tasks, E={E}")
    per_task = params["layers.0.weight"].dim() == 3
    if per_task and params["layers.0.weight"].shape[0] != n_tasks:
        raise ConfigError(
            f"per-task parameters have {params['layers.0.weight'].shape[0]} rows for {n_tasks} tasks"
        )
    env_seed, act_seed = split_seed(seed)
    env = family.make_batch(tasks, E, seed=env_seed)
    gen = torch.Generator().manual_seed(act_seed)  # on the CPU: the same actions on any device
    N, H = env.num_envs, family.horizon
    space = family.action_space
    discrete = isinstance(space, gym.spaces.Discrete)
    if discrete != policy.discrete:
        raise ConfigError(
            f"a {'categorical' if policy.discrete else 'Gaussian'} policy cannot act in "
            f"{family.id}, whose action space is {space}"
        )
    env_action_of = ActionMap(space)

    obs_dim = policy.obs_dim
    obs_buf = np.zeros((H, N, obs_dim), dtype=np.float32)
    act_buf = (
        np.zeros((H, N), dtype=np.int64)
        if discrete
        else np.zeros((H, N, policy.action_dim), np.float32)
    )
    logp_buf = np.zeros((H, N), dtype=np.float32)
    rew_buf = np.zeros((H, N), dtype=np.float32)
    mask_buf = np.zeros((H, N), dtype=np.float32)
    term_buf = np.zeros((H, N), dtype=np.float32)
    boot = np.zeros((N, obs_dim), dtype=np.float32)
    lengths = np.zeros(N, dtype=np.int64)
    alive = np.ones(N, dtype=bool)

    obs = np.asarray(env.reset(), dtype=np.float32)
    check_finite_array(obs, "observations", 0, E, family.id, task_ids=task_ids)
    T = H
    for t in range(H):
        obs_buf[t] = obs
        mask_buf[t] = alive
        x = torch.from_numpy(obs).to(device)
        if per_task:
            x = x.view(n_tasks, E, obs_dim)
        d = policy.dist(params, x)
        a = policy.mode(d) if deterministic else policy.sample(d, gen)
        logp = policy.log_prob(d, a)
        a_np = a.reshape(N, *a.shape[2 if per_task else 1 :]).cpu().numpy()
        logp_buf[t] = logp.reshape(N).cpu().numpy()
        act_buf[t] = a_np
        obs, reward, terminated, truncated = env.step(env_action_of(a_np))
        obs = np.asarray(obs, dtype=np.float32)
        check_finite_array(reward, "rewards", t, E, family.id, alive, task_ids)
        check_finite_array(obs, "observations", t + 1, E, family.id, alive, task_ids)
        rew_buf[t] = reward
        term_buf[t] = terminated & alive
        ended = alive & (terminated | truncated)
        boot[ended] = obs[ended]
        lengths += alive
        alive = alive & ~ended
        if not alive.any():
            T = t + 1
            break

    def tm(a: np.ndarray) -> torch.Tensor:  # [T, N, ...] -> [tasks, T, E, ...]
        a = a[:T].reshape(T, n_tasks, E, *a.shape[2:])
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, 1, 0))).to(device)

    return Episodes(
        obs=tm(obs_buf),
        actions=tm(act_buf),
        log_probs=tm(logp_buf),
        rewards=tm(rew_buf) * tm(mask_buf),
        mask=tm(mask_buf),
        terminated=tm(term_buf),
        bootstrap_obs=torch.from_numpy(boot.reshape(n_tasks, E, obs_dim)).to(device),
        lengths=torch.from_numpy(lengths.reshape(n_tasks, E)).to(device),
    )


_TIME_FIELDS = ("obs", "actions", "log_probs", "rewards", "mask", "terminated")


def collect_step_budget(
    family: TaskFamily,
    policy: MLPPolicy,
    params: Params,
    tasks: Sequence[Any],
    episodes_per_task: int,
    seed: int,
    device: torch.device | str = "cpu",
    deterministic: bool = False,
) -> Episodes:
    """Whole episodes per task until each task has at least ``episodes_per_task x horizon`` steps.

    Episodes are collected in rounds of ``episodes_per_task`` per task (round 0 with ``seed``, so a
    batch whose episodes all run the full horizon equals :func:`collect_episodes`'s), each round
    only for the tasks still short of the budget. A task keeps its episodes in collection order up
    to the first that reaches the budget. The batch has as many episode columns as the task with
    the most; the others are padded with empty episodes.
    """
    E = episodes_per_task
    budget = E * family.horizon
    n_tasks = len(tasks)
    per_task = params["layers.0.weight"].dim() == 3
    counts = np.zeros(n_tasks, dtype=np.int64)  # steps kept per task
    kept = np.zeros(n_tasks, dtype=np.int64)  # episodes kept per task
    # (round batch, row in it, task index, first column, episodes kept)
    pieces: list[tuple[Episodes, int, int, int, int]] = []
    todo = np.arange(n_tasks)
    r = 0
    while len(todo):
        p = {k: v[torch.as_tensor(todo)] for k, v in params.items()} if per_task else params
        round_seed = seed if r == 0 else derive_seed(seed, 11, r)
        sub_tasks = [tasks[i] for i in todo]
        ep = collect_episodes(
            family, policy, p, sub_tasks, E, round_seed, device, deterministic, todo.tolist()
        )
        cum = np.cumsum(ep.lengths.cpu().numpy(), axis=1)  # [len(todo), E]
        # episodes up to (and including) the first that reaches the budget
        keep = np.minimum((cum < (budget - counts[todo])[:, None]).sum(1) + 1, E)
        pieces += [
            (ep, row, int(i), int(kept[i]), int(k))
            for row, (i, k) in enumerate(zip(todo, keep, strict=True))
        ]
        counts[todo] += cum[np.arange(len(todo)), keep - 1]
        kept[todo] += keep
        todo = todo[counts[todo] < budget]
        r += 1
    if r == 1:  # one round: already a rectangular batch
        return pieces[0][0]
    cols = int(kept.max())
    T = max(int(piece[0].mask.shape[1]) for piece in pieces)
    first = pieces[0][0]
    out = {  # fields with a time axis are [tasks, T, E, ...]; bootstrap_obs, lengths [tasks, E, ...]
        f: torch.zeros(
            (n_tasks, T, cols, *x.shape[3:])
            if f in _TIME_FIELDS
            else (n_tasks, cols, *x.shape[2:]),
            dtype=x.dtype,
            device=x.device,
        )
        for f, x in first._asdict().items()
    }
    for ep, row, i, e0, keep in pieces:
        t = int(ep.mask.shape[1])
        for f, x in ep._asdict().items():
            if f in _TIME_FIELDS:
                out[f][i, :t, e0 : e0 + keep] = x[row, :, :keep]
            else:
                out[f][i, e0 : e0 + keep] = x[row, :keep]
    return Episodes(**out)


def collect(
    family: TaskFamily,
    policy: MLPPolicy,
    params: Params,
    tasks: Sequence[Any],
    episodes_per_task: int,
    seed: int,
    device: torch.device | str = "cpu",
    unit: str = "episodes",
) -> Episodes:
    """A batch of ``episodes_per_task`` episodes per task (``unit="episodes"``) or of whole
    episodes up to ``episodes_per_task x horizon`` steps per task (``unit="steps"``)."""
    check_batch_unit(unit)
    fn = collect_step_budget if unit == "steps" else collect_episodes
    return fn(family, policy, params, tasks, episodes_per_task, seed, device)


def check_finite_array(
    x: np.ndarray,
    what: str,
    t: int,
    E: int,
    family_id: str,
    alive: np.ndarray | None = None,
    task_ids: Sequence[int] | None = None,
) -> None:
    """Raise :class:`NonFiniteError` naming the task, episode and step of the first non-finite
    entry among live environments (``E`` environments per task; task ``k`` is named
    ``task_ids[k]`` if given)."""
    bad = ~np.isfinite(x)
    if bad.ndim > 1:
        bad = bad.reshape(len(bad), -1).any(axis=1)
    if alive is not None:
        bad &= alive
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        task = i // E if task_ids is None else task_ids[i // E]
        raise NonFiniteError(
            f"{family_id}: non-finite {what} from task {task} (episode {i % E}) at step {t}"
        )
