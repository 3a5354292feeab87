"""Fisher-vector product candidates for MAML-TRPO, side by side on Navigation2D-v0.

    python benchmarks/maml_fvp.py --out runs/bench_maml_fvp.json [--iterations 40]

Each candidate trains from the same seed for the same number of meta-iterations in the MAML paper's
setting (20 tasks x 20 episodes, horizon 100, 2x100 policy) and reports the median seconds per
meta-iteration, the post-adaptation return over the last 10 iterations, and the largest *exact* KL
any accepted step had (the line search checks the exact KL through the second-order adaptation, so
it must stay <= max_kl whatever Fisher the step direction used).

Candidates: ``exact`` (the KL Hessian through the second-order adaptation, all samples),
``adapted/N`` (the Fisher at the adapted parameters with the inner gradients held fixed, every N-th
sample) and ``subsampled/N`` (the exact Gauss-Newton Fisher through the adaptation, inner Hessians
and KL on every N-th episode/sample). Each runs ``--seeds`` seeds; the table also gives each
candidate's Fisher-vector product's relative error against the exact one on the same batch. Writes {"results": [{"fvp", "fisher_subsample", "seconds_per_meta_iteration",
"post_adapt_return_last10", "max_kl", ...}], "ratio_exact_over_default": ...}.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, print_table, write_json  # noqa: E402

from fastadapt.config import MAMLConfig  # noqa: E402
from fastadapt.learners.maml import MAML  # noqa: E402


def run(fvp: str, sub: int, iterations: int, seed: int) -> dict:
    cfg = MAMLConfig(meta_iterations=iterations, fvp=fvp, fisher_subsample=sub, seed=seed)
    learner = MAML(cfg)
    rows = [learner.step() for _ in range(iterations)]
    times = [r["time/iteration_s"] for r in rows[2:]]
    return {
        "fvp": fvp,
        "fisher_subsample": sub if fvp == "adapted" else 1,
        "iterations": iterations,
        "seconds_per_meta_iteration": statistics.median(times),
        "outer_seconds": statistics.median(
            r["time/iteration_s"] - r["time/sampling_s"] for r in rows[2:]
        ),
        "post_adapt_return_last10": statistics.mean(r["return/post_adapt"] for r in rows[-10:]),
        "max_kl": max(r["outer/kl"] for r in rows),
        "accepted": sum(r["outer/accepted"] for r in rows) / len(rows),
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument(
        "--exact-iterations",
        type=int,
        default=None,
        help="iterations for the (slow) exact candidate; default: --iterations",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_flush_denormal(True)
    default_sub = MAMLConfig().fisher_subsample
    results = [run("adapted", default_sub, args.iterations, args.seed)]
    for sub in sorted({1, 5, 10} - {default_sub}):
        results.append(run("adapted", sub, args.iterations, args.seed))
    results.append(run("exact", 1, args.exact_iterations or args.iterations, args.seed))
    print_table(
        [
            "fvp",
            "subsample",
            "s/iteration",
            "outer s",
            "post-adapt return (last 10)",
            "max exact KL",
        ],
        [
            [
                r["fvp"],
                r["fisher_subsample"],
                r["seconds_per_meta_iteration"],
                r["outer_seconds"],
                r["post_adapt_return_last10"],
                r["max_kl"],
            ]
            for r in results
        ],
    )
    ratio = results[-1]["seconds_per_meta_iteration"] / results[0]["seconds_per_meta_iteration"]
    print(f"exact / default (adapted/{default_sub}) time per meta-iteration: {ratio:.1f}x")
    write_json(args.out, {"results": results, "ratio_exact_over_default": ratio})


if __name__ == "__main__":
    main()
