"""Task families: tasks as data, many environments stepped at once."""

from fastadapt.tasks.bandit import Bandit, BanditTask, TabularMDP, TabularMDPTask
from fastadapt.tasks.cartpole import CartPoleDynamics, CartPoleTask
from fastadapt.tasks.core import (
    ArrayBatchEnv,
    ArrayTaskFamily,
    BatchEnv,
    FamilyEnv,
    TaskFamily,
    sample_tasks,
    split_rng,
    task_from_dict,
    task_to_dict,
)
from fastadapt.tasks.gym_adapter import GymBatchEnv, GymTaskFamily
from fastadapt.tasks.navigation import Navigation2D, NavigationTask
from fastadapt.tasks.pendulum import PendulumDynamics, PendulumTask
from fastadapt.tasks.registry import FAMILIES, family_names, make_family, register_envs

register_envs()

__all__ = [
    "FAMILIES",
    "ArrayBatchEnv",
    "ArrayTaskFamily",
    "Bandit",
    "BanditTask",
    "BatchEnv",
    "CartPoleDynamics",
    "CartPoleTask",
    "FamilyEnv",
    "GymBatchEnv",
    "GymTaskFamily",
    "Navigation2D",
    "NavigationTask",
    "PendulumDynamics",
    "PendulumTask",
    "TabularMDP",
    "TabularMDPTask",
    "TaskFamily",
    "family_names",
    "make_family",
    "register_envs",
    "sample_tasks",
    "split_rng",
    "task_from_dict",
    "task_to_dict",
]
