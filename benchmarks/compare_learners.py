"""MAML-TRPO, ProMP and Reptile on Navigation2D-v0 at an equal env-step budget, one protocol.

    python benchmarks/compare_learners.py --out runs/bench_compare.json [--env-steps 8000000]
        [--init xavier|small-output]

Each learner trains until it has used the budget (ProMP with its paper's 40 tasks per batch, MAML
with the MAML paper's 20, Reptile with 20 tasks and 3 inner steps), then all are evaluated on the same
40 held-out tasks (40 episodes per step, inner lr 0.1 then 0.05). All start from ``--init`` (default
the family's, ``xavier``). Writes {"init", "results": [{"algorithm", "iterations", "env_steps",
"seconds", "returns": [r0, r1, r2, r3]}]}.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, print_table, write_json  # noqa: E402

from fastadapt.config import EvalConfig, MAMLConfig, ProMPConfig, ReptileConfig  # noqa: E402
from fastadapt.evaluation import evaluate_learner  # noqa: E402
from fastadapt.policies import INITS, init_for_family  # noqa: E402
from fastadapt.runtime import configure_cpu  # noqa: E402
from fastadapt.train import make_learner  # noqa: E402


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--env-steps", type=int, default=8_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--init",
        choices=INITS,
        default=init_for_family(MAMLConfig.env),
        help="initial weights of every learner's policy (default: the family's)",
    )
    args = p.parse_args()

    configure_cpu()
    shared = {"seed": args.seed, "init": args.init}
    learners = {
        "maml-trpo": make_learner("maml", MAMLConfig(**shared)),
        "promp": make_learner("promp", ProMPConfig(**shared)),
        "reptile": make_learner("reptile", ReptileConfig(**shared, num_inner_steps=3)),
    }
    ev = EvalConfig(
        num_tasks=40, num_steps=3, episodes_per_step=40, inner_lr=(0.1, 0.05), baselines=()
    )
    results = []
    for name, learner in learners.items():
        t0 = time.perf_counter()
        while learner.env_steps < args.env_steps:
            learner.step()
        seconds = time.perf_counter() - t0
        r = evaluate_learner(learner, ev, None, progress=False)["returns"][learner.name]
        results.append(
            {
                "algorithm": name,
                "iterations": learner.iteration,
                "env_steps": learner.env_steps,
                "seconds": seconds,
                "returns": r["mean"],
                "ci95": r["ci95"],
            }
        )
        print(
            f"{name}: {learner.iteration} iterations, {learner.env_steps:,} env steps, "
            f"{seconds:.0f} s, returns {[round(x, 2) for x in r['mean']]}",
            flush=True,
        )
    print_table(
        [
            "algorithm",
            "iterations",
            "env steps",
            "seconds",
            "0 steps",
            "1 step",
            "2 steps",
            "3 steps",
        ],
        [
            [r["algorithm"], r["iterations"], r["env_steps"], r["seconds"], *r["returns"]]
            for r in results
        ],
    )
    write_json(args.out, {"init": args.init, "results": results})


if __name__ == "__main__":
    main()
