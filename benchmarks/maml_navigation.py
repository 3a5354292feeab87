"""MAML-TRPO on Navigation2D-v0 in the MAML paper's setting, evaluated in the paper's protocol.

    python benchmarks/maml_navigation.py --out runs/bench_maml_nav.json [--meta-iterations 100]
        [--batch-unit steps|episodes] [--hessian-subsample 5] [--seed S] [--inner-lr 0.1]
        [--meta-batch-size 20] [--init xavier|small-output]

Training: 20 tasks per meta-batch, 20 episodes per task, horizon 100, one inner step of 0.1,
TRPO with max_kl 0.01, a 2x100 ReLU policy (Xavier-uniform weights and zero biases, as the
reference code), gamma 0.99, GAE lambda 1. Test: 40 held-out tasks, 40 episodes per step, inner
learning rate 0.1 then 0.05, returns after 0..3 steps, beside the paper's figures and the scratch
and pretrain baselines (same protocol, same samples per step).
The defaults follow the reference code: the 20 and 40 episodes counted in steps as rllab's
batch_size does (``--batch-unit steps``: whole episodes up to 20 x 100 and 40 x 100 steps per task,
for training and test), 100 meta-iterations, and TRPO's Fisher with its inner Hessians on every 5th
step (the reference used the exact Fisher; ``--hessian-subsample 5`` learns as well for about a
sixth of its time). ``--batch-unit episodes --meta-iterations 500 --hessian-subsample 0`` is the
library's default configuration (``fastadapt train maml``) at 500 iterations.
``--inner-lr A`` trains with one inner step of A and tests with A then A/2 (the reference code's
point-robot run used A = 0.5, which the paper's text gives as 0.1). A second MAML row, "maml (tuned
later lr)", keeps the first step and picks the later steps' learning rate on training tasks.
Writes {"seconds_per_meta_iteration", "wall_s", "returns": {"maml", "scratch", "pretrain", "paper"}}.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    add_reuse_argument,
    parser,
    print_returns,
    train_and_evaluate,
    write_json,
)

from fastadapt.config import EvalConfig, MAMLConfig  # noqa: E402
from fastadapt.evaluation import write_eval  # noqa: E402
from fastadapt.policies import INITS, init_for_family  # noqa: E402

PAPER = [-40.41, -11.68, -3.33, -3.23]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--meta-iterations", type=int, default=100)
    p.add_argument("--run-dir", type=Path, default=Path("runs/bench_maml_navigation"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fvp", choices=["adapted", "subsampled", "exact"], default="subsampled")
    p.add_argument("--fisher-subsample", type=int, default=MAMLConfig.fisher_subsample)
    p.add_argument(
        "--hessian-subsample",
        type=int,
        default=5,
        help="inner Hessians of the Fisher on every N-th episode/step (0: --fisher-subsample)",
    )
    p.add_argument("--backtrack-ratio", type=float, default=MAMLConfig.backtrack_ratio)
    p.add_argument(
        "--batch-unit",
        choices=["episodes", "steps"],
        default="steps",
        help="what the 20 training and 40 test episodes count: episodes exactly, or steps "
        "(whole episodes up to 20 x 100 and 40 x 100 steps per task, as the reference code's "
        "rllab batch_size does)",
    )
    p.add_argument(
        "--inner-lr",
        type=float,
        default=0.1,
        help="the training inner step; the test steps are this, then half of it",
    )
    p.add_argument(
        "--inner-steps",
        type=int,
        default=1,
        help="inner steps in meta-training, with the test's schedule (--inner-lr, then half)",
    )
    p.add_argument(
        "--intermediate-weight",
        type=float,
        default=0.0,
        help="weight of the returns between inner steps in the meta-objective (MAML++'s "
        "multi-step loss; needs --inner-steps >= 2)",
    )
    p.add_argument("--meta-batch-size", type=int, default=20)
    p.add_argument(
        "--context-params",
        type=int,
        default=0,
        help="CAVIA: adapt only this many context parameters fed to the first layer (0: MAML)",
    )
    p.add_argument(
        "--raw-advantages",
        action="store_true",
        help="inner and outer steps on the linear baseline's advantages as they are, not "
        "normalized per task (an inner step then shrinks as the returns level off)",
    )
    p.add_argument(
        "--init",
        choices=INITS,
        default=init_for_family("Navigation2D-v0"),
        help="initial weights: xavier (the reference code's, this family's default) or "
        "small-output (the earlier default; the older figures in benchmarks/README.md)",
    )
    add_reuse_argument(p)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    t0 = time.perf_counter()
    cfg = MAMLConfig(
        env="Navigation2D-v0",
        meta_iterations=args.meta_iterations,
        meta_batch_size=args.meta_batch_size,
        episodes_per_task=20,
        num_inner_steps=args.inner_steps,
        inner_lr=(args.inner_lr, args.inner_lr / 2)[: args.inner_steps],  # the last repeats
        intermediate_weight=args.intermediate_weight,
        max_kl=0.01,
        gamma=0.99,
        gae_lambda=1.0,
        seed=args.seed,
        fvp=args.fvp,
        fisher_subsample=args.fisher_subsample,
        hessian_subsample=args.hessian_subsample,
        backtrack_ratio=args.backtrack_ratio,
        checkpoint_every=100,
        batch_unit=args.batch_unit,
        context_params=args.context_params,
        normalize_advantages=not args.raw_advantages,
        init=args.init,
    )
    ev = EvalConfig(
        num_tasks=40,
        num_steps=3,
        episodes_per_step=40,
        batch_unit=args.batch_unit,
        tune_later_lr=True,
    )
    _, result, rows, train_s = train_and_evaluate(
        "maml", cfg, ev, args.run_dir, not args.no_progress, args.reuse
    )
    sec_per_it = statistics.median(r["time/iteration_s"] for r in rows)
    result["paper"] = PAPER
    write_eval(result, args.run_dir)
    wall = time.perf_counter() - t0
    returns = {k: v["mean"] for k, v in result["returns"].items()}
    returns["paper"] = PAPER
    print_returns(returns)
    print(
        f"median seconds per meta-iteration: {sec_per_it:.3f} "
        f"(sampling {statistics.median(r['time/sampling_s'] for r in rows):.3f}); "
        f"training {train_s:.0f} s; total wall {wall:.0f} s; torch threads {torch.get_num_threads()}"
    )
    write_json(
        args.out,
        {
            "seconds_per_meta_iteration": sec_per_it,
            "wall_s": wall,
            "train_s": train_s,
            "meta_iterations": args.meta_iterations,
            "fvp": args.fvp,
            "fisher_subsample": args.fisher_subsample,
            "hessian_subsample": args.hessian_subsample,
            "backtrack_ratio": args.backtrack_ratio,
            "batch_unit": args.batch_unit,
            "inner_lr": args.inner_lr,
            "inner_steps": args.inner_steps,
            "intermediate_weight": args.intermediate_weight,
            "meta_batch_size": args.meta_batch_size,
            "context_params": args.context_params,
            "normalize_advantages": not args.raw_advantages,
            "init": args.init,
            "returns": returns,
            "ci95": {k: v["ci95"] for k, v in result["returns"].items()},
            "env_steps_trained": result["env_steps_trained"],
        },
    )


if __name__ == "__main__":
    main()
