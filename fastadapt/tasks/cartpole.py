"""``CartPoleDynamics-v0``: Gymnasium's CartPole-v1 as a distribution over physics and goals.

Each task draws the pole's half-length, the pole and cart masses, gravity and the force magnitude from
the ranges below; an actuator sign (with probability ``p_reversed`` the push direction is reversed:
action 1 pushes left); and an unobserved goal position for the cart. The reward per step is
``1 - goal_weight * min(|x - goal_x| / 2.4, 1)``: balance, and stay near a goal the policy cannot see.

Why the goal: physics and sign alone do not force adaptation. A memoryless bang-bang controller
trained on many tasks balances both push directions (measured: 500/500 on every reversed-actuator
test task, with no adaptation step), so a task must also ask for something that only the rewards
reveal. With the goal, the best return needs the goal's position, which only adaptation can find.
Derived quantities (total mass, pole mass x length) are computed, never stored.

At the default task (Gymnasium's physics, sign +1, ``goal_weight`` 0) the dynamics, rewards,
termination and the 500-step truncation equal ``CartPole-v1`` step for step (tested).

Default ranges: half-length [0.25, 1.0] m, pole mass [0.05, 0.5] kg, cart mass [0.5, 2.0] kg,
gravity [4.9, 14.7] m/s^2, force [5, 15] N, ``p_reversed`` 0.5, goal [-1.5, 1.5] m with weight 1
(``goal_weight=0`` samples the physics-only distribution).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from fastadapt.errors import ConfigError
from fastadapt.tasks.core import ArrayTaskFamily, check_range

TAU = 0.02
X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360


@dataclass(frozen=True)
class CartPoleTask:
    """CartPole physics. ``length`` is half the pole's length, as in Gymnasium."""

    length: float = 0.5
    masspole: float = 0.1
    masscart: float = 1.0
    gravity: float = 9.8
    force_mag: float = 10.0
    actuator_sign: int = 1
    goal_x: float = 0.0
    goal_weight: float = 0.0


class CartPoleDynamics(ArrayTaskFamily):
    """CartPole with sampled physics and actuator direction."""

    id = "CartPoleDynamics-v0"
    task_type = CartPoleTask

    def __init__(
        self,
        length: tuple[float, float] = (0.25, 1.0),
        masspole: tuple[float, float] = (0.05, 0.5),
        masscart: tuple[float, float] = (0.5, 2.0),
        gravity: tuple[float, float] = (4.9, 14.7),
        force_mag: tuple[float, float] = (5.0, 15.0),
        p_reversed: float = 0.5,
        goal: tuple[float, float] = (-1.5, 1.5),
        goal_weight: float = 1.0,
        horizon: int = 500,
    ) -> None:
        self.ranges = {
            "length": tuple(length),
            "masspole": tuple(masspole),
            "masscart": tuple(masscart),
            "gravity": tuple(gravity),
            "force_mag": tuple(force_mag),
        }
        for name, (lo, hi) in self.ranges.items():
            check_range(name, lo, hi, positive=True)
        if not 0.0 <= p_reversed <= 1.0:
            raise ConfigError(f"p_reversed must be in [0, 1], got {p_reversed}")
        check_range("goal", *goal)
        if not 0.0 <= goal_weight <= 1.0:
            raise ConfigError(f"goal_weight must be in [0, 1], got {goal_weight}")
        self.goal, self.goal_weight = tuple(goal), goal_weight
        if horizon <= 0:
            raise ConfigError(f"horizon must be positive, got {horizon}")
        self.p_reversed, self.horizon = p_reversed, horizon
        high = np.array([X_THRESHOLD * 2, np.inf, THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[CartPoleTask]:
        draws = {k: rng.uniform(lo, hi, size=n) for k, (lo, hi) in self.ranges.items()}
        signs = np.where(rng.uniform(size=n) < self.p_reversed, -1, 1)
        goals = rng.uniform(*self.goal, size=n)
        return [
            CartPoleTask(
                **{k: float(v[i]) for k, v in draws.items()},
                actuator_sign=int(signs[i]),
                goal_x=float(goals[i]),
                goal_weight=self.goal_weight,
            )
            for i in range(n)
        ]

    def default_task(self) -> CartPoleTask:
        return CartPoleTask()

    def validate_task(self, task):
        task = super().validate_task(task)
        if task.actuator_sign not in (-1, 1):
            raise ConfigError(f"actuator_sign must be +1 or -1, got {task.actuator_sign}")
        for name in ("length", "masspole", "masscart", "gravity", "force_mag"):
            if not getattr(task, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(task, name)}")
        if not 0.0 <= task.goal_weight <= 1.0:
            raise ConfigError(f"goal_weight must be in [0, 1], got {task.goal_weight}")
        return task

    def task_arrays(self, tasks: Sequence[CartPoleTask]) -> dict[str, np.ndarray]:
        fields = (
            "length",
            "masspole",
            "masscart",
            "gravity",
            "force_mag",
            "actuator_sign",
            "goal_x",
            "goal_weight",
        )
        return {f: np.array([getattr(t, f) for t in tasks], dtype=np.float64) for f in fields}

    def init_state(self, params, rng):
        return rng.uniform(-0.05, 0.05, size=(len(params["length"]), 4))

    def transition(self, params, state, action, rng):
        x, x_dot, theta, theta_dot = state.T
        masspole, length = params["masspole"], params["length"]
        total_mass = masspole + params["masscart"]
        polemass_length = masspole * length
        push = np.where(action == 1, 1.0, -1.0) * params["actuator_sign"]
        force = push * params["force_mag"]
        costheta, sintheta = np.cos(theta), np.sin(theta)
        temp = (force + polemass_length * np.square(theta_dot) * sintheta) / total_mass
        thetaacc = (params["gravity"] * sintheta - costheta * temp) / (
            length * (4.0 / 3.0 - masspole * np.square(costheta) / total_mass)
        )
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        new = np.stack(
            [
                x + TAU * x_dot,
                x_dot + TAU * xacc,
                theta + TAU * theta_dot,
                theta_dot + TAU * thetaacc,
            ],
            axis=1,
        )
        terminated = (np.abs(new[:, 0]) > X_THRESHOLD) | (np.abs(new[:, 2]) > THETA_THRESHOLD)
        off_goal = np.minimum(np.abs(new[:, 0] - params["goal_x"]) / X_THRESHOLD, 1.0)
        reward = 1.0 - params["goal_weight"] * off_goal
        return new, reward, terminated

    def observe(self, params, state):
        return state.astype(np.float32)
