"""The training loop every learner shares: run directory, progress bar, metrics, checkpoints, resume.

A learner is any object with ``config``, ``family``, ``policy``, ``name``, ``iteration``,
``env_steps``, ``step() -> metrics``, ``state_tensors()``, ``state_meta()`` and ``load_state()``.

Random state is counter-based: iteration ``i`` draws its tasks, environment noise and action noise
from seeds derived from ``(seed, i)``. A checkpoint therefore holds the complete random state as
``(seed, iteration)``, and resuming reproduces the uninterrupted run bit for bit (on CPU).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from fastadapt.config import (
    MAMLConfig,
    ProMPConfig,
    ReptileConfig,
    RL2Config,
    config_from_dict,
    config_to_dict,
)
from fastadapt.errors import CheckpointError, ConfigError, NonFiniteError, RunDirError
from fastadapt.learners.common import unpack_state
from fastadapt.learners.maml import MAML
from fastadapt.learners.promp import ProMP
from fastadapt.learners.reptile import Reptile
from fastadapt.learners.rl2 import RL2
from fastadapt.runs import (
    FINAL,
    MetricsLogger,
    check_compatible,
    latest_valid_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prepare_run_dir,
    prune_checkpoints,
    read_config,
    save_checkpoint,
    write_config,
)
from fastadapt.runtime import configure_cpu, resolve_device
from fastadapt.sequence_policies import SequencePolicy, describe

#: algorithm name -> (config class, learner class, forced config values)
LEARNERS: dict[str, tuple[type, Callable[..., Any], dict[str, Any]]] = {
    "maml": (MAMLConfig, MAML, {"meta_sgd": False}),
    "metasgd": (MAMLConfig, MAML, {"meta_sgd": True}),
    "reptile": (ReptileConfig, Reptile, {}),
    "promp": (ProMPConfig, ProMP, {}),
    "rl2": (RL2Config, RL2, {}),
}


def algorithm_names() -> list[str]:
    """Names accepted by ``fastadapt train``."""
    return sorted(LEARNERS)


def make_learner(algorithm: str, config: Any, family: Any = None) -> Any:
    """Build a learner; refuses unknown algorithms, listing the known ones."""
    if algorithm not in LEARNERS:
        raise ConfigError(f"unknown algorithm {algorithm!r}; known: {', '.join(algorithm_names())}")
    cfg_cls, learner_cls, forced = LEARNERS[algorithm]
    if not isinstance(config, cfg_cls):
        raise ConfigError(f"{algorithm} needs a {cfg_cls.__name__}, got {type(config).__name__}")
    config = dataclasses.replace(config, **forced)
    return learner_cls(config, family)


def run_identity(learner: Any) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into this learner."""
    return {
        "algorithm": learner.name,
        "env": learner.config.env,
        "env_kwargs": learner.config.env_options(),
        "policy": (
            describe(learner.policy)
            if isinstance(learner.policy, SequencePolicy)
            else dataclasses.asdict(learner.policy)
        ),
    }


def checkpoint_meta(learner: Any) -> dict[str, Any]:
    """The JSON sidecar of a checkpoint of ``learner``."""
    return {
        **_normalize(run_identity(learner)),
        **learner.state_meta(),
        "config": config_to_dict(learner.config),
        "rng": {"scheme": "counter", "seed": learner.config.seed, "iteration": learner.iteration},
    }


def _normalize(identity: dict[str, Any]) -> dict[str, Any]:
    """An identity (or a checkpoint's record) in canonical JSON form: tuples as lists, and an MLP's
    ``context_dim`` only when set, so records from before the option, or with it at 0, match."""
    out = json.loads(json.dumps(identity))
    policy = out.get("policy")
    if isinstance(policy, dict) and policy.get("context_dim") == 0:
        del policy["context_dim"]
    return out


def train(
    learner: Any,
    run_dir: Path | str,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    track: bool = False,
) -> Path:
    """Train ``learner`` to ``config.meta_iterations`` in ``run_dir``; returns the final model's
    sidecar path. ``stop_after`` ends early after that many iterations of this call (for tests and
    interruption drills) without writing the final model. ``track`` also logs to Weights & Biases."""
    cfg = learner.config
    configure_cpu(getattr(cfg, "flush_denormal", False))
    if cfg.init_from and Path(cfg.init_from).resolve() == Path(run_dir).resolve():
        raise ConfigError(f"init_from cannot be the run's own directory ({run_dir})")
    run_dir = prepare_run_dir(Path(run_dir), overwrite=overwrite, resume=resume)
    ident = _normalize(run_identity(learner))
    if resume:
        found = latest_valid_checkpoint(run_dir)
        if found is not None:
            tensors, meta = found
            check_compatible(_normalize(meta), ident, f"checkpoint in {run_dir}")
            _check_tensors(learner, tensors)
            learner.load_state(tensors, meta)
    else:
        write_config(run_dir, {"algorithm": learner.name, "config": config_to_dict(cfg)})
    if cfg.init_from and learner.iteration == 0:
        init_from_run(learner, cfg.init_from)
    logger = MetricsLogger(
        run_dir,
        resume_from=learner.iteration if resume else None,
        purge_step=learner.env_steps if resume else None,
        track={"config": config_to_dict(cfg)} if track else None,
    )
    bar = tqdm(
        total=cfg.meta_iterations,
        initial=learner.iteration,
        disable=not progress,
        desc=f"{learner.name} {cfg.env}",
        unit="it",
        dynamic_ncols=True,
    )
    done_here = 0
    try:
        while learner.iteration < cfg.meta_iterations:
            t_step = time.perf_counter()
            try:
                metrics = learner.step()
            except NonFiniteError as e:
                last = _last_checkpoint_name(run_dir)
                raise NonFiniteError(f"{e}; the last good checkpoint is kept: {last}") from None
            learner.wall_s = getattr(learner, "wall_s", 0.0) + time.perf_counter() - t_step
            metrics["time/wall_s"] = learner.wall_s
            logger.log(metrics)
            bar.update(1)
            bar.set_postfix(
                pre=f"{metrics['return/pre_adapt']:.2f}",
                post=f"{metrics['return/post_adapt']:.2f}",
                refresh=False,
            )
            if learner.iteration % cfg.checkpoint_every == 0:
                _save_periodic(learner, run_dir)
            done_here += 1
            if stop_after is not None and done_here >= stop_after:
                return run_dir / "checkpoints"
        if learner.iteration % cfg.checkpoint_every != 0:
            _save_periodic(learner, run_dir)
        return save_checkpoint(run_dir / FINAL, learner.state_tensors(), checkpoint_meta(learner))
    finally:
        bar.close()
        logger.close()


def _save_periodic(learner: Any, run_dir: Path) -> None:
    save_checkpoint(
        run_dir / "checkpoints" / f"iter_{learner.iteration:06d}",
        learner.state_tensors(),
        checkpoint_meta(learner),
    )
    prune_checkpoints(run_dir, learner.config.keep_checkpoints)


def _last_checkpoint_name(run_dir: Path) -> str:
    found = list_checkpoints(run_dir)
    return str(found[-1]) if found else "none written yet"


def _check_tensors(
    learner: Any, tensors: dict[str, Any], prefix: str = "", source: str = "checkpoint"
) -> None:
    """Refuse ``tensors`` lacking one of the learner's state tensors (those starting with
    ``prefix``; optimizer state is optional) or holding it in another shape."""
    for k, v in learner.state_tensors().items():
        if k.startswith("optim.") or not k.startswith(prefix):
            continue
        if k not in tensors:
            raise CheckpointError(f"{source} lacks tensor {k!r}")
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{source} tensor {k!r} has shape {tuple(tensors[k].shape)}, expected {tuple(v.shape)}"
            )


def init_from_run(learner: Any, path: Path | str) -> None:
    """Copy the parameters of another run's model (``path``: its directory or a checkpoint file)
    into ``learner``; they must match by name and shape. The statistics that give them their units
    (the learner's ``param_meta``, e.g. RL²'s critic normalization) come along when the model has
    them; optimizer state and counters stay fresh. A learner may first fit tensors whose size
    depends on the run's settings (``fit_init_tensors``: RL²'s Transformer takes a run's position
    table for trials of another length)."""
    tensors, meta = read_model(path)
    tensors = learner.fit_init_tensors(tensors)
    _check_tensors(learner, tensors, prefix="param.", source=f"init_from {path}")
    unpack_state(learner.trainable(), None, tensors, learner.device)
    for key in getattr(learner, "param_meta", ()):
        if key in meta:
            setattr(learner, key, meta[key])


def _recorded_config(
    algorithm: Any, data: dict[str, Any], where: str, error: type[Exception]
) -> Any:
    """The config a run or checkpoint recorded (``data``) for ``algorithm``, which ``where``
    names; ``error`` if that algorithm is unknown."""
    if algorithm not in LEARNERS:
        raise error(f"{where} names unknown algorithm {algorithm!r}")
    return config_from_dict(LEARNERS[algorithm][0], data)


def learner_from_run(run_dir: Path | str, device: str = "") -> Any:
    """Rebuild the learner a run directory was started with (from its ``config.yaml``), on
    ``device`` if given."""
    data = read_config(Path(run_dir))
    algorithm = data.get("algorithm")
    where = f"{run_dir}/config.yaml"
    cfg = _recorded_config(algorithm, data.get("config", {}), where, RunDirError)
    if device:
        cfg = dataclasses.replace(cfg, device=device)
    return make_learner(algorithm, cfg)


def resume_run(
    run_dir: Path | str,
    progress: bool = True,
    stop_after: int | None = None,
    track: bool = False,
    device: str = "",
) -> Path:
    """Continue a run from its newest loadable checkpoint, on ``device`` if given (by default the
    run's own; on another, the continuation equals the uninterrupted run only up to rounding)."""
    learner = learner_from_run(run_dir, device)
    return train(
        learner, run_dir, resume=True, progress=progress, stop_after=stop_after, track=track
    )


def read_model(path: Path | str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tensors and sidecar of a run directory's final model (else its newest loadable
    checkpoint), or of a checkpoint file."""
    path = Path(path)
    if not path.is_dir():
        return load_checkpoint(path)
    if (path / f"{FINAL}.json").exists():
        return load_checkpoint(path / f"{FINAL}.json")
    found = latest_valid_checkpoint(path)
    if found is None:
        raise RunDirError(f"{path} holds no model and no checkpoint yet")
    return found


def load_learner(path: Path | str, device: str = "") -> Any:
    """A learner restored from a run directory's final model, or from a checkpoint file, on
    ``device`` (empty: the one it trained on, or the CPU, with a warning, where that is a GPU
    this machine lacks)."""
    tensors, meta = read_model(path)
    algorithm = meta.get("algorithm")
    cfg = _recorded_config(algorithm, meta["config"], "checkpoint", CheckpointError)
    if not device:
        try:
            resolve_device(cfg.device)
        except ConfigError as e:
            warnings.warn(
                f"{path} trained on {cfg.device!r} ({e}); it loads on the CPU", stacklevel=2
            )
            device = "cpu"
    if device:
        cfg = dataclasses.replace(cfg, device=device)
    learner = make_learner(algorithm, cfg)
    check_compatible(_normalize(meta), _normalize(run_identity(learner)), str(path))
    _check_tensors(learner, tensors)
    learner.load_state(tensors, meta)
    return learner
