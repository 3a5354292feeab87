"""MAML for RL (Finn et al. 2017) and Meta-SGD (Li et al. 2017), read top to bottom.

One meta-iteration:

1. sample ``meta_batch_size`` training tasks;
2. collect episodes with the meta-parameters, adapt, collect with each task's adapted parameters
   (``sample_and_adapt``; the inner step is ``adaptation.adapt_step``, taken differentiably, so its
   graph serves the meta-gradient at these meta-parameters);
3. build the meta-loss on the post-adaptation episodes; the outer optimizer re-evaluates it at new
   meta-parameters by *replaying* the differentiable adaptation (``adaptation.adaptation_path``)
   from the stored pre-adaptation batches (``pre_adapt_weight`` and ``intermediate_weight`` add
   the episodes before the last step);
4. take an outer step: TRPO (conjugate gradient + line search under ``max_kl``) or Adam.

``num_inner_steps = 0`` makes this plain multi-task policy optimization (the *pretrain* baseline).
Meta-SGD adds a learning rate per parameter, meta-learned with the policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
import torch.autograd.forward_ad as fwAD

from fastadapt.adaptation import (
    AdaptBatch,
    InnerLR,
    adapt_step,
    adaptation_path,
    apply_inner_update,
    flat_tasks,
    inner_loss,
    inner_lr_schedule,
    make_adapt_batch,
    per_task_log_probs,
    subsample_batch,
)
from fastadapt.config import MAMLConfig
from fastadapt.learners.common import (
    Checkpointable,
    check_finite,
    sample_iteration,
    setup_learner,
)
from fastadapt.optim.trpo import flatten, hessian_vector_product, trpo_step, unflatten
from fastadapt.policies import DistParams, MLPPolicy, Params, expand_params, per_task_params
from fastadapt.tasks.core import TaskFamily

LR_PREFIX = "inner_lr."


class MAML(Checkpointable):
    """The state of a MAML / Meta-SGD run and its meta-iteration (:meth:`step`)."""

    algorithm = "maml"

    def __init__(self, config: MAMLConfig, family: TaskFamily | None = None) -> None:
        setup_learner(self, config, family)
        schedule = inner_lr_schedule(config.inner_lr, max(config.num_inner_steps, 1))
        self.inner_lrs: Params = {}
        if config.meta_sgd:
            keys = self.policy.adapted_keys or list(self.meta_params)
            self.inner_lrs = {
                k: torch.full_like(self.meta_params[k], schedule[0]).requires_grad_(True)
                for k in keys
            }
        self.lr_schedule = schedule
        self.optimizer = (
            torch.optim.Adam(self.trainable().values(), lr=config.outer_lr)
            if config.outer == "adam"
            else None
        )

    @property
    def name(self) -> str:
        return "metasgd" if self.config.meta_sgd else "maml"

    def trainable(self) -> dict[str, torch.Tensor]:
        """Every meta-learned tensor by name (policy parameters, then Meta-SGD learning rates)."""
        out = dict(self.meta_params)
        out.update({LR_PREFIX + k: v for k, v in self.inner_lrs.items()})
        return out

    def lrs(self, steps: int, schedule: list[float] | None = None) -> list[InnerLR]:
        """Inner learning rate of each step: the meta-learned ones (Meta-SGD) or a schedule."""
        if self.inner_lrs:
            return [self.inner_lrs] * steps
        return inner_lr_schedule(schedule or self.lr_schedule, steps)

    # ---- one meta-iteration ---------------------------------------------------------------------

    def step(self) -> dict[str, float]:
        """Run one meta-iteration and return its metrics."""
        cfg, it = self.config, self.iteration
        t0 = time.perf_counter()
        K = cfg.num_inner_steps
        lrs = self.lrs(K)
        path: list[Params] = []  # the differentiable adaptation at the current meta-parameters

        def inner_step(policy: MLPPolicy, params: Params, batch: AdaptBatch, lr: InnerLR):
            """The meta-loss's differentiable step, taken once while sampling: its values carry
            the sampling on, its graph is the meta-gradient's (no second replay at this point).
            It steps with ``lrs``, not sampling's detached ``lr`` (Meta-SGD's rates stay in the
            graph)."""
            src = path[-1] if path else self.meta_params
            new, g = adapt_step(
                policy, src, batch, lrs[len(path)], cfg.first_order, cfg.inner_objective
            )
            path.append(new)
            return {k: v.detach() for k, v in new.items()}, {k: v.detach() for k, v in g.items()}

        trace, pre, post, t_sample = sample_iteration(self, lrs, inner_step)
        valid = make_adapt_batch(
            trace.episodes[-1],
            cfg.gamma,
            cfg.gae_lambda,
            cfg.normalize_advantages,
            pack=cfg.batch_unit == "steps",
        )
        t_outer = time.perf_counter()
        info = self._outer_step(trace.batches, trace.grads, path, valid)
        t_outer = time.perf_counter() - t_outer
        check_finite(self.trainable(), it)
        steps = sum(ep.num_steps for ep in trace.episodes)
        self.env_steps += steps
        self.iteration += 1
        dt = time.perf_counter() - t0
        metrics = {
            "iteration": float(self.iteration),
            "env_steps": float(self.env_steps),
            "return/pre_adapt": float(pre.mean()),
            "return/post_adapt": float(post.mean()),
            **info,
            "time/iteration_s": dt,
            "time/sampling_s": t_sample,
            "time/outer_s": t_outer,
            "time/env_steps_per_s": steps / t_sample,
        }
        if self.inner_lrs:
            metrics["inner_lr/mean"] = float(
                torch.cat([v.detach().flatten() for v in self.inner_lrs.values()]).mean()
            )
        return metrics

    def _outer_step(
        self, batches: list[AdaptBatch], grads: list[Params], path0: list[Params], valid: AdaptBatch
    ) -> dict[str, float]:
        """The outer update. ``grads``: the inner gradients at the current meta-parameters;
        ``path0``: the differentiable adaptation there (:func:`adaptation_path`'s, built while
        sampling; replayed if empty), so neither is recomputed at this point."""
        cfg, policy = self.config, self.policy
        lrs = self.lrs(len(batches))
        num_tasks = valid.mask.shape[0]
        obs, act = flat_tasks(valid.obs), flat_tasks(valid.actions)
        mask = flat_tasks(valid.mask.unsqueeze(-1)).squeeze(-1)  # [tasks, T*E]
        adv = flat_tasks(valid.advantages.unsqueeze(-1)).squeeze(-1)

        def adapted() -> list[Params]:
            return adaptation_path(
                policy, self.meta_params, batches, lrs, cfg.first_order, cfg.inner_objective
            )

        def final_dist(path: list[Params]) -> DistParams:
            return policy.dist(per_task_params(path[-1], num_tasks), obs)

        path0 = path0 or adapted()  # replayed if sampling did not build it
        d0 = final_dist(path0)  # the policy that collected ``valid``, with the meta-loss's graph
        old_dist = DistParams(*(None if x is None else x.detach() for x in d0))
        old_logp = policy.log_prob(old_dist, act)

        def objective(at_start: bool = False) -> tuple[torch.Tensor, DistParams]:
            """The outer loss and the final adapted policy's distribution on ``valid``, at the
            current meta-parameters (``at_start``: those that sampled, whose graph is built)."""
            path = path0 if at_start else adapted()
            d = d0 if at_start else final_dist(path)
            loss = _ratio_surrogate(policy.log_prob(d, act), old_logp, adv, mask)
            if cfg.pre_adapt_weight:
                pre = _batch_surrogate(policy, self.meta_params, batches[0])
                loss = loss + cfg.pre_adapt_weight * pre
            if cfg.intermediate_weight:
                # the episodes after step k (k < K) are the batch of step k + 1
                for phi, b in zip(path[:-1], batches[1:], strict=True):
                    loss = loss + cfg.intermediate_weight * _batch_surrogate(policy, phi, b)
            return loss, d

        def mean_kl(d, idx: slice = slice(None)) -> torch.Tensor:
            old = type(old_dist)(old_dist.loc[:, idx], old_dist.log_std)
            kl = policy.kl(old, d) * mask[:, idx]
            return (kl.sum(1) / mask[:, idx].sum(1).clamp_min(1)).mean()

        graph_unused = True  # path0's graph (a backward frees it)

        def loss_fn() -> torch.Tensor:
            """The outer loss: on the built graph the first time (the outer step's gradient at
            the start), replayed after."""
            nonlocal graph_unused
            at_start, graph_unused = graph_unused, False
            return objective(at_start)[0]

        def loss_kl_fn() -> tuple[torch.Tensor, torch.Tensor]:
            loss, d = objective()
            return loss, mean_kl(d)

        if cfg.outer == "adam":
            assert self.optimizer is not None
            self.optimizer.zero_grad()
            loss = loss_fn()
            loss.backward()
            self.optimizer.step()
            with torch.no_grad():
                new_loss, kl = loss_kl_fn()
            return {
                "outer/kl": float(kl),
                "outer/surrogate_gain": float(loss.detach()) - float(new_loss),
                "outer/loss": float(new_loss),
            }

        sub = slice(None, None, cfg.fisher_subsample)
        params = list(self.trainable().values())

        def sub_kl(d: DistParams) -> torch.Tensor:
            return mean_kl(d, sub)

        if cfg.fvp == "exact":
            fvp = hessian_vector_product(lambda: mean_kl(final_dist(adapted())), params)
        elif cfg.fvp == "subsampled":
            fvp = _subsampled_fvp(
                FisherInputs(
                    policy,
                    self.meta_params,
                    self.inner_lrs,
                    batches,
                    grads,
                    lrs,
                    cfg.hessian_subsample or cfg.fisher_subsample,
                    obs[:, sub],
                    sub_kl,
                    cfg.inner_objective,
                )
            )
        else:
            # Fisher at the adapted parameters: phi(theta) = theta - sum_k lr_k g_k with the inner
            # gradients g_k held at their current values (the adaptation's first-order Jacobian),
            # on every `fisher_subsample`-th sample.

            def adapted_kl() -> torch.Tensor:
                phi = expand_params(self.meta_params, num_tasks)
                for g, lr in zip(grads, lrs, strict=True):
                    phi = apply_inner_update(phi, g, lr)
                return sub_kl(policy.dist(phi, obs[:, sub]))

            fvp = hessian_vector_product(adapted_kl, params)

        info = trpo_step(
            params,
            loss_fn,
            loss_kl_fn,
            fvp,
            cfg.max_kl,
            cfg.cg_iters,
            cfg.cg_damping,
            cfg.backtrack_ratio,
            cfg.line_search_steps,
        )
        return {
            "outer/kl": info.kl,
            "outer/surrogate_gain": info.surrogate_gain,
            "outer/loss": info.surrogate_after,
            "outer/step_fraction": info.step_fraction,
            "outer/accepted": float(info.accepted),
            "time/cg_s": info.cg_s,
            "time/line_search_s": info.line_search_s,
        }


def _ratio_surrogate(logp, old_logp, adv, mask) -> torch.Tensor:
    """Minus the importance-weighted advantage, averaged over each task's real steps, then over
    tasks; every argument is ``[tasks, steps]``."""
    ratio = torch.exp(logp - old_logp)
    return -((ratio * adv * mask).sum(1) / mask.sum(1).clamp_min(1)).mean()


def _batch_surrogate(policy, params: Params, batch: AdaptBatch) -> torch.Tensor:
    """:func:`_ratio_surrogate` of an inner step's batch under ``params`` (the parameters that
    collected it, as a function of the meta-parameters), against its behaviour log-probs."""
    logp = per_task_log_probs(policy, params, batch.obs, batch.actions).flatten(1)
    assert batch.log_probs is not None
    return _ratio_surrogate(
        logp, batch.log_probs.flatten(1), batch.advantages.flatten(1), batch.mask.flatten(1)
    )


class FisherInputs(NamedTuple):
    """What the subsampled Fisher is built from, at the current meta-parameters: the inner steps'
    pre-update ``batches``, gradients ``grads`` and learning rates ``lrs`` (as sampled), the
    subsample ``every`` of the inner Hessians, the subsampled post-update observations ``obs`` and
    ``kl_of``, the mean KL from the current adapted policy of a distribution on them."""

    policy: MLPPolicy
    meta_params: Params
    inner_lrs: Params  # Meta-SGD's (empty for MAML)
    batches: list[AdaptBatch]
    grads: list[Params]
    lrs: list[InnerLR]
    every: int
    obs: torch.Tensor
    kl_of: Callable[[DistParams], torch.Tensor]
    objective: str = "vpg"


def _subsampled_fvp(f: FisherInputs) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> J^T F J v``: the exact Gauss-Newton Fisher through the adaptation at the current
    meta-parameters, with the inner Hessians in ``J = prod_k (I - lr_k H_k)`` estimated on every
    ``f.every``-th episode (or step, if packed) of each pre-update batch, and ``F`` the Hessian of
    ``f.kl_of`` in the policy's outputs on ``f.obs``.

    ``v`` and the product are flat over the meta-parameters, then Meta-SGD's ``inner_lrs`` (step
    ``k`` moves the parameters by ``-lr * g_k``). A product runs forward through the steps (``J v``,
    one Hessian-vector product of each step's inner loss), through the network in forward mode,
    then back through the network and the transposed steps: no third-order graph.
    """
    policy, meta_params, inner_lrs, batches, grads, lrs, every, obs, kl_of, objective = f
    names, lr_names = list(meta_params), list(inner_lrs)
    keys = list(policy.adapted_keys or names)
    num_tasks = obs.shape[0]
    lrs = [_detached(lr) for lr in lrs]
    phi = {k: v.detach().expand(num_tasks, *v.shape) for k, v in meta_params.items()}
    hvps = []
    for b, g, lr in zip(batches, grads, lrs, strict=True):
        hvps.append(_inner_hvp(policy, phi, subsample_batch(b, every), objective))
        phi = apply_inner_update(phi, g, lr)
    phi = {k: v.contiguous() for k, v in phi.items()}  # the adapted parameters, one copy per task

    leaves = [v.clone().requires_grad_(True) for v in phi.values()]
    out = [x for x in policy.dist(dict(zip(names, leaves, strict=True)), obs) if x is not None]
    out_leaves = [x.detach().requires_grad_(True) for x in out]
    kl = kl_of(DistParams(*out_leaves) if len(out) == 2 else DistParams(out_leaves[0], None))
    kl_grad = torch.autograd.grad(kl, out_leaves, create_graph=True)

    def scaled(lr: InnerLR, x: Params) -> Params:
        return {k: (lr[k] if isinstance(lr, Mapping) else lr) * x[k] for k in keys}

    def product(v_flat: torch.Tensor) -> torch.Tensor:
        parts = unflatten(v_flat, [*meta_params.values(), *inner_lrs.values()])
        v = dict(zip(names, parts[: len(names)], strict=True))
        v_lr = dict(zip(lr_names, parts[len(names) :], strict=True))
        u = {k: v[k].expand_as(phi[k]) for k in names}
        for hvp, g, lr in zip(hvps, grads, lrs, strict=True):  # u = J v, step by step
            du = scaled(lr, hvp(u))
            u.update({k: u[k] - du[k] - (v_lr[k] * g[k] if v_lr else 0) for k in keys})
        with fwAD.dual_level():  # the outputs' tangent, J_out u
            dual = {k: fwAD.make_dual(phi[k], u[k]) for k in names}
            tangents = [
                fwAD.unpack_dual(x).tangent for x in policy.dist(dual, obs) if x is not None
            ]
        w_out = torch.autograd.grad(kl_grad, out_leaves, tangents, retain_graph=True)
        w = dict(
            zip(names, torch.autograd.grad(out, leaves, w_out, retain_graph=True), strict=True)
        )
        lr_adj = {k: torch.zeros_like(x) for k, x in inner_lrs.items()}
        for hvp, g, lr in zip(reversed(hvps), reversed(grads), reversed(lrs), strict=True):
            for k in lr_names:  # w = J^T w, step by step
                lr_adj[k] -= (g[k] * w[k]).sum(0)
            x = scaled(lr, w)
            hx = hvp({k: x[k] if k in x else torch.zeros_like(w[k]) for k in names})
            w = {k: w[k] - hx[k] for k in names}
        return flatten([*(w[k].sum(0) for k in names), *lr_adj.values()])

    return product


def _inner_hvp(
    policy: MLPPolicy, phi: Params, batch: AdaptBatch, objective: str
) -> Callable[[Params], Params]:
    """``u -> H u`` per task, ``H`` the Hessian of each task's inner loss on ``batch`` at ``phi``
    (per-task parameters; the gradient's graph is built once and reused)."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in phi.items()}
    loss = inner_loss(policy, leaves, batch, objective).sum()
    g = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)

    def hvp(u: Params) -> Params:
        hu = torch.autograd.grad(
            g, list(leaves.values()), [u[k] for k in leaves], retain_graph=True, allow_unused=True
        )
        return {
            k: torch.zeros_like(leaves[k]) if h is None else h
            for k, h in zip(leaves, hu, strict=True)
        }

    return hvp


def _detached(lr: InnerLR) -> InnerLR:
    return {k: v.detach() for k, v in lr.items()} if isinstance(lr, Mapping) else lr


def linearized_kl(f: FisherInputs) -> Callable[[], torch.Tensor]:
    """The brute-force reference for :func:`_subsampled_fvp`: a KL whose Hessian at the current
    meta-parameters is that product. The adaptation is linearized around the sampled
    one, ``phi_k = phi_{k-1} - lr_k (g_k + g_k^sub(phi_{k-1}) - g_k^sub(phi_{k-1}^old))``, so the
    KL's gradient vanishes there and its Hessian (by double backward through a third-order graph:
    slower) is exactly ``J^T F J``. Used by the tests and benchmarks/maml_fvp.py."""
    policy, meta_params, _, batches, grads, lrs, every, obs, kl_of, objective = f
    num_tasks = obs.shape[0]
    subs = [subsample_batch(b, every) for b in batches]
    anchors, phi_old = [], expand_params({k: v.detach() for k, v in meta_params.items()}, num_tasks)
    for b, g, lr in zip(subs, grads, lrs, strict=True):
        lr_d = _detached(lr)
        anchors.append(
            adapt_step(policy, phi_old, b, lr_d, first_order=True, objective=objective)[1]
        )
        phi_old = {k: v.detach() for k, v in apply_inner_update(phi_old, g, lr_d).items()}

    def kl() -> torch.Tensor:
        phi = expand_params(meta_params, num_tasks)
        for b, g, g_anchor, lr in zip(subs, grads, anchors, lrs, strict=True):
            names = list(g)
            g_sub = torch.autograd.grad(
                inner_loss(policy, phi, b, objective).sum(),
                [phi[k] for k in names],
                create_graph=True,
            )
            step = {k: g[k] + gs - g_anchor[k] for k, gs in zip(names, g_sub, strict=True)}
            phi = apply_inner_update(phi, step, lr)
        return kl_of(policy.dist(phi, obs))

    return kl
