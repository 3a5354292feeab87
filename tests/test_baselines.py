"""The classical baselines the RL² benchmarks report beside RL²."""

import numpy as np
import pytest

from fastadapt.bandit_baselines import (
    MAX_BAYES_PULLS,
    bandit_baseline,
    bayes_optimal_value,
    mdp_baseline,
    tune_ucb1,
)
from fastadapt.tasks import TabularMDPTask, make_family, sample_tasks


def test_bayes_optimal_value_on_cases_worked_by_hand():
    # one arm: every pull's expected reward is the prior mean, 1/2
    assert bayes_optimal_value(1, 7) == pytest.approx(3.5)
    # two arms, two pulls: pull one (1/2); after a win keep it (posterior mean 2/3), after a loss
    # switch to the untouched arm (1/2): 1/2 + 1/2 * 2/3 + 1/2 * 1/2 = 13/12
    assert bayes_optimal_value(2, 2) == pytest.approx(13 / 12)
    # more arms never hurt, and the value stays below the oracle's E[max p] = k / (k + 1) per pull
    values = [bayes_optimal_value(k, 6) for k in (1, 2, 3, 5)]
    assert values == sorted(values)
    assert values[-1] < 6 * 5 / 6


def test_bayes_optimal_policy_played_on_sampled_bandits_matches_its_value_and_wins():
    k, pulls, n = 3, 6, 20000
    family = make_family("Bandit-v0", k=k)
    tasks = sample_tasks(family, n, seed=0)
    totals = {
        name: bandit_baseline(name, family, tasks, pulls, seed=1)
        for name in ("bayes", "thompson", "ucb1", "random")
    }
    exact = bayes_optimal_value(k, pulls)
    bayes = totals["bayes"]
    assert abs(bayes.mean() - exact) < 4 * bayes.std() / np.sqrt(n)
    for other in ("thompson", "ucb1", "random"):
        assert bayes.mean() > totals[other].mean(), other


def test_bandit_baselines_against_their_expectations():
    family = make_family("Bandit-v0", k=5)
    tasks = sample_tasks(family, 4000, seed=0)
    p = np.array([t.arm_probs for t in tasks])
    random = bandit_baseline("random", family, tasks, 50, seed=1)
    expected = 50 * p.mean(1)
    assert abs((random - expected).mean()) < 4 * (random - expected).std() / np.sqrt(len(tasks))
    thompson = bandit_baseline("thompson", family, tasks, 50, seed=1)
    ucb1 = bandit_baseline("ucb1", family, tasks, 50, seed=1)
    oracle = 50 * p.max(1)
    for learner in (thompson, ucb1):
        assert random.mean() + 5 < learner.mean() < oracle.mean()


def test_tuned_ucb1_picks_the_best_constant_on_training_bandits_and_it_carries_over():
    family = make_family("Bandit-v0", k=5)
    train, test = (sample_tasks(family, 1000, seed=0, split=s) for s in ("train", "test"))
    grid = (0.1, 0.3, np.sqrt(2))
    c = tune_ucb1(family, train, 100, seed=2, grid=grid)
    means = [bandit_baseline("ucb1", family, train, 100, seed=2, ucb_c=g).mean() for g in grid]
    assert c == grid[int(np.argmax(means))]
    # the textbook constant explores far too much for 100 pulls of 5 arms; the tuned one is
    # better on held-out bandits too, by much more than the noise of 1000 tasks
    tuned = bandit_baseline("ucb1", family, test, 100, seed=1, ucb_c=c)
    textbook = bandit_baseline("ucb1", family, test, 100, seed=1)
    assert c < np.sqrt(2)
    assert tuned.mean() > textbook.mean() + 5
    with pytest.raises(ValueError, match="non-empty grid"):
        tune_ucb1(family, train, 10, seed=0, grid=())


def test_bandit_baselines_refuse_bad_names_and_intractable_trials():
    family = make_family("Bandit-v0", k=2)
    tasks = sample_tasks(family, 3, seed=0)
    with pytest.raises(ValueError, match="unknown bandit baseline 'gittins'"):
        bandit_baseline("gittins", family, tasks, 5, seed=0)
    with pytest.raises(ValueError, match=f"1..{MAX_BAYES_PULLS} pulls"):
        bandit_baseline("bayes", family, tasks, MAX_BAYES_PULLS + 1, seed=0)


def test_psrl_and_greedy_planning_beat_random_play_on_tabular_mdps():
    family = make_family("TabularMDP-v0")
    tasks = sample_tasks(family, 300, seed=0)
    psrl = mdp_baseline("psrl", family, tasks, 10, seed=1)
    greedy = mdp_baseline("greedy", family, tasks, 10, seed=1)
    random = mdp_baseline("random", family, tasks, 10, seed=1)
    # random play earns the mean reward N(1, 1) per step on average: about 10 x 10 x 1
    assert abs(random.mean() - 100) < 4 * random.std() / np.sqrt(len(tasks))
    assert psrl.mean() > random.mean() + 15
    assert greedy.mean() > random.mean() + 15
    with pytest.raises(ValueError, match="unknown MDP baseline 'ucrl2'"):
        mdp_baseline("ucrl2", family, tasks, 10, seed=1)


def test_myopic_mdp_baseline_sticks_to_the_first_action_whose_rewards_beat_the_prior_mean():
    """One state, every action loops back to it: the only action with mean +10 is kept as soon
    as it is tried (its posterior mean exceeds the prior's 1), a -10 action is never retried."""
    family = make_family("TabularMDP-v0", num_states=1, num_actions=5, horizon=10)
    tasks = [
        TabularMDPTask(
            reward_means=(tuple(10.0 if a == good else -10.0 for a in range(5)),),
            transitions=(((1.0,),) * 5,),
        )
        for good in range(5)
    ] * 20
    myopic = mdp_baseline("myopic", family, tasks, 10, seed=3)
    # 100 steps: at most 4 bad tries before the good action, then +10 per step (noise sd 1)
    assert (myopic > 10 * 96 - 10 * 4 - 40).all()
    assert (myopic < 1000 + 40).all()
    random = mdp_baseline("random", family, tasks, 10, seed=3)
    assert random.mean() < -500
