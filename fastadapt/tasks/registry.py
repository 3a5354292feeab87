"""Family ids, ``make_family`` and Gymnasium registration under the ``fastadapt/`` namespace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym

from fastadapt.errors import ConfigError
from fastadapt.tasks.bandit import Bandit, TabularMDP
from fastadapt.tasks.cartpole import CartPoleDynamics
from fastadapt.tasks.core import ArrayTaskFamily, FamilyEnv, TaskFamily
from fastadapt.tasks.navigation import Navigation2D
from fastadapt.tasks.pendulum import PendulumDynamics

FAMILIES: dict[str, Callable[..., ArrayTaskFamily]] = {
    cls.id: cls for cls in (Navigation2D, CartPoleDynamics, PendulumDynamics, Bandit, TabularMDP)
}


def family_names() -> list[str]:
    """Ids of the built-in families."""
    return sorted(FAMILIES)


def make_family(family_id: str, **kwargs: Any) -> TaskFamily:
    """Build a built-in family by id (``"Navigation2D-v0"`` or ``"fastadapt/Navigation2D-v0"``)."""
    name = family_id.removeprefix("fastadapt/")
    if name not in FAMILIES:
        raise ConfigError(f"unknown task family {family_id!r}; known: {', '.join(family_names())}")
    try:
        return FAMILIES[name](**kwargs)
    except TypeError as e:
        raise ConfigError(f"bad options for {name}: {e}") from None


def make_family_env(family_id: str, task: Any = None, **family_kwargs: Any) -> gym.Env:
    """The Gymnasium entry point: one task of a family as a ``gym.Env``."""
    family = make_family(family_id, **family_kwargs)
    assert isinstance(family, ArrayTaskFamily)
    return FamilyEnv(family, task)


def register_envs() -> None:
    """Register every built-in family as ``fastadapt/<Id>`` (idempotent)."""
    for name in FAMILIES:
        env_id = f"fastadapt/{name}"
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="fastadapt.tasks.registry:make_family_env",
                kwargs={"family_id": name},
                disable_env_checker=False,
            )
