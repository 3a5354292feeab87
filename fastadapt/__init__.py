"""fastadapt: meta-reinforcement learning with fast adaptation.

The public API: task families (``make_family``, ``sample_tasks``, ``tasks.GymTaskFamily``), the
sampler (``collect_episodes``), learners and their configs (``MAML``, ``Reptile``, ``ProMP``,
``RL2``), training (``train``, ``make_learner``), evaluation (``evaluate_learner``) and the product
API (``Agent.load(run).adapt(env).act(obs)``).
"""

from fastadapt import tasks
from fastadapt.agent import Agent, TrialAgent
from fastadapt.config import EvalConfig, MAMLConfig, ProMPConfig, ReptileConfig, RL2Config
from fastadapt.evaluation import evaluate_learner
from fastadapt.learners.maml import MAML
from fastadapt.learners.promp import ProMP
from fastadapt.learners.reptile import Reptile
from fastadapt.learners.rl2 import RL2
from fastadapt.policies import MLPPolicy
from fastadapt.sampling import Episodes, collect_episodes
from fastadapt.tasks import make_family, sample_tasks
from fastadapt.train import load_learner, make_learner, resume_run, train

__version__ = "0.1.0"

__all__ = [
    "MAML",
    "RL2",
    "Agent",
    "TrialAgent",
    "Episodes",
    "EvalConfig",
    "MAMLConfig",
    "MLPPolicy",
    "ProMP",
    "ProMPConfig",
    "RL2Config",
    "Reptile",
    "ReptileConfig",
    "collect_episodes",
    "evaluate_learner",
    "load_learner",
    "make_family",
    "make_learner",
    "resume_run",
    "sample_tasks",
    "tasks",
    "train",
]
