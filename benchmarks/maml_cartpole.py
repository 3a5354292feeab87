"""The origin article's example: MAML on CartPoleDynamics-v0 against scratch and pretrain.

    python benchmarks/maml_cartpole.py --out runs/bench_maml_cartpole.json [--meta-iterations N]
    python benchmarks/maml_cartpole.py --algorithm metasgd --out runs/bench_metasgd_cartpole.json

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

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    STEP_HEADERS,
    add_reuse_argument,
    parser,
    print_returns,
    print_table,
    train_and_evaluate,
    write_json,
)

from fastadapt.config import EvalConfig, MAMLConfig, ProMPConfig  # noqa: E402
from fastadapt.evaluation import summarize, write_eval  # noqa: E402


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
    add_reuse_argument(p)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    if args.outer_lr is not None and args.algorithm != "promp":
        p.error(f"--outer-lr is ProMP's; --algorithm {args.algorithm} takes its outer step by TRPO")
    if args.algorithm == "promp" and args.outer_lr is None:
        args.outer_lr = ProMPConfig.outer_lr
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
    _, result, rows, _ = train_and_evaluate(
        args.algorithm, cfg, ev, args.run_dir, not args.no_progress, args.reuse
    )
    sec_per_it = statistics.median(r["time/iteration_s"] for r in rows)
    write_eval(result, args.run_dir)
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
        },
    )


if __name__ == "__main__":
    main()
