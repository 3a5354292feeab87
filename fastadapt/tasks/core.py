"""Tasks, task families and the batched step contract.

A *task* is data: a frozen dataclass of parameters that serializes to JSON. A *task family* knows its
spaces, its horizon, how to sample tasks, and how to step many environments at once, each with its own
task, as array operations (:class:`ArrayTaskFamily`). Episodes run in lockstep: ``reset`` starts all
of them at ``t = 0`` and nothing is reset automatically.

Environment indices in a batch are task-major: environment ``i`` runs task ``i // episodes_per_task``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import gymnasium as gym
import numpy as np

from fastadapt.errors import ConfigError, SpaceError, TaskError

TaskT = TypeVar("TaskT")

#: The two task splits. ``"test"`` tasks are drawn from a stream that training never touches.
SPLITS = ("train", "test")


def task_to_dict(task: Any) -> dict[str, Any]:
    """A task record as a JSON-ready dict (tuples become lists)."""
    if not dataclasses.is_dataclass(task) or isinstance(task, type):
        raise TaskError(f"expected a task dataclass instance, got {type(task).__name__}")

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, (np.floating, np.integer)):
            return v.item()
        return v

    return {f.name: plain(getattr(task, f.name)) for f in dataclasses.fields(task)}


def task_from_dict(task_type: type[TaskT], data: dict[str, Any]) -> TaskT:
    """Build a task record from a dict, refusing missing or extra fields by name."""
    if not isinstance(data, dict):
        raise TaskError(f"a {task_type.__name__} must be a JSON object, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(task_type)]  # type: ignore[arg-type]
    missing = [n for n in names if n not in data]
    extra = [k for k in data if k not in names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing field(s) {missing}")
        if extra:
            parts.append(f"unknown field(s) {extra}")
        raise TaskError(f"bad {task_type.__name__}: {'; '.join(parts)} (expected fields {names})")

    def frozen(v: Any) -> Any:
        return tuple(frozen(x) for x in v) if isinstance(v, list) else v

    return task_type(**{n: frozen(data[n]) for n in names})  # type: ignore[call-arg]


def split_rng(seed: int, split: str, index: int | None = None) -> np.random.Generator:
    """The task-sampling RNG of one split. Train and test use disjoint streams of one seed;
    ``index`` (e.g. the meta-iteration) selects an independent sub-stream of the split."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {SPLITS}")
    key = (SPLITS.index(split),) if index is None else (SPLITS.index(split), index)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def derive_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed determined by ``seed`` and ``keys`` (e.g. iteration, purpose). Counter-based
    seeding makes the random state of iteration ``i`` a function of ``(seed, i)``: resuming needs
    no saved generator state to reproduce the uninterrupted run."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def check_range(name: str, low: float, high: float, positive: bool = False) -> None:
    """Refuse an empty, non-finite or (when ``positive``) non-positive parameter range."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"range for {name} must be finite, got [{low}, {high}]")
    if low > high:
        raise ConfigError(f"range for {name} is empty: low {low} > high {high}")
    if positive and low <= 0:
        raise ConfigError(f"range for {name} must be positive, got [{low}, {high}]")


@runtime_checkable
class BatchEnv(Protocol):
    """Many environments stepped together, one task each, in lockstep.

    ``reset()`` returns observations ``[num_envs, *obs_shape]``; ``step(actions)`` returns
    ``(obs, reward, terminated, truncated)``, each with leading dim ``num_envs``. After an environment
    terminates or truncates, the caller masks its later steps out; nothing resets automatically.
    """

    num_envs: int

    def reset(self) -> np.ndarray: ...

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


@runtime_checkable
class TaskFamily(Protocol):
    """A distribution over related MDPs. See :class:`ArrayTaskFamily` for the built-in kind."""

    id: str
    task_type: type
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Space
    horizon: int

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]: ...

    def default_task(self) -> Any: ...

    def make_batch(
        self, tasks: Sequence[Any], episodes_per_task: int, seed: int | None = None
    ) -> BatchEnv: ...


def sample_tasks(
    family: TaskFamily, n: int, seed: int, split: str = "train", index: int | None = None
) -> list[Any]:
    """``n`` tasks of ``family`` from the seeded stream of ``split`` (``"train"`` or ``"test"``)."""
    if n <= 0:
        raise ConfigError(f"number of tasks must be positive, got {n}")
    return family.sample_tasks(n, split_rng(seed, split, index))


class ArrayTaskFamily:
    """Base for families whose dynamics are pure array functions of (task params, state, action).

    A subclass sets the class attributes and implements :meth:`task_arrays`, :meth:`init_state`,
    :meth:`transition` and :meth:`observe`. Those same functions drive the batched environment
    (:class:`ArrayBatchEnv`) and the single-task Gymnasium view (:class:`FamilyEnv`), so the two can
    never disagree.
    """

    id: ClassVar[str]
    task_type: ClassVar[type]
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Space
    horizon: int

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        """Draw ``n`` tasks with ``rng`` (the task RNG, separate from environment noise)."""
        raise NotImplementedError

    def default_task(self) -> Any:
        """The family's default task."""
        raise NotImplementedError

    def task_arrays(self, tasks: Sequence[Any]) -> dict[str, np.ndarray]:
        """Stack the tasks' parameters (and any derived quantity) into arrays with leading dim n."""
        raise NotImplementedError

    def init_state(self, params: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """Initial states ``[n, ...]`` for environments with parameters ``params``."""
        raise NotImplementedError

    def transition(
        self,
        params: dict[str, np.ndarray],
        state: np.ndarray,
        action: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One step for all environments: ``(next_state, reward[n], terminated[n])``."""
        raise NotImplementedError

    def observe(self, params: dict[str, np.ndarray], state: np.ndarray) -> np.ndarray:
        """Observations ``[n, *obs_shape]`` (float32) of states."""
        raise NotImplementedError

    # ---- shared machinery -------------------------------------------------------------------

    def validate_task(self, task: Any) -> Any:
        """Accept a task record or a dict of its fields; refuse anything else by name."""
        if isinstance(task, dict):
            return task_from_dict(self.task_type, task)
        if not isinstance(task, self.task_type):
            raise TaskError(
                f"{self.id} expects a {self.task_type.__name__} task, got {type(task).__name__}"
            )
        return task

    def make_batch(
        self, tasks: Sequence[Any], episodes_per_task: int, seed: int | None = None
    ) -> ArrayBatchEnv:
        """A batched environment: ``episodes_per_task`` environments for each task."""
        return ArrayBatchEnv(self, tasks, episodes_per_task, seed)

    def check_actions(self, actions: np.ndarray, n: int) -> np.ndarray:
        """Refuse actions of the wrong shape or outside the action space, naming the problem."""
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            actions = np.asarray(actions)
            if actions.shape != (n,):
                raise SpaceError(
                    f"{self.id}: expected actions of shape ({n},), got {actions.shape}"
                )
            if not np.issubdtype(actions.dtype, np.integer):
                raise SpaceError(
                    f"{self.id}: discrete actions must be integers, got {actions.dtype}"
                )
            if actions.size and (
                actions.min() < space.start or actions.max() >= space.start + space.n
            ):
                bad = actions[(actions < space.start) | (actions >= space.start + space.n)][0]
                raise SpaceError(f"{self.id}: action {bad} outside {space}")
            return actions
        assert isinstance(space, gym.spaces.Box)
        actions = np.asarray(actions, dtype=space.dtype)
        if actions.shape != (n, *space.shape):
            raise SpaceError(
                f"{self.id}: expected actions of shape {(n, *space.shape)}, got {actions.shape}"
            )
        if not (np.all(actions >= space.low) and np.all(actions <= space.high)):
            raise SpaceError(
                f"{self.id}: actions outside the action space [{space.low}, {space.high}]"
                " (clip them first; the sampler does)"
            )
        return actions


class ArrayBatchEnv:
    """The batched environment of an :class:`ArrayTaskFamily`: no Python loop over environments."""

    def __init__(
        self,
        family: ArrayTaskFamily,
        tasks: Sequence[Any],
        episodes_per_task: int,
        seed: int | None = None,
        check_actions: bool = True,
    ) -> None:
        if episodes_per_task <= 0:
            raise ConfigError(f"episodes_per_task must be positive, got {episodes_per_task}")
        if len(tasks) == 0:
            raise ConfigError("a batch needs at least one task")
        self.family = family
        self.tasks = [family.validate_task(t) for t in tasks]
        self.episodes_per_task = episodes_per_task
        self.num_envs = len(tasks) * episodes_per_task
        per_task = family.task_arrays(self.tasks)
        self.params = {k: np.repeat(v, episodes_per_task, axis=0) for k, v in per_task.items()}
        self.rng = np.random.default_rng(seed)
        self.check = check_actions
        self.state: np.ndarray | None = None
        self.t = 0

    def reset(self) -> np.ndarray:
        self.state = self.family.init_state(self.params, self.rng)
        self.t = 0
        return self.family.observe(self.params, self.state)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        if self.check:
            actions = self.family.check_actions(actions, self.num_envs)
        self.state, reward, terminated = self.family.transition(
            self.params, self.state, actions, self.rng
        )
        self.t += 1
        truncated = ~terminated & (self.t >= self.family.horizon)
        obs = self.family.observe(self.params, self.state)
        return obs, reward, terminated, truncated


class FamilyEnv(gym.Env):
    """A single task of an :class:`ArrayTaskFamily` as a standard ``gymnasium.Env``.

    Truncates at the family's horizon. ``task=None`` means the family's default task; ``set_task``
    switches task between episodes.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, family: ArrayTaskFamily, task: Any = None) -> None:
        self.family = family
        self.observation_space = family.observation_space
        self.action_space = family.action_space
        self.set_task(family.default_task() if task is None else task)
        self._state: np.ndarray | None = None
        self._t = 0

    def set_task(self, task: Any) -> None:
        """Use ``task`` (a record or a dict of its fields) from the next reset on."""
        self.task = self.family.validate_task(task)
        self._params = self.family.task_arrays([self.task])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._state = self.family.init_state(self._params, self.np_random)
        self._t = 0
        return self.family.observe(self._params, self._state)[0], {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if isinstance(self.action_space, gym.spaces.Discrete):
            batch = np.asarray([action])
            if batch.dtype == object or batch.shape != (1,):
                raise SpaceError(f"{self.family.id}: expected a scalar action, got {action!r}")
        else:
            batch = np.asarray(action, dtype=self.action_space.dtype)[None]
        batch = self.family.check_actions(batch, 1)
        self._state, reward, terminated = self.family.transition(
            self._params, self._state, batch, self.np_random
        )
        self._t += 1
        obs = self.family.observe(self._params, self._state)[0]
        done = bool(terminated[0])
        return obs, float(reward[0]), done, not done and self._t >= self.family.horizon, {}
