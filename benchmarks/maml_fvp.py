"""Fisher-vector product candidates for MAML-TRPO, side by side on Navigation2D-v0.

    python benchmarks/maml_fvp.py --out runs/bench_maml_fvp.json [--iterations 40] [--product-only]

Each candidate trains from the same seed for the same number of meta-iterations in the MAML paper's
setting (20 tasks x 20 episodes, horizon 100, 2x100 policy) and reports the median seconds per
meta-iteration, the post-adaptation return over the last 10 iterations, and the largest *exact* KL
any accepted step had (the line search checks the exact KL through the second-order adaptation, so
it must stay <= max_kl whatever Fisher the step direction used).

Candidates: ``exact`` (the KL Hessian through the second-order adaptation, all samples),
``adapted/N`` (the Fisher at the adapted parameters with the inner gradients held fixed, every N-th
sample) and ``subsampled/N`` (the exact Gauss-Newton Fisher through the adaptation, inner Hessians
and KL on every N-th episode/sample). Each runs ``--seeds`` seeds; the table also gives each
candidate's Fisher-vector product's relative error against the exact one on the same batch.

First (and alone with ``--product-only``), one product of the ``subsampled`` Fisher as training
computes it is timed against the double backward of the KL whose Hessian it is, on the same batch,
then two learners, one with each, are stepped in turn for ``--iterations``: at the default
subsampling (episodes) and at every 5th step (the steps unit).

Writes {"results": [{"fvp", "fisher_subsample", "seconds_per_meta_iteration",
"post_adapt_return_last10", "max_kl", ...}], "ratio_exact_over_default": ..., "product_seconds":
[{"fisher_subsample", "batch_unit", "gauss_newton_s", "kl_double_backward_s", "speedup",
"gauss_newton_iteration_s", "kl_double_backward_iteration_s", "iteration_speedup", ...}]}.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import medians_in_turn, parser, print_table, seconds, write_json  # noqa: E402

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


def first_step_fvp(cfg: MAMLConfig, warmup: int = 0):
    """The Fisher-vector product of a learner's meta-iteration ``warmup + 1`` (its TRPO step not
    taken), the parameters it acts on, and the ``FisherInputs`` of ``_subsampled_fvp`` (if called)."""
    import fastadapt.learners.maml as M
    import fastadapt.optim.trpo as T

    learner = MAML(cfg)
    for _ in range(warmup):
        learner.step()
    captured: dict = {}

    def capture(params, loss_fn, loss_kl_fn, fvp, *args):
        captured.update(params=params, fvp=fvp)
        return T.TRPOInfo(False, 0, 0, 0, 0, 0, 0)

    def spy(inputs):
        captured["inputs"] = inputs
        return product_fn(inputs)

    original, product_fn = M.trpo_step, M._subsampled_fvp
    M.trpo_step, M._subsampled_fvp = capture, spy
    try:
        learner.step()
    finally:
        M.trpo_step, M._subsampled_fvp = original, product_fn
    return captured["params"], captured["fvp"], captured.get("inputs")


def random_vector(params) -> torch.Tensor:
    n = sum(x.numel() for x in params)
    return torch.randn(n, generator=torch.Generator().manual_seed(0))


def fvp_error(fvp: str, sub: int) -> float:
    """||F_candidate v - F_exact v|| / ||F_exact v|| on the first meta-iteration's batch."""
    products = []
    for mode, every in ((fvp, sub), ("exact", 1)):
        params, product, _ = first_step_fvp(MAMLConfig(fvp=mode, fisher_subsample=every, seed=0))
        products.append(product(random_vector(params)))
    cand, exact = products
    return float((cand - exact).norm() / exact.norm())


def product_speed(sub: int, unit: str, iterations: int, repeats: int = 7) -> dict:
    """Seconds per product of the subsampled Fisher, as trained with (forward through the steps,
    forward mode through the network, back) and as the double backward of the linearized KL whose
    Hessian it is (``maml.linearized_kl``), on the same batch (iteration 4 of seed 0), in turn; then
    seconds per meta-iteration of two learners, one with each, stepped in turn (:func:`step_pair`)."""
    from fastadapt.learners.maml import linearized_kl
    from fastadapt.optim.trpo import hessian_vector_product

    cfg = MAMLConfig(fisher_subsample=sub, batch_unit=unit, seed=0)
    params, product, inputs = first_step_fvp(cfg, warmup=3)
    v = random_vector(params)
    t0 = time.perf_counter()
    reference = hessian_vector_product(linearized_kl(inputs), params)
    build_s = time.perf_counter() - t0
    diff = float((product(v) - reference(v)).norm() / reference(v).norm())
    per_product = medians_in_turn(
        {
            "gauss_newton": lambda: seconds(product, v),
            "kl_double_backward": lambda: seconds(reference, v),
        },
        repeats,
    )
    gn, kl = per_product["gauss_newton"], per_product["kl_double_backward"]
    it_gn, it_kl = step_pair(cfg, iterations)
    return {
        "fisher_subsample": sub,
        "batch_unit": unit,
        "gauss_newton_s": gn,
        "kl_double_backward_s": kl,
        "kl_double_backward_build_s": build_s,
        "speedup": kl / gn,
        "relative_difference": diff,
        "iterations": iterations,
        "gauss_newton_iteration_s": it_gn,
        "kl_double_backward_iteration_s": it_kl,
        "iteration_speedup": it_kl / it_gn,
    }


def step_pair(cfg: MAMLConfig, iterations: int) -> tuple[float, float]:
    """Median seconds per meta-iteration (from the third on) of two learners of ``cfg`` stepped in
    turn, the first with the Fisher product training uses, the second with the double backward of
    the linearized KL, so the machine's drift hits both alike."""
    import fastadapt.learners.maml as M
    from fastadapt.optim.trpo import hessian_vector_product

    fast, slow = MAML(cfg), MAML(cfg)
    params = list(slow.trainable().values())
    product_fn = M._subsampled_fvp

    def slow_step() -> float:
        M._subsampled_fvp = lambda f: hessian_vector_product(M.linearized_kl(f), params)
        try:
            return slow.step()["time/iteration_s"]
        finally:
            M._subsampled_fvp = product_fn

    sec = medians_in_turn(
        {"fast": lambda: fast.step()["time/iteration_s"], "slow": slow_step}, iterations, skip=2
    )
    return sec["fast"], sec["slow"]


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
    p.add_argument(
        "--product-only",
        action="store_true",
        help="only time one Fisher-vector product against the double backward of its KL",
    )
    args = p.parse_args()
    configure_cpu()
    speeds = [
        product_speed(MAMLConfig().fisher_subsample, "episodes", args.iterations),
        product_speed(5, "steps", args.iterations),
    ]
    print_table(
        [
            "subsample",
            "unit",
            "s/product",
            "double backward s/product",
            "speedup",
            "rel. diff",
            "s/iteration",
            "double backward s/iteration",
            "speedup",
        ],
        [
            [
                r["fisher_subsample"],
                r["batch_unit"],
                r["gauss_newton_s"],
                r["kl_double_backward_s"],
                r["speedup"],
                r["relative_difference"],
                r["gauss_newton_iteration_s"],
                r["kl_double_backward_iteration_s"],
                r["iteration_speedup"],
            ]
            for r in speeds
        ],
    )
    if args.product_only:
        write_json(args.out, {"product_seconds": speeds})
        return
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
    write_json(
        args.out,
        {"results": results, "ratio_exact_over_default": ratio, "product_seconds": speeds},
    )


if __name__ == "__main__":
    main()
