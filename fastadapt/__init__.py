"""fastadapt: meta-reinforcement learning with fast adaptation."""

from fastadapt import tasks
from fastadapt.policies import MLPPolicy
from fastadapt.sampling import Episodes, collect_episodes
from fastadapt.tasks import make_family, sample_tasks

__version__ = "0.1.0"

__all__ = ["Episodes", "MLPPolicy", "collect_episodes", "make_family", "sample_tasks", "tasks"]
