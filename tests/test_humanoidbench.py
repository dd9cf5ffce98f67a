"""HumanoidBench through ezm's task layer, on the real package when it is installed.

HumanoidBench is not on PyPI, so CI runs only the missing-package test; the others run
where it is installed (docs/humanoidbench.md), on its pinned or on the current MuJoCo stack.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ezm.tasks import humanoidbench, registry
from ezm.tasks.multitask_env import MultiTaskEnv
from ezm.tasks.task import MissingPackageError, UnknownTaskError

INSTALLED = importlib.util.find_spec("humanoid_bench") is not None
needs_package = pytest.mark.skipif(not INSTALLED, reason="humanoid_bench is not installed "
                                   "(not on PyPI; see docs/humanoidbench.md)")


@pytest.mark.skipif(INSTALLED, reason="humanoid_bench is installed, so nothing is missing")
def test_missing_package_says_how_to_install():
    for spec in ("h1-walk", "hb-medium", "hb-hard"):
        with pytest.raises(MissingPackageError, match=r"pip install --no-deps -e \..*docs/humanoidbench.md"):
            registry.resolve(spec)


def test_unknown_task_is_refused_with_the_supported_names():
    with pytest.raises(UnknownTaskError, match="h1hand-sit_hard"):
        humanoidbench.task("h1-sit_hard")  # the paper runs sit_hard with hands only


def _random_actions(env: MultiTaskEnv, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-1, 1, (env.num_envs, env.action_size))  # [E, A]


@pytest.fixture(scope="module", params=[("hb-medium", 51, 19), ("hb-hard", 177, 61)], ids=["medium", "hard"])
def suite(request):
    name, obs_size, action_size = request.param
    if not INSTALLED:
        pytest.skip("humanoid_bench is not installed (not on PyPI; see docs/humanoidbench.md)")
    env = MultiTaskEnv(registry.resolve(name), copies=1, seed=0)
    yield env, obs_size, action_size
    env.close()


@needs_package
def test_sizes_and_masks_match_the_built_environments(suite):
    env, obs_size, action_size = suite
    assert (env.obs_size, env.action_size) == (obs_size, action_size)
    for task_id, (task, raw) in enumerate(zip(env.tasks, env.raw_envs)):
        assert raw.env.observation_space.shape == (task.obs_size,), task.name
        assert raw.env.action_space.shape == (task.action_size,), task.name
        assert (raw.env.action_space.low == -1).all() and (raw.env.action_space.high == 1).all()
        assert task.episode_length == raw.env.spec.max_episode_steps == 1000
        assert env.task_action_mask[task_id].tolist() == [1.0] * task.action_size + [0.0] * (action_size - task.action_size)


@needs_package
def test_every_task_steps_100_random_actions(suite):
    env, _, _ = suite
    rng = np.random.default_rng(0)
    obs = env.reset()
    for _ in range(100):
        result = env.step(_random_actions(env, rng))
        obs = result.obs
        for row, task_id in enumerate(env.task_ids):
            assert not obs[row, env.tasks[task_id].obs_size:].any(), "padding must stay zero"
        assert not result.truncated.any()  # 100 steps are far from the 1000-step limit
        ended = np.flatnonzero(result.terminated)
        if len(ended):
            env.reset_rows(ended)
    assert np.isfinite(obs).all()


@needs_package
@pytest.mark.parametrize("name", ["h1hand-sit_hard", "h1hand-reach", "h1-walk"])
def test_seeded_resets_are_reproducible_and_leave_the_global_rng_alone(name):
    first, second = humanoidbench.make(name), humanoidbench.make(name)
    try:
        np.random.seed(123)
        expected_draw = np.random.rand()
        np.random.seed(123)
        obs = first.reset(seed=7)
        assert np.random.rand() == expected_draw
        np.random.rand(10)  # move the global RNG: the next reset must not depend on it
        assert np.array_equal(second.reset(seed=7), obs)
        assert np.array_equal(first.reset(seed=7), obs)
        assert not np.array_equal(first.reset(seed=8), obs)
    finally:
        first.close()
        second.close()


@needs_package
def test_two_layers_with_one_seed_see_the_same_episodes():
    tasks = registry.resolve("h1hand-sit_hard,h1hand-reach")
    runs = []
    for _ in range(2):
        env = MultiTaskEnv(tasks, copies=2, seed=11)
        rng = np.random.default_rng(1)
        observations = [env.reset()]
        observations += [env.step(_random_actions(env, rng)).obs for _ in range(5)]
        env.close()
        runs.append(np.stack(observations))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0][0, 0], runs[0][0, 1])  # the copies of a task start differently


@needs_package
def test_a_fall_is_a_termination():
    env = MultiTaskEnv(registry.resolve("h1-walk"), copies=1, seed=0)
    rng = np.random.default_rng(0)
    env.reset()
    for step in range(1, 1001):
        result = env.step(_random_actions(env, rng))
        if result.terminated[0] or result.truncated[0]:
            break
    env.close()
    assert result.terminated[0] and not result.truncated[0]
    assert step < 1000


@needs_package
def test_the_time_limit_is_a_truncation():
    env = humanoidbench.make("h1-crawl")  # crawl never terminates
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    ends = [env.step(rng.uniform(-1, 1, 19))[2:] for _ in range(1000)]
    env.close()
    assert ends[-1] == (False, True)
    assert not any(terminated or truncated for terminated, truncated in ends[:-1])
