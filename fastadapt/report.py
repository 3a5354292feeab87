"""Plots and ``report.md``: training curves, adaptation curves with confidence bands, a table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fastadapt.errors import RunDirError  # noqa: E402
from fastadapt.runs import read_config, read_metrics  # noqa: E402


def plot_adaptation(results: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Return vs adaptation step (mean and 95% CI band) for every method of every result.
    ``results`` maps a run label ("" for one run) to its ``eval.json`` content."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    floor = _axis_floor([m["mean"] for r in results.values() for m in r["returns"].values()])
    for label, result in results.items():
        for method, m in result["returns"].items():
            steps = list(range(len(m["mean"])))
            lo = [mu - ci for mu, ci in zip(m["mean"], m["ci95"], strict=True)]
            hi = [mu + ci for mu, ci in zip(m["mean"], m["ci95"], strict=True)]
            name = f"{label}: {method}" if label else method
            if floor is not None and min(m["mean"]) < floor:
                name += f" (off the axis, down to {min(m['mean']):.0f})"
            (line,) = ax.plot(steps, m["mean"], marker="o", label=name)
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
        paper = result.get("paper")
        if paper:
            ax.plot(range(len(paper)), paper, "k--", marker="x", label="paper (MAML)")
    first = next(iter(results.values()))
    ax.set_xlabel(first.get("x_label", "adaptation steps"))
    ax.set_ylabel("average return (held-out tasks)")
    ax.set_title(f"Adaptation on {first.get('env', '')}")
    ax.set_xticks(range(len(next(iter(first["returns"].values()))["mean"])))
    if floor is not None:
        top = max(
            max(m) for r in results.values() for m in (x["mean"] for x in r["returns"].values())
        )
        ax.set_ylim(floor, top + 0.1 * (top - floor))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_training(runs: Mapping[str, Sequence[Mapping[str, float]]], path: Path) -> Path:
    """Pre- and post-adaptation return against env steps for each run's ``metrics.csv`` rows."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, rows in runs.items():
        if not rows:
            continue
        x = [r["env_steps"] for r in rows]
        (line,) = ax.plot(x, [r["return/post_adapt"] for r in rows], label=f"{label} post-adapt")
        ax.plot(
            x,
            [r["return/pre_adapt"] for r in rows],
            "--",
            color=line.get_color(),
            label=f"{label} pre-adapt",
        )
    ax.set_xlabel("env steps")
    ax.set_ylabel("average return (training tasks)")
    ax.set_title("Meta-training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(run_dirs: Sequence[Path | str], out: Path | str | None = None) -> Path:
    """Write ``report.md`` with plots for one or several runs (side by side). Each run needs its
    ``metrics.csv``; adaptation curves and the table come from each run's ``eval.json`` if present.
    The report goes to ``out`` (default: the single run's directory, or ``./report``)."""
    from fastadapt.evaluation import format_table

    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise RunDirError("report needs at least one run directory")
    out_dir = Path(out) if out else (dirs[0] if len(dirs) == 1 else Path("report"))
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = {d: (read_config(d).get("algorithm", "?") + f" ({d.name})") for d in dirs}
    lines = ["# fastadapt report", ""]
    training = {labels[d]: read_metrics(d) for d in dirs}
    train_png = plot_training(training, out_dir / "training.png")
    lines += ["## Meta-training", "", f"![training curves]({train_png.name})", ""]
    for d in dirs:
        rows = training[labels[d]]
        if rows:
            last = rows[-1]
            lines.append(
                f"- {labels[d]}: {int(last['iteration'])} meta-iterations, "
                f"{int(last['env_steps']):,} env steps, final pre/post-adaptation return "
                f"{last['return/pre_adapt']:.2f} / {last['return/post_adapt']:.2f}, "
                f"median {_median([r['time/iteration_s'] for r in rows]):.3f} s/iteration"
            )
    lines.append("")
    evals = {
        labels[d]: json.loads((d / "eval.json").read_text())
        for d in dirs
        if (d / "eval.json").exists()
    }
    if evals:
        png = plot_adaptation(
            evals if len(evals) > 1 else {"": next(iter(evals.values()))},
            out_dir / "adaptation_report.png",
        )
        lines += ["## Adaptation on held-out tasks", "", f"![adaptation curves]({png.name})", ""]
        for label, result in evals.items():
            p = result["protocol"]
            if "episodes_per_trial" in p:
                how = (
                    f"{p['num_tasks']} held-out tasks, trials of {p['episodes_per_trial']} "
                    f"episodes, return of each episode in the trial (adaptation in the hidden "
                    f"state); mean ± 95% CI over tasks."
                )
            else:
                lrs = result.get("inner_lr", {"all": p["inner_lr"]})
                lr_text = "; ".join(
                    f"{name} {', '.join(f'{x:.3g}' for x in v)}" for name, v in lrs.items()
                )
                how = (
                    f"{p['num_tasks']} held-out tasks, {p['episodes_per_step']} episodes per "
                    f"step; inner learning rate per step: {lr_text}; mean ± 95% CI over tasks."
                )
            lines += [
                f"### {label}",
                "",
                how,
                "",
                format_table(result),
                "",
            ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _axis_floor(curves: Sequence[Sequence[float]]) -> float | None:
    """A lower y-limit that keeps the readable curves readable: if some curve falls far below the
    spread of the starting returns (e.g. a baseline whose adaptation diverges), cut the axis there
    and say so in that curve's label. ``None`` when every curve fits."""
    starts = [c[0] for c in curves]
    lo, hi = min(starts), max(max(c) for c in curves)
    floor = lo - 0.5 * max(hi - lo, 1e-9)
    return floor if any(min(c) < floor for c in curves) else None


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if s else float("nan")
