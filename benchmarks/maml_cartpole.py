"""The origin article's example: MAML on CartPoleDynamics-v0 against scratch and pretrain.

    python benchmarks/maml_cartpole.py --out runs/bench_maml_cartpole.json [--meta-iterations N]
    python benchmarks/maml_cartpole.py --algorithm metasgd --out runs/bench_metasgd_cartpole.json
    python benchmarks/maml_cartpole.py --candidates 3 --seed S ...   # best of three seeds

With ``--candidates K`` the script trains K seeds (K x S .. K x S + K - 1, each in
``--run-dir``/seed<N>), and so K pretrain baselines, picks the meta-learner and the pretrain
policy whose mean return after 1..3 steps on 40 *training*-split validation tasks is highest
(``fastadapt.evaluation.select_runs``; the pretrain policies adapt with their tuned rates), and
tests the two picks on the chosen seed's held-out tasks. Each method gets the same K-fold budget
and the same selection; no test task takes part in the choice.

Held-out tasks include reversed actuators (half the tasks push the other way) and an unobserved goal
position. All methods get the same inner updates (lr, then lr/2 as in the MAML paper's protocol) and
the same samples per step, on the same tasks with the same episode seeds, so the script also reports
the meta-learner's per-task advantage over each baseline (paired mean and 95% CI). Meta-SGD adapts
with its meta-learned rates instead of the schedule; the baselines keep the schedule (and a row
with their rate tuned on training tasks).
Writes {"seconds_per_meta_iteration", "wall_s", "returns": {"maml" (or the --algorithm's name),
"scratch", "pretrain"}, "reversed_returns": ..., "forward_returns": ..., "maml_minus": {baseline:
{"mean", "ci95"}}}; "maml_minus" holds the --algorithm's lead, whichever it is.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    STEP_HEADERS,
    add_reuse_argument,
    finished_same_run,
    parser,
    print_returns,
    print_table,
    train_and_evaluate,
    write_json,
)

from fastadapt.config import EvalConfig, MAMLConfig, ProMPConfig  # noqa: E402
from fastadapt.evaluation import evaluate_learner, summarize, write_eval  # noqa: E402
from fastadapt.tasks.core import sample_tasks  # noqa: E402


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--meta-iterations", type=int, default=1000)
    p.add_argument("--run-dir", type=Path, default=Path("runs/bench_maml_cartpole"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--inner-lr",
        type=float,
        default=0.1,
        help="inner learning rate in training; the test halves it after the first step",
    )
    p.add_argument("--inner-steps", type=int, default=1, help="inner steps in meta-training")
    p.add_argument(
        "--algorithm",
        choices=("maml", "metasgd", "promp"),
        default="maml",
        help="the meta-learner: metasgd meta-learns a rate per parameter (started at --inner-lr) "
        "and tests with them; promp takes ProMP's outer objective (its own defaults otherwise)",
    )
    p.add_argument(
        "--outer-lr",
        type=float,
        default=None,
        help="ProMP's Adam learning rate (default: ProMPConfig's; its MuJoCo default learns "
        "CartPole slowly, 0.01 does not); only with --algorithm promp",
    )
    p.add_argument(
        "--context-params",
        type=int,
        default=0,
        help="CAVIA: adapt only this many context parameters fed to the first layer (0: every "
        "parameter adapts)",
    )
    p.add_argument(
        "--inner-objective",
        choices=("vpg", "lvc"),
        default="vpg",
        help="maml/metasgd: the inner loss the meta-gradient differentiates through (lvc also "
        "credits the pre-adaptation policy for the episodes it collects)",
    )
    p.add_argument(
        "--pre-adapt-weight",
        type=float,
        default=0.0,
        help="maml/metasgd: weight of the pre-adaptation episodes' return in the meta-objective",
    )
    p.add_argument("--meta-batch-size", type=int, default=20, help="tasks per meta-iteration")
    p.add_argument(
        "--episodes",
        type=int,
        default=10,
        help="episodes per task before each inner step in training (and in the test, unless "
        "--test-episodes)",
    )
    p.add_argument(
        "--test-episodes",
        type=int,
        default=None,
        help="episodes per task before each test step, for every method alike (the MAML paper "
        "tested with twice its training episodes)",
    )
    p.add_argument(
        "--gae-lambda",
        type=float,
        default=1.0,
        help="GAE lambda of the inner and outer advantages (1: Monte Carlo returns minus the "
        "linear baseline, as in the MAML paper)",
    )
    p.add_argument(
        "--eval-tasks",
        type=int,
        default=40,
        help="held-out test tasks (the paired 95%% intervals narrow as 1/sqrt(tasks))",
    )
    p.add_argument(
        "--hessian-subsample",
        type=int,
        default=MAMLConfig.hessian_subsample,
        help="MAML-TRPO's Fisher: its inner Hessians on every N-th pre-adaptation episode (0: "
        "its default, every 20th, which is one episode of 10)",
    )
    p.add_argument(
        "--candidates",
        type=int,
        default=1,
        help="train this many seeds of the meta-learner and of the pretrain baseline and test the "
        "best of each on training-split validation tasks (1: no selection)",
    )
    p.add_argument(
        "--validation-tasks", type=int, default=40, help="with --candidates: validation tasks"
    )
    add_reuse_argument(p)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    if args.outer_lr is not None and args.algorithm != "promp":
        p.error(f"--outer-lr is ProMP's; --algorithm {args.algorithm} takes its outer step by TRPO")
    if args.algorithm == "promp" and args.outer_lr is None:
        args.outer_lr = ProMPConfig.outer_lr
    if args.candidates < 1:
        p.error(f"--candidates must be at least 1, got {args.candidates}")
    test_episodes = args.test_episodes or args.episodes
    t0 = time.perf_counter()
    common = dict(
        env="CartPoleDynamics-v0",
        meta_iterations=args.meta_iterations,
        meta_batch_size=args.meta_batch_size,
        episodes_per_task=args.episodes,
        num_inner_steps=args.inner_steps,
        inner_lr=(args.inner_lr, args.inner_lr / 2),
        gamma=0.99,
        gae_lambda=args.gae_lambda,
        seed=args.seed,
        checkpoint_every=50,
        context_params=args.context_params,
    )
    if args.algorithm == "promp":
        cfg = ProMPConfig(outer_lr=args.outer_lr, **common)
    else:
        cfg = MAMLConfig(
            max_kl=0.01,
            inner_objective=args.inner_objective,
            pre_adapt_weight=args.pre_adapt_weight,
            hessian_subsample=args.hessian_subsample,
            **common,
        )
    ev = EvalConfig(
        num_tasks=args.eval_tasks,
        num_steps=3,
        episodes_per_step=test_episodes,
    )
    selection = None
    if args.candidates == 1:
        _, result, rows, _ = train_and_evaluate(
            args.algorithm, cfg, ev, args.run_dir, not args.no_progress, args.reuse
        )
        out_dir = args.run_dir
    else:
        result, rows, selection, out_dir = train_and_select(
            args.algorithm, cfg, ev, args, not args.no_progress
        )
    sec_per_it = statistics.median(r["time/iteration_s"] for r in rows)
    write_eval(result, out_dir)
    wall = time.perf_counter() - t0
    reversed_mask = np.array([t["actuator_sign"] < 0 for t in result["test_tasks"]])
    split = {}
    for name, m in result["returns"].items():
        per_task = np.array(m["per_task"]).T  # [steps + 1, tasks]
        split[name] = {
            "reversed": summarize(per_task[:, reversed_mask])["mean"],
            "forward": summarize(per_task[:, ~reversed_mask])["mean"],
        }
    returns = {k: v["mean"] for k, v in result["returns"].items()}
    # Paired on the same test tasks and episode seeds: the meta-learner minus each baseline, per task.
    learner_tasks = np.array(result["returns"][args.algorithm]["per_task"])
    paired = {
        name: summarize((learner_tasks - np.array(m["per_task"])).T)
        for name, m in result["returns"].items()
        if name != args.algorithm
    }
    print_returns(returns)
    print_returns({k: v["reversed"] for k, v in split.items()}, "method (reversed actuators)")
    print_table(
        [f"{args.algorithm} minus (paired, mean ± 95% CI)", *STEP_HEADERS],
        [
            [k, *[f"{m:+.1f} ± {c:.1f}" for m, c in zip(v["mean"], v["ci95"], strict=True)]]
            for k, v in paired.items()
        ],
    )
    print(
        f"median seconds per meta-iteration: {sec_per_it:.3f}; total wall {wall:.0f} s; "
        f"{int(reversed_mask.sum())} of {len(reversed_mask)} test tasks reversed"
    )
    write_json(
        args.out,
        {
            "seconds_per_meta_iteration": sec_per_it,
            "wall_s": wall,
            "meta_iterations": args.meta_iterations,
            "returns": returns,
            "ci95": {k: v["ci95"] for k, v in result["returns"].items()},
            "reversed_returns": {k: v["reversed"] for k, v in split.items()},
            "forward_returns": {k: v["forward"] for k, v in split.items()},
            "maml_minus": {k: {"mean": v["mean"], "ci95": v["ci95"]} for k, v in paired.items()},
            "inner_lr": args.inner_lr,
            "inner_steps": args.inner_steps,
            "gae_lambda": args.gae_lambda,
            "algorithm": args.algorithm,
            "outer_lr": args.outer_lr if args.algorithm == "promp" else None,
            "meta_batch_size": args.meta_batch_size,
            "episodes": args.episodes,
            "test_episodes": test_episodes,
            "context_params": args.context_params,
            "inner_objective": args.inner_objective,
            "pre_adapt_weight": args.pre_adapt_weight,
            "hessian_subsample": args.hessian_subsample,
            "eval_tasks": args.eval_tasks,
            "env_steps_trained": result["env_steps_trained"],
            "candidates": args.candidates,
            "selection": selection,
        },
    )


def train_and_select(
    algorithm: str, cfg: Any, ev: EvalConfig, args: Any, progress: bool
) -> tuple[dict[str, Any], list[dict[str, float]], dict[str, Any], Path]:
    """Train ``args.candidates`` seeds of ``cfg`` (and their pretrain baselines), pick the best
    meta-learner and the best pretrain policy on training-split validation tasks, and evaluate
    the pick against the picked pretrain policy on the chosen seed's test tasks. Returns the
    evaluation, the metrics of every candidate's iterations, the selection record (every
    candidate's validation scores and, for the report only, its unselected test returns) and
    the chosen run directory."""
    from fastadapt.evaluation import adaptation_returns, pretrain_baseline, select_runs
    from fastadapt.runs import BASELINES, read_metrics
    from fastadapt.train import load_learner, make_learner, train

    k = args.candidates
    seeds = [k * args.seed + j for j in range(k)]
    dirs = [args.run_dir / f"seed{s}" for s in seeds]
    rows: list[dict[str, float]] = []
    meta_steps = pre_steps = 0
    for s, d in zip(seeds, dirs, strict=True):
        scfg = dataclasses.replace(cfg, seed=s)
        learner = finished_same_run(d, scfg, algorithm)[0] if args.reuse else None
        if learner is None:
            learner = make_learner(algorithm, scfg)
            train(learner, d, overwrite=True, progress=progress)
        rows += read_metrics(d)
        meta_steps += int(learner.env_steps)
        pre_steps += int(pretrain_baseline(learner, ev, d, progress).env_steps)
    vcfg = dataclasses.replace(ev, baselines=())
    meta_pick = select_runs(dirs, vcfg, args.validation_tasks, task_seed=seeds[0])
    pre_dirs = [d / BASELINES / "pretrain" for d in dirs]
    pre_pick = select_runs(pre_dirs, vcfg, args.validation_tasks, task_seed=seeds[0], tune_lr=True)
    chosen = dirs[meta_pick["best"]]
    learner = load_learner(chosen)
    pretrained = load_learner(pre_dirs[pre_pick["best"]])
    result = evaluate_learner(learner, ev, chosen, progress, pretrained=pretrained)
    result["env_steps_trained"][algorithm] = meta_steps
    for name in result["env_steps_trained"]:
        if name.startswith("pretrain"):
            result["env_steps_trained"][name] = pre_steps
    # Every candidate on the chosen seed's test tasks, to show what the choice bought (reported,
    # never used to choose).
    tasks = sample_tasks(learner.family, ev.num_tasks, learner.config.seed, split="test")
    schedule = result["inner_lr"][algorithm]
    for row, d in zip(meta_pick["runs"], dirs, strict=True):
        cand = load_learner(d)
        lc = cand.config
        params = {n: v.detach() for n, v in cand.meta_params.items()}
        row["test_returns"] = (
            adaptation_returns(
                cand.family,
                cand.policy,
                params,
                tasks,
                ev.num_steps,
                cand.lrs(ev.num_steps, schedule),
                ev.episodes_per_step,
                ev.seed,
                lc.gamma,
                lc.gae_lambda,
                lc.normalize_advantages,
            )
            .mean(axis=1)
            .tolist()
        )
    selection = {"seeds": seeds, "meta": meta_pick, "pretrain": pre_pick}
    for name, pick in (("meta-learner", meta_pick), ("pretrain (tuned lr)", pre_pick)):
        print_table(
            [f"{name} candidates (validation)", *STEP_HEADERS, "score"],
            [
                [
                    ("* " if i == pick["best"] else "  ") + f"seed {r['seed']}",
                    *r["returns"],
                    r["score"],
                ]
                for i, r in enumerate(pick["runs"])
            ],
        )
    return result, rows, selection, chosen


if __name__ == "__main__":
    main()
