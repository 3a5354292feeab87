"""Run directories, checkpoints and metrics.

A run directory holds::

    config.yaml          the resolved config (algorithm, family, every option)
    metrics.csv          one row per meta-iteration
    tb/                  TensorBoard events
    checkpoints/         iter_000050.safetensors + iter_000050.json, ... (the last K)
    model.safetensors    the final meta-parameters + model.json (written when training finishes)
    eval.json, *.png, report.md   written by `fastadapt evaluate` / `report`

A checkpoint is a safetensors file (tensors only) and a JSON sidecar (family id and options, policy
architecture, algorithm, iteration, seed, the tensors' SHA-256). Both are written to a temporary file
and renamed into place, the sidecar last, so a crash never leaves a half-written checkpoint that
looks complete. Loading never unpickles anything.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from fastadapt.errors import CheckpointError, RunDirError

FORMAT = "fastadapt-checkpoint-v1"
FINAL = "model"
BASELINES = "baselines"
"""The run directory's subdirectory of trained baselines (``baselines/pretrain``)."""
DERIVED = ("eval.json", "adaptation.png", "report.md", "training.png", "adaptation_report.png")
"""What evaluation and reports write into a run directory."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(
    path: Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> Path:
    """Write ``path.safetensors`` and its sidecar ``path.json``; returns the sidecar's path."""
    path = Path(path)
    blob = st_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    sidecar = {"format": FORMAT, **meta, "sha256": hashlib.sha256(blob).hexdigest()}
    atomic_write_bytes(path.with_suffix(".safetensors"), blob)
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(sidecar, indent=2).encode())
    return path.with_suffix(".json")


def load_checkpoint(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint (either file of the pair, or their common stem). Refuses a missing,
    truncated, corrupt or foreign file with :class:`CheckpointError`."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    meta_path, data_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not meta_path.exists() or not data_path.exists():
        raise CheckpointError(f"checkpoint {stem} needs both {meta_path.name} and {data_path.name}")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not a fastadapt checkpoint (format {FORMAT!r})")
    blob = data_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"{data_path} is corrupt or truncated (checksum mismatch)")
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"{data_path} is not a valid safetensors file: {e}") from None
    return tensors, meta


def check_compatible(meta: Mapping[str, Any], expected: Mapping[str, Any], source: str) -> None:
    """Refuse a checkpoint whose family, family options, policy or algorithm differ, naming both."""
    for key in ("algorithm", "env", "env_kwargs", "policy"):
        if key in expected and meta.get(key) != expected[key]:
            raise CheckpointError(
                f"{source} was written for {key} {meta.get(key)!r}, but this run has "
                f"{expected[key]!r}"
            )


_ITER = re.compile(r"iter_(\d+)\.json$")


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Periodic checkpoints' sidecars, oldest first."""
    ckpt = Path(run_dir) / "checkpoints"
    if not ckpt.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt.iterdir() if (m := _ITER.search(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` periodic checkpoints."""
    for side in list_checkpoints(run_dir)[:-keep]:
        side.with_suffix(".safetensors").unlink(missing_ok=True)
        side.unlink(missing_ok=True)


def latest_valid_checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The newest periodic checkpoint that loads; corrupt newer ones are skipped."""
    errors = []
    for side in reversed(list_checkpoints(run_dir)):
        try:
            return load_checkpoint(side)
        except CheckpointError as e:
            errors.append(str(e))
    if errors:
        raise CheckpointError("no loadable checkpoint: " + "; ".join(errors))
    return None


def run_dir_of(model_file: Path) -> Path | None:
    """The run directory that holds ``model_file`` (its final model, or a checkpoint in its
    ``checkpoints/``), or None for a file kept outside a run."""
    folder = Path(model_file).parent
    candidates = [folder, folder.parent] if folder.name == "checkpoints" else [folder]
    return next((d for d in candidates if (d / "config.yaml").exists()), None)


def is_finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run (its final model)."""
    return (Path(run_dir) / f"{FINAL}.json").exists()


def prepare_run_dir(run_dir: Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Create ``run_dir`` for a new run. A directory with a finished run, or with checkpoints of an
    unfinished one, is refused unless ``overwrite`` (start over: what the old run wrote goes, its
    evaluation and trained baselines included) or ``resume`` is given."""
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise RunDirError(f"cannot resume: {run_dir} holds no run (no config.yaml)")
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            what = "a finished run" if is_finished(run_dir) else "an unfinished run"
            raise RunDirError(
                f"{run_dir} already holds {what}; pass --overwrite to replace it"
                + ("" if is_finished(run_dir) else " or --resume to continue it")
            )
        run_files = ("metrics.csv", "config.yaml", f"{FINAL}.json", f"{FINAL}.safetensors")
        for name in (*run_files, *DERIVED):
            (run_dir / name).unlink(missing_ok=True)
        if (run_dir / BASELINES).is_dir():
            shutil.rmtree(run_dir / BASELINES)
        for side in list_checkpoints(run_dir):
            side.with_suffix(".safetensors").unlink(missing_ok=True)
            side.unlink(missing_ok=True)
        tb = run_dir / "tb"
        if tb.is_dir():
            for f in tb.iterdir():
                f.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_config(run_dir: Path, config: Mapping[str, Any]) -> None:
    """Write the resolved config as YAML."""
    atomic_write_bytes(
        Path(run_dir) / "config.yaml", yaml.safe_dump(dict(config), sort_keys=False).encode()
    )


def read_config(run_dir: Path) -> dict[str, Any]:
    """Read ``config.yaml`` (safe loader)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise RunDirError(f"{run_dir} holds no run (no config.yaml)")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise RunDirError(f"{path} is not a mapping")
    return data


class MetricsLogger:
    """Appends one row per iteration to ``metrics.csv`` and writes TensorBoard scalars.

    On resume, rows past the resumed iteration (from work lost in a crash) are dropped first.
    """

    def __init__(
        self,
        run_dir: Path,
        resume_from: int | None = None,
        purge_step: int | None = None,
        tensorboard: bool = True,
        track: dict[str, Any] | None = None,
    ):
        self.path = Path(run_dir) / "metrics.csv"
        self.fields: list[str] | None = None
        if resume_from is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
            keep = [r for r in rows if float(r["iteration"]) <= resume_from]
            self.fields = list(rows[0].keys()) if rows else None
            with open(self.path, "w", newline="") as f:
                if self.fields:
                    w = csv.DictWriter(f, fieldnames=self.fields)
                    w.writeheader()
                    w.writerows(keep)
        elif self.path.exists():
            self.path.unlink()
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=purge_step)
        self.wandb = None
        if track is not None:  # Weights & Biases, only when asked for
            try:
                import wandb
            except ImportError:
                raise RunDirError("--track needs Weights & Biases: pip install wandb") from None
            self.wandb = wandb.init(
                project=track.get("project", "fastadapt"),
                name=Path(run_dir).name,
                config=track.get("config"),
                dir=str(run_dir),
                resume="allow",
            )

    def log(self, metrics: Mapping[str, float]) -> None:
        if self.fields is None:
            self.fields = list(metrics)
            with open(self.path, "w", newline="") as f:
                csv.DictWriter(f, fieldnames=self.fields).writeheader()
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(
                {k: metrics.get(k, "") for k in self.fields}
            )
        step = int(metrics.get("env_steps", metrics.get("iteration", 0)))
        if self.tb is not None:
            for k, v in metrics.items():
                if k not in ("iteration", "env_steps"):
                    self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(dict(metrics), step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """``metrics.csv`` as a list of rows of floats."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]
