"""Reptile for RL (Nichol et al. 2018), read top to bottom.

One meta-iteration:

1. sample ``meta_batch_size`` training tasks;
2. run ``num_inner_steps`` policy-gradient steps on each task, all tasks at once, each step on fresh
   episodes collected with the current per-task parameters (``sample_and_adapt``; the step is VPG's
   ``adapt_step`` or PPO's ``ppo_adapt_step``);
3. move the meta-parameters toward the adapted ones: ``theta += outer_lr * mean_i(phi_i - theta)``
   (or hand ``-mean_i(phi_i - theta)`` to Adam as a gradient).

With one VPG inner step and ``outer_lr = 1`` this is exactly a policy-gradient step on the batch of
tasks (tested). No second-order terms, no replay of the adaptation.
"""

from __future__ import annotations

import functools
import time

import torch

from fastadapt.adaptation import inner_lr_schedule, ppo_adapt_step
from fastadapt.config import ReptileConfig
from fastadapt.learners.common import (
    Checkpointable,
    check_finite,
    sample_iteration,
    setup_learner,
)
from fastadapt.tasks.core import TaskFamily


class Reptile(Checkpointable):
    """The state of a Reptile run and its meta-iteration (:meth:`step`)."""

    name = "reptile"

    def __init__(self, config: ReptileConfig, family: TaskFamily | None = None) -> None:
        setup_learner(self, config, family)
        self.lr_schedule = inner_lr_schedule(config.inner_lr, config.num_inner_steps)
        self.inner_step_fn = (
            functools.partial(ppo_adapt_step, epochs=config.ppo_epochs, clip=config.ppo_clip)
            if config.inner_algo == "ppo"
            else None
        )
        self.optimizer = (
            torch.optim.Adam(self.meta_params.values(), lr=config.outer_lr)
            if config.outer == "adam"
            else None
        )

    def trainable(self) -> dict[str, torch.Tensor]:
        """The meta-learned tensors by name."""
        return dict(self.meta_params)

    def lrs(self, steps: int, schedule: list[float] | None = None) -> list[float]:
        """Inner learning rate of each step."""
        return inner_lr_schedule(schedule or self.lr_schedule, steps)

    def step(self) -> dict[str, float]:
        """Run one meta-iteration and return its metrics."""
        cfg, it = self.config, self.iteration
        t0 = time.perf_counter()
        trace, pre, post, _ = sample_iteration(
            self, self.lrs(cfg.num_inner_steps), self.inner_step_fn
        )
        with torch.no_grad():
            direction = {
                k: (trace.params[k] - v.unsqueeze(0)).mean(0) for k, v in self.meta_params.items()
            }
            if self.optimizer is None:
                for k, v in self.meta_params.items():
                    v.add_(cfg.outer_lr * direction[k])
        if self.optimizer is not None:
            for k, v in self.meta_params.items():
                v.grad = -direction[k]
            self.optimizer.step()
        check_finite(self.trainable(), it)
        steps = sum(ep.num_steps for ep in trace.episodes)
        self.env_steps += steps
        self.iteration += 1
        dt = time.perf_counter() - t0
        return {
            "iteration": float(self.iteration),
            "env_steps": float(self.env_steps),
            "return/pre_adapt": float(pre.mean()),
            "return/post_adapt": float(post.mean()),
            "outer/step_norm": float(torch.sqrt(sum((d**2).sum() for d in direction.values()))),
            "time/iteration_s": dt,
            "time/env_steps_per_s": steps / dt,
        }
