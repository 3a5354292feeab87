"""RL² on k-armed Bernoulli bandits, the RL² paper's Table 1 settings, beside UCB1, Thompson
sampling and random play computed on the same held-out tasks.

    python benchmarks/rl2_bandits.py --out runs/bench_rl2_bandits.json [--iterations 400]

For each (k, n): train RL² (GRU) on trials of n pulls, then report the mean total reward over n
pulls on 1000 held-out bandits. Writes {"results": [{"k", "n", "rl2", "paper", "ucb1", "thompson",
"random", ...}]}.

A long setting (n = 100) starts from the model of the same k's n = 10 setting when this run trained
one (`init_from`, a curriculum over trial length; the paper trained every setting from scratch, with
far more samples). `--from-scratch` turns this off.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, rl2_parser, train_rl2_row, write_json  # noqa: E402

from fastadapt.bandit_baselines import bandit_baseline  # noqa: E402
from fastadapt.config import RL2Config  # noqa: E402

PAPER = {(5, 10): 6.7, (5, 100): 78.7, (10, 10): 6.7, (10, 100): 83.5}


def main() -> None:
    p = rl2_parser(__doc__.splitlines()[0], 1000, "runs/bench_rl2_bandits")
    p.add_argument("--iterations", type=int, default=400, help="RL² iterations for n = 10")
    p.add_argument("--iterations-long", type=int, default=200, help="RL² iterations for n = 100")
    p.add_argument("--settings", default="5x10,10x10,5x100,10x100")
    args = p.parse_args()
    results = []
    trained: dict[tuple[int, int], Path] = {}
    for setting in args.settings.split(","):
        k, n = (int(x) for x in setting.split("x"))
        short = trained.get((k, 10)) if n > 10 and not args.from_scratch else None
        run_dir = args.run_root / f"k{k}_n{n}"
        cfg = RL2Config(
            env="Bandit-v0",
            env_kwargs=f'{{"k": {k}}}',
            episodes_per_task=n,
            meta_batch_size=256,
            lr=1e-3,
            entropy_coef=0.003,
            meta_iterations=args.iterations if n <= 10 else args.iterations_long,
            checkpoint_every=100,
        )
        row = {"k": k, "n": n}
        row |= train_rl2_row(
            cfg,
            run_dir,
            args.eval_tasks,
            PAPER.get((k, n)),
            {
                name: partial(bandit_baseline, name, seed=1)
                for name in ("ucb1", "thompson", "random")
            },
            not args.no_progress,
            (f"k={k} n=10", short) if short else None,
        )
        results.append(row)
        trained[(k, n)] = run_dir
        print(
            f"k={k} n={n}: rl2 {row['rl2']:.2f} (paper {row['paper']}), thompson "
            f"{row['thompson']:.2f}, ucb1 {row['ucb1']:.2f}, random {row['random']:.2f}",
            flush=True,
        )
    print_table(
        ["k", "n", "RL² (ours)", "RL² (paper)", "UCB1", "Thompson", "random", "train s", "start"],
        [
            [
                r["k"],
                r["n"],
                r["rl2"],
                r["paper"],
                r["ucb1"],
                r["thompson"],
                r["random"],
                r["train_s"],
                r["init_from"],
            ]
            for r in results
        ],
    )
    write_json(args.out, {"results": results})


if __name__ == "__main__":
    main()
