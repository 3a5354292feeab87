"""Helpers shared by the benchmark scripts: argument parsing, timing, the JSON result, a table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    return p


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls (after one warm-up call) and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def medians_in_turn(steps: dict[str, Callable[[], float]], rounds: int, skip: int = 0) -> dict:
    """Call every one of ``steps`` in turn, ``rounds`` times, so the machine's drift hits all alike;
    each call returns the seconds it took. The median per name over the rounds after the first
    ``skip`` (over all of them if none are left)."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(step())
    return {name: statistics.median(t[skip:] or t) for name, t in times.items()}


def seconds(fn: Callable[..., Any], *args: Any) -> float:
    """Wall time of one call ``fn(*args)``."""
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[f"{c:,.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def write_json(path: Path | None, result: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {**result, "machine": machine()}
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


STEP_HEADERS = ["0 steps", "1 step", "2 steps", "3 steps"]


def print_returns(returns: dict[str, Sequence[float]], title: str = "method") -> None:
    """A table of returns after 0..3 adaptation steps, one row per method."""
    print_table([title, *STEP_HEADERS], [[k, *[float(x) for x in v]] for k, v in returns.items()])


def train_and_evaluate(
    algorithm: str, cfg: Any, ev: Any, run_dir: Path, progress: bool, reuse: bool = False
) -> tuple[Any, dict[str, Any], list[dict[str, float]], float]:
    """Meta-train ``algorithm`` with ``cfg`` in ``run_dir``, then evaluate it (and the baselines
    ``ev`` names) on held-out tasks. Returns the learner, the evaluation result, the per-iteration
    metrics and the training seconds (set-up included). The caller writes the result
    (``fastadapt.evaluation.write_eval``) once complete. ``reuse``: evaluate the finished run
    already in ``run_dir`` if it was trained with ``cfg`` (``train_s`` is then its training
    time), else train."""
    from fastadapt.evaluation import evaluate_learner
    from fastadapt.runs import read_metrics
    from fastadapt.train import make_learner, train

    t0 = time.perf_counter()
    learner = None
    if reuse:
        learner, why = finished_same_run(run_dir, cfg, algorithm)
        if learner is None:
            print(f"{why}: training it", flush=True)
    reused = learner is not None
    if not reused:
        learner = make_learner(algorithm, cfg)
        train(learner, run_dir, overwrite=True, progress=progress)
    rows = read_metrics(run_dir)
    train_s = rows[-1]["time/wall_s"] if reused else time.perf_counter() - t0
    result = evaluate_learner(learner, ev, run_dir, progress=progress)
    return learner, result, rows, train_s


UCB_TUNING_TASKS = 2000  # training bandits the UCB1 constant is chosen on


@cache
def ucb1_constant(k: int, n: int) -> float:
    """UCB1's exploration constant tuned for n pulls of k arms on training bandits."""
    from fastadapt.bandit_baselines import tune_ucb1
    from fastadapt.tasks import Bandit, sample_tasks

    family = Bandit(k=k)
    return tune_ucb1(family, sample_tasks(family, UCB_TUNING_TASKS, seed=0), n, seed=2)


# RL2Config fields per --policy; a setting's own fields (its learning rate) come after these
SEQUENCE_POLICIES: dict[str, dict[str, Any]] = {
    "gru": {},  # RL2Config's default: one GRU layer of 256 units
    "lstm": {"policy": "lstm"},
    "transformer": {
        "policy": "transformer",
        "hidden_size": 128,
        "layers": 2,
        "heads": 4,
        "lr": 5e-4,
    },
}


def sequence_model(args: argparse.Namespace) -> dict[str, Any]:
    """The RL2Config fields of ``--policy``, ``--separate-critic`` and ``--prev-obs-inputs``."""
    return (
        SEQUENCE_POLICIES[args.policy]
        | ({"separate_critic": True} if args.separate_critic else {})
        | ({"prev_obs_inputs": True} if args.prev_obs_inputs else {})
    )


def rl2_run_name(args: argparse.Namespace, setting: str) -> str:
    """A run directory's name under --run-root: the shared-critic GRU's runs keep the bare
    setting's name, others are prefixed (``transformer_``, ``sepcritic_``, ``prevobs_``)."""
    return (
        ("sepcritic_" if args.separate_critic else "")
        + ("prevobs_" if args.prev_obs_inputs else "")
        + ("" if args.policy == "gru" else f"{args.policy}_")
        + setting
    )


def rl2_parser(
    description: str,
    eval_tasks: int,
    run_root: str,
    policy: str = "gru",
    prev_obs: bool = False,
) -> argparse.ArgumentParser:
    """The options both RL² benchmarks take (besides their settings and iterations); ``policy``
    is the script's default sequence model, ``prev_obs`` whether its inputs hold the previous
    observation by default."""
    p = parser(description)
    p.add_argument(
        "--policy",
        choices=list(SEQUENCE_POLICIES),
        default=policy,
        help="the sequence model: gru (256 units), lstm (256) or transformer (2 layers of "
        "width 128, 4 heads, lr 5e-4)",
    )
    p.add_argument(
        "--separate-critic",
        action="store_true",
        help="give the critic its own sequence model (RL2Config.separate_critic)",
    )
    p.add_argument(
        "--prev-obs-inputs",
        action=argparse.BooleanOptionalAction,
        default=prev_obs,
        help="also feed the observation the previous action was taken in "
        "(RL2Config.prev_obs_inputs)",
    )
    p.add_argument("--eval-tasks", type=int, default=eval_tasks)
    p.add_argument("--run-root", type=Path, default=Path(run_root))
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="train every setting from scratch instead of from this run's shorter-trial model",
    )
    p.add_argument(
        "--evaluate-only",
        action="store_true",
        help="do not train: evaluate the models an earlier run of the same settings left under "
        "--run-root (train_s is then that run's training time)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="evaluate a finished run under --run-root trained with the same settings instead of "
        "training it again; train the settings that have none",
    )
    return p


def add_reuse_argument(p: argparse.ArgumentParser) -> None:
    """``--reuse`` for the scripts built on :func:`train_and_evaluate`."""
    p.add_argument(
        "--reuse",
        action="store_true",
        help="evaluate the finished run in --run-dir if it was trained with these settings "
        "instead of training it again",
    )


def finished_same_run(run_dir: Path, cfg: Any, algorithm: str) -> tuple[Any, str]:
    """``(learner, "")`` restored from ``run_dir``'s final model when that run finished and was
    trained by ``algorithm`` with ``cfg`` (device and checkpointing aside), else
    ``(None, why not)``."""
    from fastadapt.config import config_differences
    from fastadapt.runs import is_finished
    from fastadapt.train import load_learner

    if not is_finished(run_dir):
        return None, f"{run_dir} holds no finished run"
    learner = load_learner(run_dir)
    if learner.name != algorithm:
        return None, f"{run_dir} was trained by {learner.name}, not {algorithm}"
    differ = config_differences(learner.config, cfg)
    if differ:
        return None, (
            f"{run_dir} was trained with other settings ({', '.join(differ)}: "
            f"{[getattr(learner.config, f) for f in differ]} vs "
            f"{[getattr(cfg, f) for f in differ]})"
        )
    return learner, ""


def train_rl2_row(
    cfg: Any,
    run_dir: Path,
    eval_tasks: int,
    paper: float | None,
    baselines: dict[str, Callable[[Any, list, int], Any]],
    progress: bool,
    start: tuple[str, Path] | None = None,
    evaluate_only: bool = False,
    reuse: bool = False,
    trained: set[Path] | None = None,
) -> dict[str, Any]:
    """Train RL² with ``cfg`` (from the model of ``start = (label, run_dir)`` if given), evaluate
    it on ``eval_tasks`` held-out tasks (``rl2``: sampling its actions, as trained;
    ``rl2_greedy``: its most likely action) and compute each baseline (``fn(family, tasks, n) ->
    per-task totals``) on the same tasks: one result row. ``evaluate_only``: load the model an
    earlier run left in ``run_dir`` instead of training (it must have been trained with ``cfg``);
    ``reuse``: the same where ``run_dir`` holds such a model and ``start``'s run is not in
    ``trained`` (the runs this benchmark trained anew; ``run_dir`` joins it when trained), else
    train (``reused`` in the row says which)."""
    import dataclasses

    from fastadapt.learners.rl2 import evaluate_rl2
    from fastadapt.runs import read_metrics
    from fastadapt.tasks import sample_tasks
    from fastadapt.train import make_learner, train

    if start is not None:
        cfg = dataclasses.replace(cfg, init_from=str(start[1]))
    t0 = time.perf_counter()
    learner = None
    trained = set() if trained is None else trained
    if reuse and start is not None and Path(start[1]) in trained:
        reuse = False
        print(f"{run_dir}: its start {start[1]} was trained anew: training it", flush=True)
    if evaluate_only or reuse:
        learner, why = finished_same_run(run_dir, cfg, "rl2")
        if learner is None and evaluate_only:
            raise SystemExit(f"{why}; train it first")
        if learner is None:
            print(f"{why}: training it", flush=True)
    reused = learner is not None
    if reused:
        train_s = read_metrics(run_dir)[-1]["time/wall_s"]
    else:
        learner = make_learner("rl2", cfg)
        train(learner, run_dir, overwrite=True, progress=progress)
        trained.add(Path(run_dir))
        train_s = time.perf_counter() - t0
    ev = evaluate_rl2(learner, num_tasks=eval_tasks)
    greedy = evaluate_rl2(learner, num_tasks=eval_tasks, deterministic=True)
    tasks = sample_tasks(learner.family, eval_tasks, cfg.seed, split="test")
    n = cfg.episodes_per_task
    row: dict[str, Any] = {
        "init_from": start[0] if start else "scratch",
        "reused": reused,
        "rl2": ev["total_reward"]["mean"],
        "rl2_ci95": ev["total_reward"]["ci95"],
        "rl2_greedy": greedy["total_reward"]["mean"],
        "paper": paper,
        "policy": cfg.policy,
        "separate_critic": cfg.separate_critic,
        "prev_obs_inputs": cfg.prev_obs_inputs,
        "gamma": cfg.gamma,
        "gae_lambda": cfg.gae_lambda,
        "seed": cfg.seed,
    }
    for name, fn in baselines.items():
        row[name] = float(fn(learner.family, tasks, n).mean())
    row["iterations"] = cfg.meta_iterations
    row["train_s"] = train_s
    row["rl2_vs_paper"] = row["rl2"] / paper if paper else None
    return row
