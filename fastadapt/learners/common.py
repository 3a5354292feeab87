"""Pieces every gradient-based learner composes: policy and parameter set-up, checkpointable state,
finiteness checks. Plain functions, no base class."""

from __future__ import annotations

from typing import Any

import torch

from fastadapt.errors import NonFiniteError
from fastadapt.policies import MLPPolicy, Params, policy_for_family
from fastadapt.tasks import make_family
from fastadapt.tasks.core import TaskFamily, derive_seed


def build_family_and_policy(config: Any, family: TaskFamily | None) -> tuple[TaskFamily, MLPPolicy]:
    """The config's family (or the given one) and an MLP policy for its spaces."""
    family = family or make_family(config.env, **config.env_options())
    policy = policy_for_family(
        config.env,
        family.observation_space,
        family.action_space,
        config.hidden or None,
        config.activation or None,
        config.init_log_std,
    )
    return family, policy


def init_meta_params(policy: MLPPolicy, seed: int, device: torch.device) -> Params:
    """Seeded initial parameters as leaf tensors that require grad."""
    init = policy.init_params(torch.Generator().manual_seed(derive_seed(seed, 0)))
    return {k: v.to(device).requires_grad_(True) for k, v in init.items()}


def pack_state(
    trainable: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer | None
) -> dict[str, torch.Tensor]:
    """Trainable tensors and the optimizer's per-parameter state, by name."""
    out = {f"param.{k}": v.detach().cpu() for k, v in trainable.items()}
    if optimizer is not None:
        names = list(trainable)
        for i, p in enumerate(optimizer.param_groups[0]["params"]):
            for key, val in optimizer.state.get(p, {}).items():
                out[f"optim.{names[i]}.{key}"] = torch.as_tensor(val).detach().cpu()
    return out


def unpack_state(
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None,
    tensors: dict[str, torch.Tensor],
    device: torch.device,
) -> None:
    """Inverse of :func:`pack_state` (shapes already checked by the caller)."""
    with torch.no_grad():
        for k, v in trainable.items():
            v.copy_(tensors[f"param.{k}"].to(device))
    if optimizer is not None:
        names = list(trainable)
        for i, p in enumerate(optimizer.param_groups[0]["params"]):
            prefix = f"optim.{names[i]}."
            st = {key[len(prefix) :]: val for key, val in tensors.items() if key.startswith(prefix)}
            if st:
                optimizer.state[p] = {
                    k: (v.clone() if k == "step" else v.to(device)) for k, v in st.items()
                }


def check_finite(trainable: dict[str, torch.Tensor], iteration: int) -> None:
    """Raise :class:`NonFiniteError` naming the first non-finite tensor."""
    for name, v in trainable.items():
        if not torch.isfinite(v).all():
            raise NonFiniteError(
                f"parameter {name} became non-finite at meta-iteration {iteration}"
            )
