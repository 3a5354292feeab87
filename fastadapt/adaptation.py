"""Adaptation: one pure function ``params -> adapted params``, shared by sampling, meta-loss and
meta-test.

An inner step is a vanilla policy-gradient (REINFORCE with the linear baseline) step on each task's own
episodes, for all tasks at once: shared parameters are viewed per task (``expand``) and the gradient of
the sum of per-task losses gives each task its own gradient, so no Python loop over tasks runs.
``first_order=False`` keeps the graph through the steps (second-order MAML); ``first_order=True`` treats
the inner gradients as constants (FOMAML). Inner learning rates are floats (MAML; one per step allowed)
or tensors shaped like the parameters (Meta-SGD, meta-learned with the policy).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch

from fastadapt.errors import ConfigError
from fastadapt.policies import MLPPolicy, Params, per_task_params
from fastadapt.returns import linear_baseline_advantages, normalize_advantages
from fastadapt.sampling import Episodes, collect

#: A learning rate per inner step: a float (MAML) or a tensor per parameter (Meta-SGD).
InnerLR = float | Mapping[str, torch.Tensor]

#: Inner losses :func:`inner_loss` knows.
INNER_OBJECTIVES = ("vpg", "lvc")


def check_inner_objective(objective: str) -> None:
    """Refuse an inner objective other than those in :data:`INNER_OBJECTIVES`."""
    if objective not in INNER_OBJECTIVES:
        raise ConfigError(
            f"unknown inner objective {objective!r} (inner_objective); known: "
            f"{', '.join(INNER_OBJECTIVES)}"
        )


class AdaptBatch(NamedTuple):
    """What an inner step needs from a batch of episodes, ``[tasks, T, E, ...]``. Advantages are
    fixed data: they depend on the episodes and the baseline, not on the policy parameters."""

    obs: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    log_probs: torch.Tensor | None = None  # the behaviour policy's, for PPO-style inner steps


def make_adapt_batch(
    episodes: Episodes, gamma: float, gae_lambda: float, normalize: bool = True, pack: bool = False
) -> AdaptBatch:
    """Advantages from the linear baseline (fitted per task) and GAE, optionally normalized per task.
    ``pack`` drops the padding a step-budget batch carries (:func:`pack_batch`)."""
    adv, _ = linear_baseline_advantages(episodes, gamma, gae_lambda)
    if normalize:
        adv = normalize_advantages(adv, episodes.mask)
    batch = AdaptBatch(
        episodes.obs, episodes.actions, adv.detach(), episodes.mask, episodes.log_probs
    )
    return pack_batch(batch) if pack else batch


def flat_tasks(x: torch.Tensor) -> torch.Tensor:
    """``[tasks, T, E, ...] -> [tasks, T * E, ...]`` (the layout per-task parameters consume)."""
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])


def pack_batch(batch: AdaptBatch) -> AdaptBatch:
    """The same batch with its real steps only: ``[tasks, T, E, ...] -> [tasks, N, 1, ...]``, where
    ``N`` is the most real steps of any task (the rest masked). Every loss here sums over steps, so
    its value is unchanged; a step-budget batch (episodes of very different lengths, padded to the
    longest) so costs its real steps instead of ``T x E``."""
    m = flat_tasks(batch.mask) > 0
    n = int(m.sum(1).max())
    order = torch.argsort((~m).to(torch.uint8), dim=1, stable=True)[:, :n]  # real steps first

    def gather(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        f = flat_tasks(x)
        idx = order.view(*order.shape, *([1] * (f.dim() - 2))).expand(*order.shape, *f.shape[2:])
        return torch.gather(f, 1, idx).unsqueeze(2)

    return AdaptBatch(*(gather(x) for x in batch))


def subsample_batch(batch: AdaptBatch, every: int) -> AdaptBatch:
    """Every ``every``-th episode of each task; on a packed batch (one column), every ``every``-th
    step."""
    if batch.mask.shape[2] == 1:
        return AdaptBatch(*(None if x is None else x[:, ::every] for x in batch))
    return AdaptBatch(*(None if x is None else x[:, :, ::every] for x in batch))


def per_task_log_probs(policy: MLPPolicy, params: Params, obs: torch.Tensor, actions: torch.Tensor):
    """Log-probs ``[tasks, T, E]`` of ``actions`` at ``obs`` under per-task (or shared) params."""
    d = policy.dist(params, flat_tasks(obs))
    return policy.log_prob(d, flat_tasks(actions)).view(obs.shape[:3])


def inner_loss(
    policy: MLPPolicy, params: Params, batch: AdaptBatch, objective: str = "vpg"
) -> torch.Tensor:
    """The inner loss of each task, ``[tasks]``, averaged over real steps.

    ``"vpg"``: REINFORCE, ``-log pi(a|s) A``. ``"lvc"``: ProMP's low-variance curvature objective,
    ``-(pi(a|s) / stop_grad(pi(a|s))) A``: the same value of the first derivative, a better-behaved
    second derivative (Rothfuss et al. 2019).
    """
    check_inner_objective(objective)
    logp = per_task_log_probs(policy, params, batch.obs, batch.actions)
    weight = torch.exp(logp - logp.detach()) if objective == "lvc" else logp
    n = batch.mask.sum((1, 2)).clamp_min(1)
    return -(weight * batch.advantages * batch.mask).sum((1, 2)) / n


def ppo_inner_loss(
    policy: MLPPolicy, params: Params, batch: AdaptBatch, clip: float
) -> torch.Tensor:
    """PPO's clipped surrogate per task, ``[tasks]``, against ``batch.log_probs``."""
    if batch.log_probs is None:
        raise ConfigError("a PPO inner step needs the behaviour policy's log-probs")
    logp = per_task_log_probs(policy, params, batch.obs, batch.actions)
    ratio = torch.exp(logp - batch.log_probs)
    surr = torch.minimum(
        ratio * batch.advantages, ratio.clamp(1 - clip, 1 + clip) * batch.advantages
    )
    n = batch.mask.sum((1, 2)).clamp_min(1)
    return -(surr * batch.mask).sum((1, 2)) / n


def adapt_step(
    policy: MLPPolicy,
    params: Params,
    batch: AdaptBatch,
    lr: InnerLR,
    first_order: bool = False,
    objective: str = "vpg",
) -> tuple[Params, Params]:
    """One inner step for every task. Returns ``(adapted_params, inner_grads)``, both per task.

    With ``first_order`` the returned gradients are detached, so the adapted parameters depend on
    ``params`` (and a tensor ``lr``) only through the update's first term.
    """
    return _gradient_step(
        lambda p: inner_loss(policy, p, batch, objective),
        params,
        batch.obs.shape[0],
        lr,
        first_order,
        policy.adapted_keys,
    )


def ppo_adapt_step(
    policy: MLPPolicy,
    params: Params,
    batch: AdaptBatch,
    lr: InnerLR,
    epochs: int = 4,
    clip: float = 0.2,
) -> tuple[Params, Params]:
    """``epochs`` full-batch gradient steps on PPO's clipped surrogate for every task (first-order).
    Returns the adapted parameters and the last step's gradients."""
    grads: Params = {}
    for _ in range(epochs):
        params, grads = _gradient_step(
            lambda p: ppo_inner_loss(policy, p, batch, clip),
            params,
            batch.obs.shape[0],
            lr,
            True,
            policy.adapted_keys,
        )
        params = {k: v.detach() for k, v in params.items()}
    return params, grads


def _gradient_step(
    loss_fn,
    params: Params,
    num_tasks: int,
    lr: InnerLR,
    first_order: bool,
    keys: Sequence[str] | None = None,
):
    """A gradient step on the parameters named in ``keys`` (all if ``None``); the others pass
    through, viewed per task."""
    tracked = torch.is_grad_enabled()  # under no_grad, take the step on plain values
    with torch.enable_grad():
        per_task = per_task_params(params, num_tasks)
        names = list(per_task) if keys is None else list(keys)
        inputs = [per_task[k] for k in names]
        if not (tracked and all(p.requires_grad for p in inputs)):
            per_task = {k: v.detach() for k, v in per_task.items()}
            inputs = [per_task[k].requires_grad_(True) for k in names]
        loss = loss_fn(per_task).sum()
        grads = torch.autograd.grad(loss, inputs, create_graph=tracked and not first_order)
    grad_map = {k: (g.detach() if first_order else g) for k, g in zip(names, grads, strict=True)}
    return apply_inner_update(per_task, grad_map, lr), grad_map


def apply_inner_update(params: Params, grads: Params, lr: InnerLR) -> Params:
    """``params - lr * grads`` with a float ``lr`` or per-parameter tensors (broadcast over tasks);
    parameters without a gradient (not adapted) are returned as they are."""
    if isinstance(lr, Mapping):
        return {**params, **{k: params[k] - lr[k] * g for k, g in grads.items()}}
    return {**params, **{k: params[k] - lr * g for k, g in grads.items()}}


def adapt(
    policy: MLPPolicy,
    params: Params,
    batches: Sequence[AdaptBatch],
    lrs: Sequence[InnerLR],
    first_order: bool = False,
    objective: str = "vpg",
) -> Params:
    """``len(batches)`` inner steps; step ``k`` uses ``batches[k]`` and ``lrs[k]``.

    ``batches[k]`` must hold episodes collected with the parameters after ``k`` steps (as sampling
    does); the meta-loss replays exactly this function on the stored batches.
    """
    return adaptation_path(policy, params, batches, lrs, first_order, objective)[-1]


def adaptation_path(
    policy: MLPPolicy,
    params: Params,
    batches: Sequence[AdaptBatch],
    lrs: Sequence[InnerLR],
    first_order: bool = False,
    objective: str = "vpg",
) -> list[Params]:
    """:func:`adapt`, returning the parameters after every step (``len(batches)`` of them, or
    ``[params]`` without a batch)."""
    if len(lrs) < len(batches):
        raise ConfigError(f"{len(batches)} inner steps need as many learning rates, got {len(lrs)}")
    path = []
    for batch, lr in zip(batches, lrs, strict=False):
        params, _ = adapt_step(policy, params, batch, lr, first_order, objective)
        path.append(params)
    return path or [params]


def inner_lr_schedule(inner_lr: float | Sequence[float], steps: int) -> list[float]:
    """A learning rate per step: a float for all steps, or a list whose last entry repeats."""
    lrs = [float(inner_lr)] if isinstance(inner_lr, (int, float)) else [float(x) for x in inner_lr]
    if not lrs or any(not lr > 0 for lr in lrs):
        raise ConfigError(f"inner learning rates must be positive, got {inner_lr}")
    return [lrs[min(i, len(lrs) - 1)] for i in range(steps)]


class AdaptationTrace(NamedTuple):
    """Episodes before each step and after the last (``len(steps) + 1``), the batches and the
    (detached) inner gradients of the steps, and the final per-task parameters (detached)."""

    episodes: list[Episodes]
    batches: list[AdaptBatch]
    grads: list[Params]
    params: Params


def sample_and_adapt(
    family,
    policy: MLPPolicy,
    params: Params,
    tasks: Sequence,
    num_steps: int,
    lrs: Sequence[InnerLR],
    episodes_per_task: int,
    seeds: Sequence[int],
    gamma: float,
    gae_lambda: float,
    normalize: bool = True,
    device: torch.device | str = "cpu",
    step_fn: Callable[..., tuple[Params, Params]] | None = None,
    unit: str = "episodes",
) -> AdaptationTrace:
    """Collect episodes, adapt one step, collect again, ... ``num_steps`` times, then collect once
    more: the loop that meta-training samples with and meta-test evaluates with.

    ``seeds`` holds one sampling seed per collection (``num_steps + 1``). ``step_fn(policy, params,
    batch, lr)`` is the inner step (default: the first-order value of :func:`adapt_step`).
    ``unit`` is the batch unit (``sampling.collect``): ``episodes_per_task`` episodes, or whole
    episodes up to ``episodes_per_task x horizon`` steps per task.
    """
    if len(seeds) < num_steps + 1:
        raise ConfigError(f"{num_steps} steps need {num_steps + 1} seeds, got {len(seeds)}")
    current = {k: v.detach() for k, v in params.items()}
    episodes, batches, grads = [], [], []
    for k in range(num_steps + 1):
        ep = collect(family, policy, current, tasks, episodes_per_task, seeds[k], device, unit)
        episodes.append(ep)
        if k == num_steps:
            break
        batch = make_adapt_batch(ep, gamma, gae_lambda, normalize, pack=unit == "steps")
        batches.append(batch)
        lr = {n: v.detach() for n, v in lrs[k].items()} if isinstance(lrs[k], Mapping) else lrs[k]
        if step_fn is None:
            current, g = adapt_step(policy, current, batch, lr, first_order=True)
        else:
            current, g = step_fn(policy, current, batch, lr)
        current = {name: v.detach() for name, v in current.items()}
        grads.append(g)
    return AdaptationTrace(episodes, batches, grads, current)
