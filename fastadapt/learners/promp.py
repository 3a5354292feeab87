"""ProMP: Proximal Meta-Policy Search (Rothfuss et al. 2019), read top to bottom.

One meta-iteration:

1. sample tasks; collect, adapt, collect (``sample_and_adapt``; the LVC objective's gradient equals
   REINFORCE's, so sampling-time adaptation is the plain VPG step);
2. ``promp_steps`` times: replay the adaptation *with the LVC inner objective* (second order),
   evaluate PPO's clipped likelihood-ratio objective on the post-adaptation episodes, subtract
   ``kl_coef`` x KL(old || new) of the *pre-update* policies on the pre-update episodes, take an
   Adam step;
3. with ``adaptive_kl``, double or halve ``kl_coef`` toward ``target_inner_kl``.
"""

from __future__ import annotations

import time

import torch

from fastadapt.adaptation import (
    adapt,
    flat_tasks,
    inner_lr_schedule,
    make_adapt_batch,
    per_task_log_probs,
)
from fastadapt.config import ProMPConfig
from fastadapt.learners.common import (
    Checkpointable,
    check_finite,
    sample_iteration,
    setup_learner,
)
from fastadapt.tasks.core import TaskFamily


class ProMP(Checkpointable):
    """The state of a ProMP run and its meta-iteration (:meth:`step`)."""

    name = "promp"
    extra_meta = ("kl_coef",)

    def __init__(self, config: ProMPConfig, family: TaskFamily | None = None) -> None:
        setup_learner(self, config, family)
        self.lr_schedule = inner_lr_schedule(config.inner_lr, config.num_inner_steps)
        self.optimizer = torch.optim.Adam(self.meta_params.values(), lr=config.outer_lr)
        self.kl_coef = config.kl_coef

    def trainable(self) -> dict[str, torch.Tensor]:
        return dict(self.meta_params)

    def lrs(self, steps: int, schedule: list[float] | None = None) -> list[float]:
        return inner_lr_schedule(schedule or self.lr_schedule, steps)

    def step(self) -> dict[str, float]:
        """Run one meta-iteration and return its metrics."""
        cfg, it, policy = self.config, self.iteration, self.policy
        t0 = time.perf_counter()
        lrs = self.lrs(cfg.num_inner_steps)
        trace, pre, post, t_sample = sample_iteration(self, lrs)
        valid = make_adapt_batch(
            trace.episodes[-1],
            cfg.gamma,
            cfg.gae_lambda,
            cfg.normalize_advantages,
            pack=cfg.batch_unit == "steps",
        )
        pre_obs = flat_tasks(trace.batches[0].obs)
        pre_mask = flat_tasks(trace.batches[0].mask.unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            old_logp = per_task_log_probs(policy, trace.params, valid.obs, valid.actions)
            old_pre = policy.dist({k: v.detach() for k, v in self.meta_params.items()}, pre_obs)
        n = valid.mask.sum((1, 2)).clamp_min(1)
        for _ in range(cfg.promp_steps):
            phi = adapt(policy, self.meta_params, trace.batches, lrs, objective="lvc")
            ratio = torch.exp(per_task_log_probs(policy, phi, valid.obs, valid.actions) - old_logp)
            adv = valid.advantages
            clipped = torch.minimum(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv)
            objective = ((clipped * valid.mask).sum((1, 2)) / n).mean()
            kl = policy.kl(old_pre, policy.dist(self.meta_params, pre_obs)) * pre_mask
            kl_pre = (kl.sum(1) / pre_mask.sum(1).clamp_min(1)).mean()
            loss = -objective + self.kl_coef * kl_pre
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        kl_value = float(kl_pre.detach())
        if cfg.adaptive_kl:
            if kl_value < cfg.target_inner_kl / 1.5:
                self.kl_coef /= 2
            elif kl_value > cfg.target_inner_kl * 1.5:
                self.kl_coef *= 2
        check_finite(self.trainable(), it)
        steps = sum(ep.num_steps for ep in trace.episodes)
        self.env_steps += steps
        self.iteration += 1
        return {
            "iteration": float(self.iteration),
            "env_steps": float(self.env_steps),
            "return/pre_adapt": float(pre.mean()),
            "return/post_adapt": float(post.mean()),
            "outer/kl": kl_value,
            "outer/kl_coef": self.kl_coef,
            "outer/objective": float(objective.detach()),
            "time/iteration_s": time.perf_counter() - t0,
            "time/sampling_s": t_sample,
            "time/env_steps_per_s": steps / t_sample,
        }
