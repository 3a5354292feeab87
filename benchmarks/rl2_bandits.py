"""RL² on k-armed Bernoulli bandits, the RL² paper's Table 1 settings, beside UCB1, Thompson
sampling, random play and (for n <= 20) the Bayes-optimal policy computed on the same held-out tasks.

    python benchmarks/rl2_bandits.py --out runs/bench_rl2_bandits.json [--settings 5x10,5x100]

For each (k, n): train RL² (a GRU, or `--policy`) on trials of n pulls, then report the mean total
reward over n pulls on 10000 held-out bandits (at n = 10 the standard error is about 0.02; with 1000
bandits it was 0.07, as large as the gaps being measured). Writes {"results": [{"k", "n", "rl2",
"rl2_greedy", "paper", "ucb1", "thompson", "random", "bayes", "bayes_exact", ...}]}: ``bayes`` is
the Bayes-optimal policy played on the same bandits, ``bayes_exact`` its expected total reward under
the prior (exact dynamic programming; null when n > 20, where that is intractable).

A long setting (n = 100) starts from the model of the same k's n = 10 setting when this run trained
one (`init_from`, a curriculum over trial length; the paper trained every setting from scratch, with
far more samples). `--from-scratch` turns this off. `--iterations-fine N` then trains it N more
iterations at a lower learning rate (run `k{k}_n{n}_fine`; 0 skips it), and `--iterations-commit
N` N more from that with a tenth of the entropy bonus (run `..._commit`; off by default); the row
reports the last model, and each earlier stage's figure as `rl2_before_fine` / `rl2_before_commit`.
The defaults take about 45 minutes per k with one thread; `--reuse` keeps the stages a previous
run finished with the same settings.

Besides the textbook UCB1 (exploration constant sqrt(2)), `ucb1_tuned` plays UCB1 with the constant
(`ucb1_c`) that did best on 2000 training bandits of the same k and n, as the RL² paper tuned its
baselines.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    print_table,
    rl2_parser,
    rl2_run_name,
    sequence_model,
    train_rl2_row,
    ucb1_constant,
    write_json,
)

from fastadapt.bandit_baselines import (  # noqa: E402
    MAX_BAYES_PULLS,
    bandit_baseline,
    bayes_optimal_value,
)
from fastadapt.config import RL2Config  # noqa: E402
from fastadapt.tasks import Bandit, BanditTask  # noqa: E402


def ucb1_tuned(family: Bandit, tasks: list[BanditTask], n: int) -> object:
    """Per-task totals of UCB1 with the constant tuned for this k and n."""
    return bandit_baseline("ucb1", family, tasks, n, seed=1, ucb_c=ucb1_constant(family.k, n))


PAPER = {(5, 10): 6.7, (5, 100): 78.7, (10, 10): 6.7, (10, 100): 83.5}
# Long trials (n > 10): GAE lambda 0.9, as exploring pays off over more pulls, the learning rate
# decayed linearly to 0, and a 10x larger entropy bonus: the n = 10 model starts nearly
# deterministic (entropy 0.05), and with 0.003 it stayed at greedy play (benchmarks/README.md,
# "RL² on bandits").
LONG = {"gae_lambda": 0.9, "lr_schedule": "linear", "entropy_coef": 0.03}
# With --iterations-fine, long trials then train on from that model at a lower rate.
FINE = LONG | {"lr": 3e-4}
# With --iterations-commit, then with a tenth of the entropy bonus: the bonus that kept the policy
# exploring while it learned leaves it sampling actions it would not take by choice.
COMMIT = FINE | {"entropy_coef": 0.003}
TABLE = {  # JSON key: column heading
    "k": "k",
    "n": "n",
    "rl2": "RL² (ours)",
    "rl2_greedy": "RL² greedy",
    "paper": "RL² (paper)",
    "bayes": "Bayes-opt.",
    "bayes_exact": "Bayes-opt. E",
    "ucb1": "UCB1",
    "ucb1_tuned": "UCB1 tuned",
    "thompson": "Thompson",
    "random": "random",
    "train_s": "train s",
    "init_from": "start",
}


def main() -> None:
    p = rl2_parser(__doc__.splitlines()[0], 10000, "runs/bench_rl2_bandits")
    p.add_argument("--iterations", type=int, default=600, help="RL² iterations for n = 10")
    p.add_argument("--iterations-long", type=int, default=700, help="RL² iterations for n = 100")
    p.add_argument(
        "--iterations-fine",
        type=int,
        default=200,
        help="then this many more for n = 100 from that model, learning rate 3e-4 decayed to 0",
    )
    p.add_argument(
        "--iterations-commit",
        type=int,
        default=0,
        help="then this many more for n = 100 with the entropy bonus cut to 0.003 (learning rate "
        "3e-4 decayed to 0; 0 skips it)",
    )
    p.add_argument("--settings", default="5x10,10x10,5x100,10x100")
    args = p.parse_args()
    results = []
    trained: set[Path] = set()  # runs trained anew here: what starts from them is never reused
    done: set[tuple[int, int]] = set()  # the (k, n) settings this run has a model of

    def row_for(k: int, n: int, stage: dict, its: int, run: str, start: tuple | None) -> dict:
        cfg = RL2Config(
            env="Bandit-v0",
            env_kwargs=f'{{"k": {k}}}',
            episodes_per_task=n,
            meta_batch_size=256,
            lr=1e-3,
            entropy_coef=0.003,
            meta_iterations=its,
            checkpoint_every=100,
        )
        baselines = {
            name: partial(bandit_baseline, name, seed=1)
            for name in ("ucb1", "thompson", "random", "bayes")
            if name != "bayes" or n <= MAX_BAYES_PULLS
        } | {"ucb1_tuned": ucb1_tuned}
        return train_rl2_row(
            replace(cfg, **(sequence_model(args) | stage)),
            args.run_root / rl2_run_name(args, run),
            args.eval_tasks,
            PAPER.get((k, n)),
            baselines,
            not args.no_progress,
            start,
            args.evaluate_only,
            args.reuse,
            trained,
        )

    for setting in args.settings.split(","):
        k, n = (int(x) for x in setting.split("x"))
        curriculum = n > 10 and (k, 10) in done and not args.from_scratch
        start = (f"k={k} n=10", args.run_root / rl2_run_name(args, f"k{k}_n10"))
        start = start if curriculum else None
        if n <= 10:
            row = row_for(k, n, {}, args.iterations, f"k{k}_n{n}", start)
        else:
            row = row_for(k, n, LONG, args.iterations_long, f"k{k}_n{n}", start)
        done.add((k, n))
        first, run = row, f"k{k}_n{n}"
        for name, stage, its in (
            ("fine", FINE, args.iterations_fine),
            ("commit", COMMIT, args.iterations_commit),
        ):
            if n <= 10 or its <= 0:
                continue
            start = (f"k={k} n={n} ({run})", args.run_root / rl2_run_name(args, run))
            before, run = row, f"{run}_{name}"
            row = row_for(k, n, stage, its, run, start)
            row |= {
                **{key: before[key] for key in before if key.startswith("rl2_before_")},
                f"rl2_before_{name}": before["rl2"],
                "init_from": first["init_from"],
                "iterations": before["iterations"] + row["iterations"],
                "train_s": before["train_s"] + row["train_s"],
            }
        row = {"k": k, "n": n} | row
        row["ucb1_c"] = ucb1_constant(k, n)
        row.setdefault("bayes", None)
        row["bayes_exact"] = bayes_optimal_value(k, n) if n <= MAX_BAYES_PULLS else None
        results.append(row)
        print(
            f"k={k} n={n}: rl2 {row['rl2']:.2f} (greedy {row['rl2_greedy']:.2f}; paper "
            f"{row['paper']}), thompson {row['thompson']:.2f}, ucb1 {row['ucb1']:.2f} (tuned, "
            f"c={row['ucb1_c']}: {row['ucb1_tuned']:.2f}), random {row['random']:.2f}"
            + (f", Bayes-optimal {row['bayes']:.2f}" if row["bayes"] is not None else ""),
            flush=True,
        )
    print_table(list(TABLE.values()), [[r[c] for c in TABLE] for r in results])
    write_json(args.out, {"results": results})


if __name__ == "__main__":
    main()
