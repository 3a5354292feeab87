"""Pieces every gradient-based learner composes: policy and parameter set-up, checkpointable state,
finiteness checks. Plain functions, no base class."""

from __future__ import annotations

import time
from typing import Any

import torch

from fastadapt.adaptation import sample_and_adapt
from fastadapt.errors import NonFiniteError
from fastadapt.policies import MLPPolicy, Params, init_for_family, policy_for_family
from fastadapt.runtime import resolve_device
from fastadapt.tasks import make_family
from fastadapt.tasks.core import TaskFamily, derive_seed


def setup_learner(learner: Any, config: Any, family: TaskFamily | None) -> None:
    """The set-up every MLP-policy learner shares: validated config, family, policy, device,
    seeded meta-parameters, task sampler, zeroed counters."""
    from fastadapt.task_sampling import make_task_sampler

    config.validate()
    learner.config = config
    learner.family, learner.policy = build_family_and_policy(config, family)
    learner.device = resolve_device(config.device)
    learner.meta_params = init_meta_params(
        learner.policy, config.seed, learner.device, init_for_family(config.env, config.init)
    )
    learner.task_sampler = make_task_sampler(config, learner.family)
    learner.iteration = 0
    learner.env_steps = 0


class Checkpointable:
    """What a learner's checkpoint holds, from its ``trainable()``, ``optimizer``, ``task_sampler``,
    ``device``, counters, and the attributes named in ``extra_meta`` (JSON scalars)."""

    extra_meta: tuple[str, ...] = ()
    param_meta: tuple[str, ...] = ()
    """The part of ``extra_meta`` that defines the parameters' units (a critic's normalization),
    carried with the parameters when another run starts from them (``init_from``)."""

    def state_tensors(self: Any) -> dict[str, torch.Tensor]:
        """Every tensor needed to continue exactly: parameters, optimizer state, sampler scores."""
        return {**pack_state(self.trainable(), self.optimizer), **self.task_sampler.state_tensors()}

    def state_meta(self: Any) -> dict[str, Any]:
        """JSON-ready counters (and ``extra_meta``); ``wall_s`` is the training time so far, so
        a resumed run's ``time/wall_s`` continues instead of restarting at 0."""
        return {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "wall_s": float(getattr(self, "wall_s", 0.0)),
            **{k: getattr(self, k) for k in self.extra_meta},
        }

    def fit_init_tensors(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Another run's tensors fitted to this learner before ``init_from`` copies them (sizes
        that depend on the run's settings); by default unchanged."""
        return tensors

    def load_state(self: Any, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore from :meth:`state_tensors` / :meth:`state_meta` (shapes already checked)."""
        unpack_state(self.trainable(), self.optimizer, tensors, self.device)
        self.task_sampler.load_state(tensors)
        self.iteration = int(meta["iteration"])
        self.env_steps = int(meta["env_steps"])
        self.wall_s = float(meta.get("wall_s", 0.0))
        for k in self.extra_meta:
            setattr(self, k, meta[k])


def sample_iteration(learner: Any, lrs: list, step_fn: Any = None):
    """This iteration's tasks (uniform or prioritized), their episodes before each inner step and
    after the last (``sample_and_adapt``), and the sampler's update. Returns
    ``(trace, pre_returns, post_returns, seconds)``; returns are per task."""
    cfg, it = learner.config, learner.iteration
    t0 = time.perf_counter()
    task_idx, tasks = learner.task_sampler.sample(cfg.meta_batch_size, it)
    K = cfg.num_inner_steps
    trace = sample_and_adapt(
        learner.family,
        learner.policy,
        learner.meta_params,
        tasks,
        K,
        lrs,
        cfg.episodes_per_task,
        [derive_seed(cfg.seed, 1, it, k) for k in range(K + 1)],
        cfg.gamma,
        cfg.gae_lambda,
        cfg.normalize_advantages,
        learner.device,
        step_fn,
        cfg.batch_unit,
    )
    pre, post = (trace.episodes[i].mean_return for i in (0, -1))
    learner.task_sampler.update(task_idx, pre, post)
    return trace, pre, post, time.perf_counter() - t0


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
        config.context_params,
    )
    return family, policy


def init_meta_params(
    policy: MLPPolicy, seed: int, device: torch.device, scheme: str = "small-output"
) -> Params:
    """Seeded initial parameters (initialization ``scheme``) as leaf tensors that require grad."""
    init = policy.init_params(torch.Generator().manual_seed(derive_seed(seed, 0)), scheme)
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
    """Inverse of :func:`pack_state` (shapes already checked by the caller). The learner gets
    its own copies, so ``tensors`` may be another live learner's :func:`pack_state`."""
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
                    k: (v.clone() if k == "step" else v.to(device, copy=True))
                    for k, v in st.items()
                }


def check_finite(trainable: dict[str, torch.Tensor], iteration: int) -> None:
    """Raise :class:`NonFiniteError` naming the first non-finite tensor."""
    for name, v in trainable.items():
        if not torch.isfinite(v).all():
            raise NonFiniteError(
                f"parameter {name} became non-finite at meta-iteration {iteration}"
            )
