"""Typed configs. Each field's docstring is its ``--help`` text in the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from fastadapt.adaptation import check_inner_objective
from fastadapt.errors import ConfigError
from fastadapt.policies import check_init
from fastadapt.sampling import check_batch_unit


@dataclass
class CommonConfig:
    """Settings every learner shares."""

    env: str = "Navigation2D-v0"
    """Task family id (see `fastadapt list`)."""
    env_kwargs: str = "{}"
    """Family options as a JSON object, e.g. '{"k": 10}' for Bandit-v0."""
    seed: int = 0
    """Seed of everything: task sampling, environments, initialization, action noise."""
    meta_iterations: int = 500
    """Outer (meta) iterations."""
    meta_batch_size: int = 20
    """Tasks per meta-iteration."""
    episodes_per_task: int = 20
    """Episodes per task for each adaptation step and for the post-adaptation batch."""
    batch_unit: Literal["episodes", "steps"] = "episodes"
    """What episodes_per_task counts: 'episodes' exactly, or 'steps': whole episodes until each task
    has episodes_per_task x horizon steps (rllab's batch_size, the MAML reference code's unit)."""
    hidden: tuple[int, ...] = ()
    """Hidden layer sizes; empty means the family's default (e.g. 100 100 for Navigation2D-v0)."""
    activation: str = ""
    """relu or tanh; empty means the family's default."""
    init_log_std: float = 0.0
    """Initial log standard deviation of Gaussian policies."""
    init: str = ""
    """Initial weights: xavier (Xavier-uniform weights, zero biases, as the MAML reference code) or
    small-output (PyTorch's default uniform, the output layer scaled by 0.01); empty means the
    family's default (xavier for Navigation2D-v0, small-output otherwise)."""
    context_params: int = 0
    """CAVIA (Zintgraf et al. 2019; maml, metasgd and promp): N context parameters fed to the
    policy's first layer beside the observation. The inner loop adapts only them; the outer loop
    learns the network (and their start). 0: the inner loop adapts every parameter."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda (1.0 = Monte Carlo returns minus the baseline, as in the MAML paper)."""
    normalize_advantages: bool = True
    """Normalize advantages per task."""
    device: str = "cpu"
    """torch device: cpu or cuda."""
    checkpoint_every: int = 50
    """Write a checkpoint every N meta-iterations (and at the end)."""
    keep_checkpoints: int = 3
    """How many periodic checkpoints to keep."""
    task_sampler: Literal["uniform", "prioritized"] = "uniform"
    """Training-task sampling: fresh uniform draws, or prioritized over a pool (harder tasks more often)."""
    task_pool_size: int = 100
    """Pool size for the prioritized sampler."""
    priority_temperature: float = 1.0
    """Softmax temperature over standardized task scores (higher = closer to uniform)."""
    priority_floor: float = 0.2
    """Share of probability mass spread uniformly, so every task keeps a chance."""
    priority_score: Literal["post_return", "improvement"] = "post_return"
    """Priority: low post-adaptation return, or low gain from adaptation."""
    flush_denormal: bool = True
    """Flush subnormal floats to zero on CPU while training (process-wide; measured faster)."""
    init_from: str = ""
    """Start from the parameters of another run (its directory, or a checkpoint file), e.g. one
    trained on shorter trials; they must match this run's by name and shape. Optimizer state and
    counters start fresh. Ignored when resuming from a checkpoint of this run."""

    def env_options(self) -> dict[str, Any]:
        """``env_kwargs`` parsed."""
        try:
            opts = json.loads(self.env_kwargs) if self.env_kwargs else {}
        except json.JSONDecodeError as e:
            raise ConfigError(f"env_kwargs is not valid JSON ({e}): {self.env_kwargs!r}") from None
        if not isinstance(opts, dict):
            raise ConfigError(f"env_kwargs must be a JSON object, got {self.env_kwargs!r}")
        return opts

    def validate(self) -> None:
        """Refuse impossible values, naming the field."""
        positive = [
            "meta_iterations",
            "meta_batch_size",
            "episodes_per_task",
            "checkpoint_every",
            "keep_checkpoints",
        ]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if any(h <= 0 for h in self.hidden):
            raise ConfigError(f"hidden sizes must be positive, got {self.hidden}")
        if not 0 <= self.gamma <= 1:
            raise ConfigError(f"gamma must be in [0, 1], got {self.gamma}")
        if not 0 <= self.gae_lambda <= 1:
            raise ConfigError(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        for name in ("task_pool_size", "priority_temperature", "priority_floor"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be cpu or cuda[:N], got {self.device!r}")
        check_batch_unit(self.batch_unit)
        self.env_options()
        if self.context_params < 0:
            raise ConfigError(f"context_params must be >= 0, got {self.context_params}")
        if self.init:
            check_init(self.init)

    def _refuse_context(self, algorithm: str) -> None:
        if self.context_params:
            raise ConfigError(
                f"context_params is for maml, metasgd and promp; {algorithm} cannot adapt a "
                f"context alone, got context_params={self.context_params}"
            )


def _check_inner(cfg: Any, min_steps: int) -> None:
    if cfg.num_inner_steps < min_steps:
        raise ConfigError(f"num_inner_steps must be >= {min_steps}, got {cfg.num_inner_steps}")
    if not cfg.inner_lr or any(not lr > 0 for lr in cfg.inner_lr):
        raise ConfigError(f"inner_lr must be positive, got {cfg.inner_lr}")


@dataclass
class MAMLConfig(CommonConfig):
    """MAML (and Meta-SGD) with a policy-gradient inner loop and a TRPO or Adam outer loop."""

    num_inner_steps: int = 1
    """Inner (adaptation) gradient steps during meta-training."""
    inner_lr: tuple[float, ...] = (0.1,)
    """Inner learning rate; several values give a schedule per step (the last one repeats)."""
    first_order: bool = False
    """Drop the second-order term (FOMAML)."""
    meta_sgd: bool = False
    """Meta-learn a learning rate per parameter (Meta-SGD); `fastadapt train metasgd` sets it."""
    inner_objective: Literal["vpg", "lvc"] = "vpg"
    """The inner loss the meta-gradient differentiates through: vpg (REINFORCE, as in the MAML
    paper) or lvc (ProMP's low-variance curvature objective: the same inner steps, but its second
    derivative also credits the pre-adaptation policy for the episodes it collects)."""
    pre_adapt_weight: float = 0.0
    """Weight of the pre-adaptation episodes' return in the meta-objective (0: the post-adaptation
    return only, as in MAML; 1: every episode of the trial counts, like MAML++'s multi-step loss).
    A meta-policy rewarded for its pre-adaptation episodes keeps them long and informative."""
    intermediate_weight: float = 0.0
    """Weight of the episodes after each inner step but the last in the meta-objective (the last
    has weight 1): MAML++'s multi-step loss (Antoniou et al. 2019), so the meta-policy is trained
    for the return after every step of a multi-step adaptation, not only after the last. TRPO's
    trust region stays on the last step's policy. Needs num_inner_steps >= 2."""
    outer: Literal["trpo", "adam"] = "trpo"
    """Outer optimizer: trpo (as in the MAML paper) or adam (first-order outer step)."""
    outer_lr: float = 1e-3
    """Adam learning rate (outer=adam)."""
    max_kl: float = 0.01
    """TRPO trust region (mean KL of the post-adaptation policies)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations."""
    cg_damping: float = 1e-5
    """Damping added to Fisher-vector products."""
    fvp: Literal["adapted", "subsampled", "exact"] = "subsampled"
    """Fisher for TRPO: 'subsampled' = the exact Gauss-Newton Fisher through the adaptation with the
    inner Hessians and the KL on every `fisher_subsample`-th episode/sample (default; learns nearly
    as fast as 'exact' at a sixth of its cost); 'adapted' = KL curvature at the adapted parameters
    with the inner gradients held fixed (learns more slowly); 'exact' = through the second-order
    adaptation on all samples. The line search checks the exact KL in every case."""
    fisher_subsample: int = 20
    """Fisher-vector products use every N-th post-adaptation sample (and, for fvp=subsampled, every
    N-th pre-adaptation episode for the inner Hessians, unless hessian_subsample is set); see
    benchmarks/maml_fvp.py for the measured trade-off."""
    hessian_subsample: int = 0
    """For fvp=subsampled: the inner Hessians on every N-th pre-adaptation episode (or step, with
    batch_unit=steps); 0 = fisher_subsample. On 2D navigation the Hessians' sample is the one that
    matters: 5 here with the KL on every 20th learns as well as 5 for both, for less time."""
    line_search_steps: int = 15
    """Maximum backtracking steps."""
    backtrack_ratio: float = 0.8
    """Step shrink factor per backtrack (0.8 as in rllab's TRPO, which the MAML paper used; with 0.5
    a full step that overshoots max_kl by a little falls to a quarter of the trust region)."""

    def validate(self) -> None:
        super().validate()
        _check_inner(self, min_steps=0)
        for name in ("outer_lr", "max_kl", "cg_iters", "fisher_subsample", "line_search_steps"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.cg_damping < 0:
            raise ConfigError(f"cg_damping must be >= 0, got {self.cg_damping}")
        if self.hessian_subsample < 0:
            raise ConfigError(f"hessian_subsample must be >= 0, got {self.hessian_subsample}")
        check_inner_objective(self.inner_objective)
        if not (self.pre_adapt_weight >= 0 and math.isfinite(self.pre_adapt_weight)):
            raise ConfigError(f"pre_adapt_weight must be >= 0, got {self.pre_adapt_weight}")
        if self.pre_adapt_weight and self.num_inner_steps == 0:
            raise ConfigError(
                "pre_adapt_weight needs num_inner_steps >= 1 (without adaptation "
                "the pre-adaptation episodes are the post-adaptation ones)"
            )
        if not (self.intermediate_weight >= 0 and math.isfinite(self.intermediate_weight)):
            raise ConfigError(f"intermediate_weight must be >= 0, got {self.intermediate_weight}")
        if self.intermediate_weight and self.num_inner_steps < 2:
            raise ConfigError(
                "intermediate_weight needs num_inner_steps >= 2 (the returns between inner "
                f"steps), got {self.num_inner_steps}"
            )
        if not 0 < self.backtrack_ratio < 1:
            raise ConfigError(f"backtrack_ratio must be in (0, 1), got {self.backtrack_ratio}")


@dataclass
class ReptileConfig(CommonConfig):
    """Reptile for RL: k policy-gradient steps per task, then move toward the adapted parameters."""

    num_inner_steps: int = 3
    """Inner policy-gradient steps per task (each on fresh episodes)."""
    inner_lr: tuple[float, ...] = (0.1,)
    """Inner learning rate; several values give a schedule per step (the last one repeats)."""
    inner_algo: Literal["vpg", "ppo"] = "vpg"
    """Inner update: vpg (one REINFORCE step per batch) or ppo (clipped surrogate, several epochs)."""
    ppo_epochs: int = 4
    """Gradient steps per batch for inner_algo=ppo."""
    ppo_clip: float = 0.2
    """Clip range for inner_algo=ppo."""
    outer: Literal["sgd", "adam"] = "sgd"
    """Outer update: sgd (theta += outer_lr * mean(phi - theta)) or adam on that direction."""
    outer_lr: float = 0.5
    """Outer step size (epsilon for sgd; Adam's learning rate for adam)."""

    def validate(self) -> None:
        super().validate()
        self._refuse_context("reptile")
        _check_inner(self, min_steps=1)
        for name in ("ppo_epochs", "ppo_clip", "outer_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass
class ProMPConfig(CommonConfig):
    """ProMP (Rothfuss et al. 2019): LVC inner objective, clipped outer objective with a KL penalty,
    several outer Adam steps per batch. Defaults: their MuJoCo settings."""

    meta_batch_size: int = 40
    """Tasks per meta-iteration."""
    num_inner_steps: int = 1
    """Inner (adaptation) gradient steps."""
    inner_lr: tuple[float, ...] = (0.1,)
    """Inner learning rate (schedule per step allowed)."""
    outer_lr: float = 1e-3
    """Adam learning rate of the outer steps."""
    promp_steps: int = 5
    """Outer gradient steps per batch of samples."""
    clip: float = 0.3
    """Clip range of the outer likelihood ratio."""
    kl_coef: float = 5e-4
    """Initial weight of the KL penalty between the old and new pre-update policies."""
    target_inner_kl: float = 0.01
    """With adaptive_kl, the KL the penalty weight is steered toward (x2 / ÷2 outside [t/1.5, 1.5t])."""
    adaptive_kl: bool = True
    """Adapt kl_coef after each iteration."""

    def validate(self) -> None:
        super().validate()
        _check_inner(self, min_steps=1)
        for name in ("outer_lr", "promp_steps", "clip", "target_inner_kl"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.kl_coef < 0:
            raise ConfigError(f"kl_coef must be >= 0, got {self.kl_coef}")


@dataclass
class RL2Config(CommonConfig):
    """RL²: a recurrent (or Transformer) policy meta-trained with PPO over trials; it adapts by
    carrying its state across the episodes of a trial, without gradient steps."""

    meta_batch_size: int = 256
    """Trials per iteration (one task each)."""
    episodes_per_task: int = 10
    """Episodes per trial (n); the hidden state runs across them and resets between trials."""
    policy: Literal["gru", "lstm", "transformer"] = "gru"
    """The sequence model."""
    hidden_size: int = 256
    """Width of the recurrent state (or of the Transformer)."""
    layers: int = 1
    """Recurrent (or Transformer) layers."""
    heads: int = 4
    """Attention heads (transformer)."""
    time_inputs: bool = False
    """Also feed the policy a clock: the step within the episode and the episode within the trial,
    each as a fraction (the RL² paper's input has neither; the recurrent state must count)."""
    prev_obs_inputs: bool = False
    """Also feed the policy the observation its previous action was taken in, so one step's input
    holds the whole previous transition (state, action, reward) beside the current observation
    (the RL² paper's input has only the current one). A Transformer then reads a transition from
    one position instead of pairing two (the tabular benchmark's default)."""
    separate_critic: bool = False
    """Give the critic its own sequence model (same kind and size) instead of sharing the actor's,
    so value-loss gradients do not shape the actor's memory (doubles the model)."""
    gamma: float = 0.99
    """Discount across the whole trial (episode ends do not stop it)."""
    gae_lambda: float = 0.3
    """GAE lambda over the trial (the RL² paper used 0.3 for bandits)."""
    lr: float = 3e-4
    """Adam learning rate."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """``linear``: decay the learning rate linearly from ``lr`` to 0 over ``meta_iterations``."""
    ppo_epochs: int = 4
    """PPO epochs per batch of trials."""
    minibatches: int = 4
    """Minibatches (of whole trials) per epoch; gradients flow through each whole trial."""
    clip: float = 0.2
    """PPO clip range."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    normalize_values: bool = True
    """The critic predicts returns standardized by the previous batch's mean and std, so the value
    loss keeps one scale however long the trial (on a shared core, raw returns of long trials let
    the value gradient swamp the policy's; README, "RL²'s critic", has the measurements)."""
    entropy_coef: float = 0.01
    """Weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip."""

    def validate(self) -> None:
        super().validate()
        self._refuse_context("rl2")
        if self.init:
            raise ConfigError(
                f"init is for MLP-policy learners; RL² initializes its sequence model its own way, "
                f"got init={self.init!r}"
            )
        if self.batch_unit != "episodes":
            raise ConfigError(
                "RL² samples trials of episodes_per_task episodes; batch_unit must be 'episodes'"
            )
        for name in (
            "hidden_size",
            "layers",
            "heads",
            "lr",
            "ppo_epochs",
            "minibatches",
            "clip",
            "max_grad_norm",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.minibatches > self.meta_batch_size:
            raise ConfigError(
                f"minibatches ({self.minibatches}) cannot exceed trials ({self.meta_batch_size})"
            )
        if self.value_coef < 0 or self.entropy_coef < 0:
            raise ConfigError("value_coef and entropy_coef must be >= 0")


@dataclass
class EvalConfig:
    """The meta-test protocol: held-out tasks, returns after each adaptation step."""

    num_tasks: int = 40
    """Held-out test tasks."""
    num_steps: int = 3
    """Adaptation steps (returns are reported after 0..num_steps)."""
    episodes_per_step: int = 40
    """Episodes per task collected before each step (and after the last)."""
    batch_unit: Literal["", "episodes", "steps"] = ""
    """What episodes_per_step counts: 'episodes' exactly, or 'steps': whole episodes until each task
    has episodes_per_step x horizon steps (the MAML reference code's test protocol); a step's return
    is then the mean over however many episodes that took. Empty: the unit the run trained with."""
    inner_lr: tuple[float, ...] = ()
    """Learning rate per step (the last repeats). Empty: the run's own first inner learning rate,
    then half of it (the MAML paper's protocol: 0.1 then 0.05 for a run trained with 0.1)."""
    baselines: tuple[str, ...] = ("scratch", "pretrain")
    """Baselines in the same protocol: scratch (fresh policy), pretrain (multi-task policy)."""
    tune_baseline_lr: bool = True
    """Also report each baseline with its inner learning rates tuned on training tasks (never the
    test tasks), as rows named '<baseline> (tuned lr)': step by step, each step's rate is
    `baseline_lr_scales` times the schedule's, the scale whose return right after that step is
    highest."""
    baseline_lr_scales: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03, 0.01)
    """Scales of the inner learning rate tried when tuning baselines."""
    tune_later_lr: bool = False
    """Also report the meta-learner with the learning rate of its steps after the first tuned on
    training tasks (never the test tasks) over `later_lr_scales` times the schedule's, the first
    step keeping the schedule's, as the row '<learner> (tuned later lr)'. Needs num_steps >= 2 and
    a learner with a schedule (not Meta-SGD's learned rates)."""
    later_lr_scales: tuple[float, ...] = (1.0, 0.4, 0.2, 0.1)
    """Scales of the later steps' learning rate tried by `tune_later_lr`."""
    pretrain_iterations: int = 0
    """Pretraining iterations; 0: as many batches as meta-training collected (about its env-step
    budget, more when the meta-learner's episodes are shorter; see eval.json's
    env_steps_trained)."""
    seed: int = 1000
    """Seed of the evaluation's environments and action noise (test tasks come from the test split
    of the run's seed)."""
    greedy: bool = False
    """RL² only: act with the policy's most likely action instead of sampling it (gradient-based
    adaptation learns from sampled episodes, so other learners refuse it)."""

    def validate(self) -> None:
        for name in ("num_tasks", "episodes_per_step"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.batch_unit:
            check_batch_unit(self.batch_unit)
        for name in ("baseline_lr_scales", "later_lr_scales"):
            scales = getattr(self, name)
            if not scales or any(not x > 0 for x in scales):
                raise ConfigError(f"{name} must be positive (and not empty), got {scales}")
        if self.tune_later_lr and self.num_steps < 2:
            raise ConfigError(
                f"tune_later_lr tunes the steps after the first: it needs num_steps >= 2, "
                f"got {self.num_steps}"
            )
        if self.num_steps < 0 or self.pretrain_iterations < 0:
            raise ConfigError("num_steps and pretrain_iterations must be >= 0")
        unknown = set(self.baselines) - {"scratch", "pretrain"}
        if unknown:
            raise ConfigError(f"unknown baseline(s) {sorted(unknown)}; known: scratch, pretrain")


RUNTIME_FIELDS = frozenset({"device", "checkpoint_every", "keep_checkpoints", "flush_denormal"})
"""Settings that say where and how a run is kept, not what it learns."""


def config_differences(a: Any, b: Any) -> list[str]:
    """The fields in which two configs of one class differ, :data:`RUNTIME_FIELDS` aside (those
    two configs train the same learner exactly when this is empty)."""
    if type(a) is not type(b):
        return ["(config class)"]
    return [
        f.name
        for f in dataclasses.fields(a)
        if f.name not in RUNTIME_FIELDS and getattr(a, f.name) != getattr(b, f.name)
    ]


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as a plain dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a config, refusing unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} key(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            v = data[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    cfg = cls(**kwargs)
    cfg.validate()
    return cfg


__all__ = [
    "CommonConfig",
    "EvalConfig",
    "MAMLConfig",
    "ProMPConfig",
    "RL2Config",
    "ReptileConfig",
    "RUNTIME_FIELDS",
    "config_differences",
    "config_from_dict",
    "config_to_dict",
]
