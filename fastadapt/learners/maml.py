"""MAML for RL (Finn et al. 2017) and Meta-SGD (Li et al. 2017), read top to bottom.

One meta-iteration:

1. sample ``meta_batch_size`` training tasks;
2. collect episodes with the meta-parameters, adapt, collect with each task's adapted parameters
   (``sample_and_adapt``; the inner step is ``adaptation.adapt_step``);
3. build the meta-loss on the post-adaptation episodes by *replaying* the differentiable adaptation
   (``adaptation.adaptation_path``) from the stored pre-adaptation batches, so the outer optimizer
   can re-evaluate it at new meta-parameters (``pre_adapt_weight`` and ``intermediate_weight`` add
   the episodes before the last step);
4. take an outer step: TRPO (conjugate gradient + line search under ``max_kl``) or Adam.

``num_inner_steps = 0`` makes this plain multi-task policy optimization (the *pretrain* baseline).
Meta-SGD adds a learning rate per parameter, meta-learned with the policy.
"""

from __future__ import annotations

import time

import torch

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
from fastadapt.optim.trpo import trpo_step
from fastadapt.policies import Params, expand_params, per_task_params
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
        trace, pre, post, t_sample = sample_iteration(self, self.lrs(K))
        valid = make_adapt_batch(
            trace.episodes[-1],
            cfg.gamma,
            cfg.gae_lambda,
            cfg.normalize_advantages,
            pack=cfg.batch_unit == "steps",
        )
        info = self._outer_step(trace.batches, trace.grads, trace.params, valid)
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
            "time/env_steps_per_s": steps / t_sample,
        }
        if self.inner_lrs:
            metrics["inner_lr/mean"] = float(
                torch.cat([v.detach().flatten() for v in self.inner_lrs.values()]).mean()
            )
        return metrics

    def _outer_step(
        self, batches: list[AdaptBatch], grads: list[Params], phi_old: Params, valid: AdaptBatch
    ) -> dict[str, float]:
        """The outer update. ``grads``/``phi_old``: inner gradients and adapted parameters at the
        current meta-parameters, from sampling (so they need not be recomputed)."""
        cfg, policy = self.config, self.policy
        lrs = self.lrs(len(batches))
        num_tasks = valid.mask.shape[0]
        obs, act = flat_tasks(valid.obs), flat_tasks(valid.actions)
        mask = flat_tasks(valid.mask.unsqueeze(-1)).squeeze(-1)  # [tasks, T*E]
        with torch.no_grad():
            old_dist = policy.dist(per_task_params(phi_old, num_tasks), obs)
            old_logp = policy.log_prob(old_dist, act)
        adv = flat_tasks(valid.advantages.unsqueeze(-1)).squeeze(-1)

        def adapted() -> list[Params]:
            return adaptation_path(
                policy, self.meta_params, batches, lrs, cfg.first_order, cfg.inner_objective
            )

        def final_dist(path: list[Params]):
            return policy.dist(per_task_params(path[-1], num_tasks), obs)

        def objective() -> tuple[torch.Tensor, object]:
            """The outer loss and the final adapted policy's distribution on ``valid``."""
            path = adapted()
            d = final_dist(path)
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

        def loss_fn() -> torch.Tensor:
            return objective()[0]

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
        if cfg.fvp == "exact":

            def fvp_kl_fn() -> torch.Tensor:
                return mean_kl(final_dist(adapted()))
        elif cfg.fvp == "subsampled":
            fvp_kl_fn = _subsampled_exact_kl(
                policy,
                self.meta_params,
                batches,
                grads,
                lrs,
                cfg.fisher_subsample,
                lambda phi: mean_kl(policy.dist(phi, obs[:, sub]), sub),
                num_tasks,
                cfg.inner_objective,
            )
        else:
            # Fisher at the adapted parameters: phi(theta) = theta - sum_k lr_k g_k with the inner
            # gradients g_k held at their current values (the adaptation's first-order Jacobian),
            # on every `fisher_subsample`-th sample.

            def fvp_kl_fn() -> torch.Tensor:
                phi = expand_params(self.meta_params, num_tasks)
                for g, lr in zip(grads, lrs, strict=True):
                    phi = apply_inner_update(phi, g, lr)
                return mean_kl(policy.dist(phi, obs[:, sub]), sub)

        info = trpo_step(
            list(self.trainable().values()),
            loss_fn,
            loss_kl_fn,
            fvp_kl_fn,
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


def _subsampled_exact_kl(
    policy, meta_params, batches, grads, lrs, every, kl_of, num_tasks, objective="vpg"
):
    """A KL whose Hessian at the current meta-parameters is the exact Gauss-Newton Fisher
    ``J^T F J`` through the adaptation, with the inner Hessians in ``J = prod(I - lr H_k)`` estimated
    on every ``every``-th episode (or step, if packed) of each pre-update batch (and ``F`` on the
    subsampled post-update samples ``kl_of`` uses). The adaptation is linearized around the sampled one,
    ``phi_k = phi_{k-1} - lr_k (g_k + g_k^sub(phi_{k-1}) - g_k^sub(phi_{k-1}^old))``, so the KL's
    gradient vanishes at the current point and its Hessian there is exactly ``J^T F J``."""
    subs = [subsample_batch(b, every) for b in batches]
    anchors, phi_old = [], expand_params({k: v.detach() for k, v in meta_params.items()}, num_tasks)
    for b, g, lr in zip(subs, grads, lrs, strict=True):
        _, g_sub = adapt_step(policy, phi_old, b, lr, first_order=True, objective=objective)
        anchors.append(g_sub)
        phi_old = {k: v.detach() for k, v in apply_inner_update(phi_old, g, lr).items()}

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
        return kl_of(phi)

    return kl
