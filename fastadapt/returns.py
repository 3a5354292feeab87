"""Discounted returns, GAE and the MAML paper's linear feature baseline. Pure functions.

Index convention (pinned once, tested once): time is axis ``-2`` of ``[..., T, E]`` tensors. Step ``t``
has reward ``r_t`` and value ``V_t = V(s_t)``. An episode's last step is ``L - 1`` for its length
``L``; if it *terminated* there the next value is 0, if it was *truncated* the next value is
``bootstrap_values = V(s_L)``. So

    delta_t = r_t + gamma * V_{t+1} - V_t
    A_t     = delta_t + gamma * lambda * A_{t+1}      (A = 0 past the last step)

with ``V_L`` replaced as above. ``lambda = 1`` gives Monte Carlo returns minus values (plus the
discounted bootstrap), ``lambda = 0`` gives TD(0) errors.
"""

from __future__ import annotations

import torch

from fastadapt.errors import ConfigError


def _check(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> None:
    if rewards.shape != mask.shape:
        raise ConfigError(f"rewards {tuple(rewards.shape)} and mask {tuple(mask.shape)} differ")
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"gamma must be in [0, 1], got {gamma}")


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = sum_k gamma^k r_{t+k}`` within each episode (no bootstrap), zero on masked steps.

    ``rewards`` and ``mask`` are ``[..., T, E]``.
    """
    _check(rewards, mask, gamma)
    T = rewards.shape[-2]
    out = torch.zeros_like(rewards)
    acc = torch.zeros_like(rewards[..., 0, :])
    for t in range(T - 1, -1, -1):
        acc = (rewards[..., t, :] + gamma * acc) * mask[..., t, :]
        out[..., t, :] = acc
    return out


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_values: torch.Tensor,
    terminated: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalized advantage estimates, ``[..., T, E]`` (zero on masked steps).

    ``values`` are ``V(s_t)`` ``[..., T, E]``; ``bootstrap_values`` are ``V(s_L)`` ``[..., E]`` for
    the observation after each episode's last step, used only if that step did not terminate.
    """
    _check(rewards, mask, gamma)
    if not 0.0 <= lam <= 1.0:
        raise ConfigError(f"GAE lambda must be in [0, 1], got {lam}")
    if values.shape != rewards.shape or terminated.shape != rewards.shape:
        raise ConfigError("rewards, values, terminated and mask must share one shape [..., T, E]")
    T = rewards.shape[-2]
    # V_{t+1}: the next step's value while the episode goes on, else the bootstrap value.
    next_mask = torch.cat([mask[..., 1:, :], torch.zeros_like(mask[..., :1, :])], dim=-2)
    next_values = torch.cat([values[..., 1:, :], torch.zeros_like(values[..., :1, :])], dim=-2)
    is_last = mask * (1 - next_mask)
    next_values = next_values * next_mask + is_last * bootstrap_values.unsqueeze(-2)
    next_values = next_values * (1 - terminated)
    deltas = (rewards + gamma * next_values - values) * mask
    adv = torch.zeros_like(rewards)
    acc = torch.zeros_like(rewards[..., 0, :])
    for t in range(T - 1, -1, -1):
        acc = deltas[..., t, :] + gamma * lam * next_mask[..., t, :] * acc
        adv[..., t, :] = acc
    return adv


# ---- the linear feature baseline (Duan et al. 2016; used by the MAML paper) -------------------


def baseline_features(obs: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
    """Features ``[obs, obs^2, t, t^2, t^3, 1]`` with ``obs`` clipped to [-10, 10] and ``t`` the
    step index / 100. ``obs [..., D]``, ``time`` broadcastable to ``obs[..., 0]``."""
    o = obs.clamp(-10, 10)
    al = (time / 100.0).expand_as(o[..., 0]).unsqueeze(-1)
    return torch.cat([o, o * o, al, al**2, al**3, torch.ones_like(al)], dim=-1)


def _time_index(T: int, E: int, like: torch.Tensor) -> torch.Tensor:
    return torch.arange(T, dtype=like.dtype, device=like.device).view(T, 1).expand(T, E)


def fit_linear_baseline(
    obs: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, reg_coeff: float = 1e-5
) -> torch.Tensor:
    """Ridge regression of ``returns`` on the features, one weight vector per task.

    ``obs [tasks, T, E, D]``, ``returns``/``mask [tasks, T, E]`` -> weights ``[tasks, F]``. Solves
    ``(X^T X + reg I) w = X^T y`` over the task's real steps, raising ``reg`` tenfold (up to 5 times)
    if the solution is not finite, as the reference implementation does.
    """
    tasks, T, E, _ = obs.shape
    X = baseline_features(obs, _time_index(T, E, obs)) * mask.unsqueeze(-1)
    X = X.reshape(tasks, T * E, -1).double()
    y = (returns * mask).reshape(tasks, T * E, 1).double()
    XtX, Xty = X.transpose(1, 2) @ X, X.transpose(1, 2) @ y
    eye = torch.eye(X.shape[-1], dtype=X.dtype, device=X.device)
    reg = reg_coeff
    for _ in range(5):
        w = torch.linalg.solve(XtX + reg * eye, Xty)
        if torch.isfinite(w).all():
            break
        reg *= 10
    return w.squeeze(-1).to(obs.dtype)


def predict_linear_baseline(
    weights: torch.Tensor, obs: torch.Tensor, time: torch.Tensor
) -> torch.Tensor:
    """Baseline values at ``obs [tasks, ..., D]`` and step indices ``time``, weights ``[tasks, F]``."""
    feats = baseline_features(obs, time)
    w = weights.view(weights.shape[0], *([1] * (feats.dim() - 2)), weights.shape[1])
    return (feats * w).sum(-1)


def linear_baseline_advantages(episodes, gamma: float, lam: float, reg_coeff: float = 1e-5):
    """GAE advantages of an :class:`~fastadapt.sampling.Episodes` batch with a linear baseline
    fitted per task to its discounted returns. Returns ``(advantages, returns)``, both
    ``[tasks, T, E]``; truncated episodes bootstrap from the baseline at ``(s_L, L)``."""
    returns = discounted_returns(episodes.rewards, episodes.mask, gamma)
    w = fit_linear_baseline(episodes.obs, returns, episodes.mask, reg_coeff)
    T, E = episodes.mask.shape[-2:]
    values = (
        predict_linear_baseline(w, episodes.obs, _time_index(T, E, episodes.obs)) * episodes.mask
    )
    boot = predict_linear_baseline(w, episodes.bootstrap_obs, episodes.lengths.to(values.dtype))
    adv = gae(episodes.rewards, values, boot, episodes.terminated, episodes.mask, gamma, lam)
    return adv, returns


def normalize_advantages(adv: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per task: subtract the masked mean and divide by the masked std (``[tasks, T, E]``)."""
    dims = tuple(range(1, adv.dim()))
    n = mask.sum(dims, keepdim=True).clamp_min(1)
    mean = (adv * mask).sum(dims, keepdim=True) / n
    var = ((adv - mean) ** 2 * mask).sum(dims, keepdim=True) / n
    return (adv - mean) / (var.sqrt() + eps) * mask
