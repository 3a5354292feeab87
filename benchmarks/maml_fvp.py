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
from fastadapt.runtime import configure_cpu  # noqa: E402


def run(fvp: str, sub: int, iterations: int, seeds: list[int]) -> dict:
    times, finals, kls = [], [], []
    for seed in seeds:
        cfg = MAMLConfig(meta_iterations=iterations, fvp=fvp, fisher_subsample=sub, seed=seed)
        learner = MAML(cfg)
        rows = [learner.step() for _ in range(iterations)]
        times += [r["time/iteration_s"] for r in rows[2:]]
        finals.append(statistics.mean(r["return/post_adapt"] for r in rows[-10:]))
        kls.append(max(r["outer/kl"] for r in rows))
    return {
        "fvp": fvp,
        "fisher_subsample": sub if fvp != "exact" else 1,
        "iterations": iterations,
        "seeds": seeds,
        "seconds_per_meta_iteration": statistics.median(times),
        "post_adapt_return_last10": statistics.mean(finals),
        "post_adapt_return_last10_per_seed": finals,
        "max_kl": max(kls),
        "fvp_relative_error_vs_exact": fvp_error(fvp, sub),
    }


def fvp_error(fvp: str, sub: int) -> float:
    """||F_candidate v - F_exact v|| / ||F_exact v|| on the first meta-iteration's batch."""
    import fastadapt.learners.maml as M
    import fastadapt.optim.trpo as T

    products = []
    for mode, every in ((fvp, sub), ("exact", 1)):
        captured: dict = {}

        def capture(params, loss_fn, loss_kl_fn, fvp_kl_fn, *args, _c=captured):
            _c.update(params=params, fvp=fvp_kl_fn)
            return T.TRPOInfo(False, 0, 0, 0, 0, 0, 0)

        original, M.trpo_step = M.trpo_step, capture
        try:
            MAML(MAMLConfig(fvp=mode, fisher_subsample=every, seed=0)).step()
        finally:
            M.trpo_step = original
        params = captured["params"]
        v = torch.randn(sum(x.numel() for x in params), generator=torch.Generator().manual_seed(0))
        products.append(T.hessian_vector_product(captured["fvp"], params, 0.0)(v))
    cand, exact = products
    return float((cand - exact).norm() / exact.norm())


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument(
        "--exact-iterations",
        type=int,
        default=None,
        help="iterations for the (slow) exact candidate; default: --iterations",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per candidate")
    args = p.parse_args()
    configure_cpu()
    seeds = list(range(args.seeds))
    default_sub = MAMLConfig().fisher_subsample
    candidates = [
        ("subsampled", default_sub),
        ("subsampled", 10),
        ("adapted", default_sub),
        ("adapted", 5),
    ]
    candidates = list(dict.fromkeys(candidates))  # the default may be one of the others
    results = [run(fvp, sub, args.iterations, seeds) for fvp, sub in candidates]
    results.append(run("exact", 1, args.exact_iterations or args.iterations, seeds))
    print_table(
        [
            "fvp",
            "subsample",
            "s/iteration",
            "post-adapt return (last 10, mean over seeds)",
            "max exact KL",
            "FVP rel. error vs exact",
        ],
        [
            [
                r["fvp"],
                r["fisher_subsample"],
                r["seconds_per_meta_iteration"],
                r["post_adapt_return_last10"],
                r["max_kl"],
                r["fvp_relative_error_vs_exact"],
            ]
            for r in results
        ],
    )
    ratio = results[-1]["seconds_per_meta_iteration"] / results[0]["seconds_per_meta_iteration"]
    print(f"exact / default (subsampled/{default_sub}) time per meta-iteration: {ratio:.1f}x")
    write_json(args.out, {"results": results, "ratio_exact_over_default": ratio})


if __name__ == "__main__":
    main()
