"""Meta-test evaluation: returns after 0..k adaptation steps on held-out tasks, against baselines.

The protocol: for each held-out test task, collect ``episodes_per_step`` episodes, take one inner
step on them, collect new episodes, ... ``num_steps`` times (``adaptation.sample_and_adapt``, the loop
meta-training samples with). Each step's return is the mean over that step's episodes; the table
gives the mean over tasks and a 95% confidence interval (Student t over tasks).

With ``batch_unit="steps"`` each step's batch is instead whole episodes up to
``episodes_per_step x horizon`` steps per task, the MAML reference code's test protocol (rllab's VPG
with ``batch_size=4000``, ``max_path_length=100``): its return is then the mean over however many
episodes that was, so tasks whose policy reaches the goal early average over more, shorter episodes.

Baselines in the same protocol, with the same samples per step and the same inner updates:

* ``scratch``: a freshly initialized policy;
* ``pretrain``: a policy trained on the training tasks for the same number of env steps as
  meta-training, with no meta-objective (the learner with zero inner steps), then adapted alike.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastadapt.adaptation import InnerLR, inner_lr_schedule, sample_and_adapt
from fastadapt.config import CommonConfig, EvalConfig, MAMLConfig, config_differences
from fastadapt.errors import ConfigError
from fastadapt.policies import MLPPolicy, Params, init_for_family
from fastadapt.runs import BASELINES, atomic_write_bytes, is_finished
from fastadapt.tasks.core import TaskFamily, derive_seed, sample_tasks, task_to_dict

#: the training-split sub-stream that lr tuning draws tasks from (meta-iterations use 0, 1, 2, ...)
TUNING_STREAM = 2**31 - 1
#: the training-split sub-stream that run selection validates on (disjoint from tuning's)
VALIDATION_STREAM = 2**31 - 2

# two-sided 95% Student t quantiles by degrees of freedom (1..30); the normal value beyond
_T95 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def mean_ci95(x: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t)."""
    a = np.asarray(x, dtype=float)
    if a.size < 2:
        return float(a.mean()), float("nan")
    t = _T95[a.size - 2] if a.size - 1 <= len(_T95) else 1.96
    return float(a.mean()), float(t * a.std(ddof=1) / math.sqrt(a.size))


def adaptation_returns(
    family: TaskFamily,
    policy: MLPPolicy,
    params: Params,
    tasks: Sequence[Any],
    num_steps: int,
    lrs: Sequence[InnerLR],
    episodes_per_step: int,
    seed: int,
    gamma: float,
    gae_lambda: float,
    normalize: bool = True,
    device: str = "cpu",
    step_fn: Any = None,
    unit: str = "episodes",
) -> np.ndarray:
    """Mean episode return of each task after 0..num_steps inner steps: ``[num_steps + 1, tasks]``.
    ``step_fn`` is the inner step (default: VPG); ``unit`` the batch unit (``sampling.collect``)."""
    seeds = [derive_seed(seed, 7, k) for k in range(num_steps + 1)]
    trace = sample_and_adapt(
        family,
        policy,
        params,
        tasks,
        num_steps,
        lrs,
        episodes_per_step,
        seeds,
        gamma,
        gae_lambda,
        normalize,
        device,
        step_fn,
        unit,
    )
    return np.stack([ep.mean_return.cpu().numpy() for ep in trace.episodes])


def summarize(returns: np.ndarray) -> dict[str, list[float]]:
    """Per-step mean and CI half-width from ``[steps + 1, tasks]`` returns."""
    stats = [mean_ci95(r) for r in returns]
    return {
        "mean": [m for m, _ in stats],
        "ci95": [c for _, c in stats],
        "per_task": returns.T.tolist(),
    }


def default_test_schedule(learner: Any) -> tuple[float, float]:
    """The default test schedule: the learner's first training inner learning rate, then half of
    it (the MAML paper halved the step after the first at test time)."""
    first = float(learner.config.inner_lr[0])
    return first, first / 2


def _resolved_protocol(learner: Any, cfg: EvalConfig) -> tuple[EvalConfig, list[float]]:
    """``cfg`` validated, with its batch unit resolved (the learner's unless ``cfg`` names one),
    and the test schedule of the inner rates (``cfg.inner_lr`` or the learner's default)."""
    cfg.validate()
    cfg = dataclasses.replace(
        cfg, batch_unit=cfg.batch_unit or getattr(learner.config, "batch_unit", "episodes")
    )
    schedule = inner_lr_schedule(
        cfg.inner_lr or default_test_schedule(learner), max(cfg.num_steps, 1)
    )
    return cfg, schedule


def _adaptation_kwargs(learner: Any, cfg: EvalConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`adaptation_returns` that the learner and the protocol fix
    (all but the policy, its parameters and rates, the tasks, the number of steps and the seed)."""
    lc = learner.config
    return dict(
        family=learner.family,
        episodes_per_step=cfg.episodes_per_step,
        gamma=lc.gamma,
        gae_lambda=lc.gae_lambda,
        normalize=lc.normalize_advantages,
        device=lc.device,
        step_fn=getattr(learner, "inner_step_fn", None),
        unit=cfg.batch_unit,
    )


def evaluate_learner(
    learner: Any,
    cfg: EvalConfig,
    run_dir: Path | None = None,
    progress: bool = True,
    pretrained: Any = None,
) -> dict[str, Any]:
    """Evaluate a trained learner and the requested baselines on held-out tasks (in the unit the
    learner trained with unless ``cfg.batch_unit`` names one; eval.json records which).
    ``pretrained``: the pretrain baseline's learner (e.g. one :func:`select_runs` picked) instead
    of the one :func:`pretrain_baseline` trains or loads under ``run_dir``."""
    cfg, schedule = _resolved_protocol(learner, cfg)
    lc = learner.config
    policy = learner.policy
    tasks = sample_tasks(learner.family, cfg.num_tasks, lc.seed, split="test")
    common = dict(
        _adaptation_kwargs(learner, cfg),
        policy=policy,
        tasks=tasks,
        num_steps=cfg.num_steps,
        seed=cfg.seed,
    )
    meta_params = {k: v.detach() for k, v in learner.meta_params.items()}
    lrs = learner.lrs(cfg.num_steps, schedule)
    methods: dict[str, Any] = {
        learner.name: summarize(adaptation_returns(params=meta_params, lrs=lrs, **common))
    }
    budget: dict[str, int] = {learner.name: int(learner.env_steps)}
    chosen: dict[str, list[float]] = {learner.name: [float(x) for x in schedule]}
    if cfg.tune_later_lr:
        if not all(isinstance(lr, float) for lr in lrs):
            raise ConfigError(
                f"tune_later_lr needs an inner learning-rate schedule; {learner.name} adapts with "
                "meta-learned per-parameter rates"
            )
        later = tune_inner_lr(
            meta_params, schedule, cfg, learner, cfg.later_lr_scales, policy, keep_first=True
        )
        name = f"{learner.name} (tuned later lr)"
        methods[name] = summarize(adaptation_returns(params=meta_params, lrs=later, **common))
        chosen[name] = later
        budget[name] = budget[learner.name]
    # The baselines are plain policies whose inner steps adapt every parameter (fine-tuning),
    # whatever the learner adapts (a CAVIA learner adapts only its context).
    plain = dataclasses.replace(policy, context_dim=0)
    baselines: dict[str, Params] = {}
    if "scratch" in cfg.baselines:
        fresh = plain.init_params(
            torch.Generator().manual_seed(derive_seed(lc.seed, 99)),
            init_for_family(lc.env, lc.init),
        )
        baselines["scratch"] = {k: v.to(lc.device) for k, v in fresh.items()}
        budget["scratch"] = 0
    if "pretrain" in cfg.baselines:
        pre = pretrained or pretrain_baseline(learner, cfg, run_dir, progress)
        baselines["pretrain"] = {k: v.detach() for k, v in pre.meta_params.items()}
        budget["pretrain"] = int(pre.env_steps)
    common["policy"] = plain
    for name, params in baselines.items():
        methods[name] = summarize(adaptation_returns(params=params, lrs=schedule, **common))
        chosen[name] = [float(x) for x in schedule]
        if cfg.tune_baseline_lr and cfg.num_steps > 0:
            tuned = tune_inner_lr(
                params, schedule, cfg, learner, cfg.baseline_lr_scales, plain, per_step=True
            )
            methods[f"{name} (tuned lr)"] = summarize(
                adaptation_returns(params=params, lrs=tuned, **common)
            )
            chosen[f"{name} (tuned lr)"] = tuned
            budget[f"{name} (tuned lr)"] = budget[name]
    return {
        "env": lc.env,
        "algorithm": learner.name,
        "meta_iterations": learner.iteration,
        "protocol": dataclasses.asdict(cfg),
        "test_tasks": [task_to_dict(t) for t in tasks],
        "env_steps_trained": budget,
        "inner_lr": chosen,
        "returns": methods,
    }


def tune_inner_lr(
    params: Params,
    schedule: list[float],
    cfg: EvalConfig,
    learner: Any,
    scales: Sequence[float],
    policy: MLPPolicy,
    keep_first: bool = False,
    per_step: bool = False,
) -> list[float]:
    """A schedule tuned on 10 *training* tasks (a stream disjoint from meta-training's and from the
    test split) for ``params`` of ``policy``, over ``scales`` times ``schedule``.

    By default one scale for the whole schedule, the one whose return after the last step is
    highest; ``keep_first`` scales only the steps after the first. With ``per_step`` each step is
    tuned in turn for the return right after it: step k's rate is the schedule's step-k rate times
    the scale whose return after k steps is highest, the steps before it keeping the rates chosen
    for them. (A rate tuned only for the last step can undo a policy in its first step and then
    recover; a baseline compared after every step is tuned for every step.)"""
    if not per_step:
        candidates = [
            [lr if keep_first and i == 0 else lr * scale for i, lr in enumerate(schedule)]
            for scale in scales
        ]
        return _best_on_tuning_tasks(candidates, params, cfg, learner, policy)
    chosen: list[float] = []
    for lr in schedule[: cfg.num_steps]:
        candidates = [[*chosen, lr * scale] for scale in scales]
        chosen = _best_on_tuning_tasks(candidates, params, cfg, learner, policy)
    return chosen


def _best_on_tuning_tasks(
    candidates: Sequence[list[float]],
    params: Params,
    cfg: EvalConfig,
    learner: Any,
    policy: MLPPolicy,
) -> list[float]:
    """The candidate schedule whose mean return after its last step on the 10 tuning tasks is
    highest (each candidate runs as many steps as it has rates); the first one on ties."""
    lc = learner.config
    tasks = sample_tasks(learner.family, 10, lc.seed, split="train", index=TUNING_STREAM)
    best, best_ret = candidates[0], -math.inf
    for lrs in candidates:
        ret = adaptation_returns(
            policy=policy,
            params=params,
            tasks=tasks,
            num_steps=len(lrs),
            lrs=lrs,
            seed=derive_seed(cfg.seed, 3),
            **_adaptation_kwargs(learner, cfg),
        )[-1].mean()
        if ret > best_ret:
            best, best_ret = lrs, float(ret)
    return best


def pretrain_baseline(
    learner: Any, cfg: EvalConfig, run_dir: Path | None, progress: bool = True
) -> Any:
    """The multi-task pretraining baseline: MAML-TRPO with zero inner steps (plain multi-task
    policy optimization) on the learner's family and common settings, trained for
    ``(num_inner_steps + 1) x meta_iterations`` iterations: as many batches as meta-training
    collected, since each of its iterations collects one batch instead of ``num_inner_steps + 1``.
    In env steps that was 0.99-2.4x the meta-learner's in the benchmarks (a meta-policy that falls
    before adapting collects short pre-adaptation episodes). Kept under
    ``run_dir/baselines/pretrain`` and reused if already finished with these settings (else
    trained again)."""
    from fastadapt.train import load_learner, make_learner, train

    lc = learner.config
    iterations = cfg.pretrain_iterations or lc.meta_iterations * (lc.num_inner_steps + 1)
    common = {f.name: getattr(lc, f.name) for f in dataclasses.fields(CommonConfig)}
    common.update(
        meta_iterations=iterations,
        seed=lc.seed + 1,
        checkpoint_every=max(1, min(lc.checkpoint_every * (lc.num_inner_steps + 1), iterations)),
    )
    common["context_params"] = 0  # a plain policy: its inner steps fine-tune every parameter
    pcfg = MAMLConfig(**common, num_inner_steps=0)
    pre = make_learner("maml", pcfg, learner.family)
    if run_dir is None:
        while pre.iteration < iterations:
            pre.step()
        return pre
    pdir = Path(run_dir) / BASELINES / "pretrain"
    if is_finished(pdir):
        done = load_learner(pdir, lc.device)
        if done.iteration == iterations and not config_differences(done.config, pcfg):
            return done
    train(pre, pdir, overwrite=True, progress=progress)
    return pre


def validation_returns(
    learner: Any,
    cfg: EvalConfig,
    num_tasks: int,
    task_seed: int,
    tune_lr: bool = False,
) -> tuple[np.ndarray, list[Any]]:
    """Returns of ``learner`` after 0..``cfg.num_steps`` steps (``[steps + 1, tasks]``) on
    ``num_tasks`` *training*-split tasks of ``task_seed`` from :data:`VALIDATION_STREAM` (never
    the test split, and disjoint from meta-training's and lr tuning's streams), in ``cfg``'s
    protocol, and the rates it adapted with: the test schedule of
    :func:`evaluate_learner`, or with ``tune_lr`` that schedule tuned step by step as a baseline's
    is (``tune_inner_lr``; a plain policy's every parameter adapts)."""
    cfg, schedule = _resolved_protocol(learner, cfg)
    params = {k: v.detach() for k, v in learner.meta_params.items()}
    lrs = learner.lrs(cfg.num_steps, schedule)
    if tune_lr and cfg.num_steps > 0:
        lrs = tune_inner_lr(
            params, schedule, cfg, learner, cfg.baseline_lr_scales, learner.policy, per_step=True
        )
    tasks = sample_tasks(
        learner.family, num_tasks, task_seed, split="train", index=VALIDATION_STREAM
    )
    returns = adaptation_returns(
        policy=learner.policy,
        params=params,
        tasks=tasks,
        num_steps=cfg.num_steps,
        lrs=lrs,
        seed=derive_seed(cfg.seed, 5),
        **_adaptation_kwargs(learner, cfg),
    )
    return returns, lrs


def validation_score(returns: np.ndarray) -> float:
    """The selection score of :func:`validation_returns`' ``[steps + 1, tasks]`` returns: the mean
    return after the adaptation steps (1..k; the unadapted return when there are none)."""
    adapted = returns[1:] if len(returns) > 1 else returns
    return float(adapted.mean())


def select_runs(
    run_dirs: Sequence[Path | str],
    cfg: EvalConfig,
    num_tasks: int = 40,
    task_seed: int | None = None,
    tune_lr: bool = False,
    device: str = "",
) -> dict[str, Any]:
    """Pick the best of several finished runs (e.g. seeds of one configuration) by
    :func:`validation_score` on the same ``num_tasks`` training-split validation tasks (of
    ``task_seed``, default the first run's seed), so the choice never sees a test task. Returns
    ``{"best": index, "runs": [{"run_dir", "seed", "score", "returns": per-step means,
    "inner_lr"}, ...], "num_tasks", "task_seed"}``. ``tune_lr``: adapt each with its rates tuned
    step by step, as baselines are (for runs of a plain multi-task policy)."""
    from fastadapt.train import load_learner

    if not run_dirs:
        raise ConfigError("select_runs needs at least one run directory")
    learners = [load_learner(d, device) for d in run_dirs]
    families = {learner.config.env for learner in learners}
    if len(families) > 1:
        raise ConfigError(f"the runs to select from train different families: {sorted(families)}")
    if task_seed is None:
        task_seed = learners[0].config.seed
    rows = []
    for d, learner in zip(run_dirs, learners, strict=True):
        returns, lrs = validation_returns(learner, cfg, num_tasks, task_seed, tune_lr)
        rows.append(
            {
                "run_dir": str(d),
                "algorithm": learner.name,
                "seed": learner.config.seed,
                "score": validation_score(returns),
                "returns": returns.mean(axis=1).tolist(),
                "inner_lr": [lr if isinstance(lr, float) else "learned" for lr in lrs],
            }
        )
    best = max(range(len(rows)), key=lambda i: rows[i]["score"])  # the first one on ties
    return {"best": best, "runs": rows, "num_tasks": num_tasks, "task_seed": task_seed}


def write_eval(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``eval.json`` and ``adaptation.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    path = out_dir / "eval.json"
    atomic_write_bytes(path, json.dumps(result, indent=2).encode())
    from fastadapt.report import plot_adaptation

    png = plot_adaptation({"": result}, out_dir / "adaptation.png")
    return path, png


def format_table(result: dict[str, Any]) -> str:
    """A markdown table: return after each adaptation step for each method (mean ± 95% CI)."""
    methods = result["returns"]
    steps = len(next(iter(methods.values()))["mean"])
    if "x_label" in result:  # RL²: returns per episode within a trial
        head = "| method | " + " | ".join(f"episode {k + 1}" for k in range(steps)) + " |"
    else:
        head = (
            "| method | "
            + " | ".join(f"{k} step{'s' if k != 1 else ''}" for k in range(steps))
            + " |"
        )
    sep = "|---" * (steps + 1) + "|"
    rows = [head, sep]
    for name, m in methods.items():
        cells = [f"{mu:.2f} ± {ci:.2f}" for mu, ci in zip(m["mean"], m["ci95"], strict=True)]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
