"""Task sources and the registry, on the real dm_control and Gymnasium environments."""
import numpy as np
import pytest
from dm_control.rl import control
from dm_control.suite import cartpole

from ezm.config import EnvConfig
from ezm.tasks import dmc, gym, registry
from ezm.tasks.task import MissingPackageError, Task, TaskError, UnknownTaskError


def test_dmc_task_records_have_the_suite_sizes():
    walker = dmc.task("walker-walk")
    assert (walker.source, walker.obs_size, walker.action_size, walker.episode_length) == ("dmc", 24, 6, 1000)
    assert walker.action_low == (-1.0,) * 6 and walker.action_high == (1.0,) * 6
    assert (dmc.task("cartpole-swingup_sparse").obs_size, dmc.task("cartpole-swingup_sparse").action_size) == (5, 1)
    assert (dmc.task("ball_in_cup-catch").obs_size, dmc.task("ball_in_cup-catch").action_size) == (8, 2)
    assert walker.normalized_score(500.0) == 0.5
    with pytest.raises(UnknownTaskError):
        dmc.task("walker-fly")


def test_dmc_observation_is_the_flattened_dict():
    env = dmc.make("walker-walk")
    obs = env.reset(seed=0)
    parts = env.env.task.get_observation(env.env.physics)
    np.testing.assert_array_equal(obs, np.concatenate([np.ravel(v) for v in parts.values()]))
    env.close()


def _rollout(env, seed, steps=20):
    rng = np.random.default_rng(123)
    observations = [env.reset(seed=seed)]
    for _ in range(steps):
        observations.append(env.step(rng.uniform(-1, 1, 6))[0])
    return np.stack(observations)


def test_dmc_reset_seed_makes_episodes_reproducible():
    first, second = dmc.make("walker-walk"), dmc.make("walker-walk")
    a = _rollout(first, seed=7)
    _rollout(first, seed=99)  # the same simulator, reseeded in between
    np.testing.assert_array_equal(a, _rollout(second, seed=7))
    np.testing.assert_array_equal(a, _rollout(first, seed=7))
    assert not np.allclose(a[0], _rollout(first, seed=8)[0])


def test_dmc_time_limit_is_truncation():
    env = dmc.make("cartpole-balance")
    env.reset(seed=0)
    flags = [env.step(np.zeros(1))[2:] for _ in range(1000)]
    assert flags[-1] == (False, True)
    assert all(f == (False, False) for f in flags[:-1])


class _EndsAfterTenSteps(cartpole.Balance):
    """A real cartpole task whose episodes reach a terminal state (discount 0) at step 10."""

    def get_termination(self, physics):
        return 0.0 if physics.time() >= 10 * 0.01 - 1e-9 else None


def test_dmc_terminal_state_is_termination():
    env = dmc.make("cartpole-balance")
    physics = cartpole.Physics.from_xml_string(*cartpole.get_model_and_assets())
    env.env = control.Environment(physics, _EndsAfterTenSteps(swing_up=False, sparse=False), time_limit=10)
    env.reset(seed=0)
    flags = [env.step(np.zeros(1))[2:] for _ in range(10)]
    assert flags[-1] == (True, False)
    assert all(f == (False, False) for f in flags[:-1])


def test_gym_task_record_and_score_bounds():
    pendulum = gym.task("Pendulum-v1")
    assert (pendulum.source, pendulum.obs_size, pendulum.action_size, pendulum.episode_length) == ("gym", 3, 1, 200)
    assert pendulum.action_low == (-2.0,) and pendulum.action_high == (2.0,)
    assert pendulum.score_high == 0.0 and -1600 < pendulum.score_low < -800  # random policy: about -1200
    assert gym.task("MountainCarContinuous-v0").score_high == 90.0  # the registered reward_threshold


def test_gym_refuses_discrete_actions_and_unknown_ids():
    with pytest.raises(TaskError, match="Discrete action space"):
        gym.task("CartPole-v1")
    with pytest.raises(UnknownTaskError):
        gym.task("NoSuchEnv-v0")


def test_suites_resolve_in_order():
    assert [t.name for t in registry.resolve("dmc-walker")] == ["walker-stand", "walker-walk", "walker-run"]
    assert [t.name for t in registry.resolve("dmc-cartpole")][-1] == "cartpole-swingup_sparse"
    mixed = registry.resolve("dmc-mixed")
    assert [(t.name, t.obs_size, t.action_size) for t in mixed] == [
        ("cartpole-swingup", 5, 1), ("walker-walk", 24, 6), ("cheetah-run", 17, 6), ("hopper-hop", 15, 4)]
    assert set(registry.suite_names()) >= {"dmc-cartpole", "dmc-walker", "dmc-mixed", "hb-medium", "hb-hard"}
    assert len(registry.SUITES["hb-medium"]) == 9 and len(registry.SUITES["hb-hard"]) == 14


def test_task_lists_route_to_their_sources():
    tasks = registry.resolve(" walker-walk, Pendulum-v1 ")
    assert [(t.name, t.source) for t in tasks] == [("walker-walk", "dmc"), ("Pendulum-v1", "gym")]
    with pytest.raises(UnknownTaskError, match="twice.*walker-walk"):
        registry.resolve("walker-walk,cheetah-run,walker-walk")
    assert [t.name for t in registry.resolve("dmc-walker,Pendulum-v1")][-2:] == ["walker-run", "Pendulum-v1"]
    with pytest.raises(UnknownTaskError, match="twice.*walker-walk"):
        registry.resolve("dmc-walker,dmc-mixed")


def test_humanoidbench_names_go_to_humanoidbench():
    try:
        record = registry.task("h1-walk")
    except MissingPackageError as err:
        assert "humanoid_bench" in str(err)
    else:
        assert isinstance(record, Task) and record.source == "humanoidbench"


@pytest.mark.parametrize("typo, suggestion", [
    ("walker-wlak", "walker-walk"), ("dmc-walkr", "dmc-walker"), ("Pendulm-v1", "Pendulum-v1"),
    ("cheetah-rn", "cheetah-run")])
def test_unknown_names_suggest_the_closest(typo, suggestion):
    with pytest.raises(UnknownTaskError, match=suggestion) as err:
        registry.resolve(typo)
    assert "\n" not in str(err.value)


def test_describe_shows_padding_and_masks():
    table = registry.describe(registry.resolve("dmc-mixed"), EnvConfig(copies_per_task=2, action_repeat=2))
    lines = table.splitlines()
    assert "8 environments" in lines[0] and "action repeat 2" in lines[0]
    rows = {line.split()[1]: line for line in lines[2:]}
    assert "5 -> 24" in rows["cartpole-swingup"] and "100000" in rows["cartpole-swingup"]
    assert "15 -> 24" in rows["hopper-hop"] and "111100" in rows["hopper-hop"]
    assert "111111" in rows["walker-walk"] and "1000" in rows["walker-walk"]
