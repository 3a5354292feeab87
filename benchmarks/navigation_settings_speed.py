"""Seconds per meta-iteration of MAML-TRPO on Navigation2D-v0 in five settings, side by side.

    python benchmarks/navigation_settings_speed.py --out F.json [--iterations 40]

The library's default (episodes, the Fisher on every 20th episode/sample), the reference code's
batch unit (``batch_unit="steps"``), the steps unit with the Fisher on every 5th step
(``fisher_subsample=5``), and with the Fisher's inner Hessians alone on every 5th step
(``hessian_subsample=5``, the KL on every 20th) and on every 10th. One learner per setting,
stepped in turn, so the machine's drift hits all alike; the median over iterations 6 onwards, of
the whole iteration and of its parts (sampling, the outer step, within it conjugate gradient's
Fisher products and the line search). Writes {"seconds_per_meta_iteration": {setting: s},
"ratio_to_default": {setting: r}, "parts_s": {setting: {part: s}}}.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import medians_in_turn, parser, print_table, write_json  # noqa: E402

from fastadapt.config import MAMLConfig  # noqa: E402
from fastadapt.runtime import configure_cpu  # noqa: E402
from fastadapt.train import make_learner  # noqa: E402

SETTINGS = {
    "episodes, Fisher every 20th (default)": {},
    "steps, Fisher every 20th": {"batch_unit": "steps"},
    "steps, Fisher every 5th": {"batch_unit": "steps", "fisher_subsample": 5},
    "steps, inner Hessians every 5th": {"batch_unit": "steps", "hessian_subsample": 5},
    "steps, inner Hessians every 10th": {"batch_unit": "steps", "hessian_subsample": 10},
}
PARTS = ("sampling_s", "outer_s", "cg_s", "line_search_s")


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    configure_cpu()
    learners = {
        name: make_learner("maml", MAMLConfig(seed=args.seed, **kw))
        for name, kw in SETTINGS.items()
    }
    logs: dict[str, list[dict[str, float]]] = {name: [] for name in learners}

    def step(name: str) -> float:
        logs[name].append(learners[name].step())
        return logs[name][-1]["time/iteration_s"]

    sec = medians_in_turn(
        {name: lambda n=name: step(n) for name in learners}, args.iterations, skip=5
    )
    default = sec[next(iter(SETTINGS))]
    ratio = {name: s / default for name, s in sec.items()}
    parts = {
        name: {
            part: statistics.median(m[f"time/{part}"] for m in (log[5:] or log)) for part in PARTS
        }
        for name, log in logs.items()
    }
    print_table(
        ["setting", "s / meta-iteration", "ratio", *PARTS],
        [[n, sec[n], ratio[n], *parts[n].values()] for n in sec],
    )
    write_json(
        args.out,
        {
            "iterations": args.iterations,
            "seconds_per_meta_iteration": sec,
            "ratio_to_default": ratio,
            "parts_s": parts,
        },
    )


if __name__ == "__main__":
    main()
