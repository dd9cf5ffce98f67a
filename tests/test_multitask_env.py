"""MultiTaskEnv on real environments: dm_control, Gymnasium's Pendulum, and small real
gymnasium.Env classes registered here (they record what they receive, end when told to, or
emit NaN)."""
import gymnasium
import numpy as np
import pytest

from ezm.tasks.multitask_env import MultiTaskEnv
from ezm.tasks.registry import resolve
from ezm.tasks.task import EnvironmentNaNError


class CountingEnv(gymnasium.Env):
    """Observation [step, last action]; reward = step number; terminal at `terminate_at`;
    observation or reward NaN at `nan_at`. Keeps every action it receives."""

    LOW, HIGH = np.array([0.0, -3.0, -1.0], np.float32), np.array([4.0, 1.0, 1.0], np.float32)

    def __init__(self, terminate_at=None, nan_at=None, nan_in="obs"):
        self.action_space = gymnasium.spaces.Box(self.LOW, self.HIGH)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.terminate_at, self.nan_at, self.nan_in = terminate_at, nan_at, nan_in
        self.received = []  # every action given to step(), as received

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, *self.np_random.uniform(-1, 1, 3)], np.float32), {}

    def step(self, action):
        self.received.append(np.array(action))
        self.t += 1
        obs = np.array([self.t, *action], np.float32)
        reward = float(self.t)
        if self.t == self.nan_at:
            obs[0] = np.nan if self.nan_in == "obs" else obs[0]
            reward = np.nan if self.nan_in == "reward" else reward
        return obs, reward, self.t == self.terminate_at, False, {}


for _id, _kwargs in [("Counting-v0", {}), ("Terminating-v0", {"terminate_at": 3}),
                     ("NaNObs-v0", {"nan_at": 2}), ("NaNReward-v0", {"nan_at": 2, "nan_in": "reward"}),
                     ("NaNObsAt5-v0", {"nan_at": 5}), ("NaNRewardAt5-v0", {"nan_at": 5, "nan_in": "reward"})]:
    gymnasium.register(id=f"ezmtest/{_id}", entry_point=CountingEnv, kwargs=_kwargs, max_episode_steps=6)


def _counting(env, row):
    return env.raw_envs[row].env.unwrapped


def test_rows_padding_and_masks():
    env = MultiTaskEnv(resolve("Pendulum-v1,ezmtest/Counting-v0,hopper-hop"), copies=2, seed=0)
    assert (env.num_envs, env.obs_size, env.action_size) == (6, 15, 4)
    np.testing.assert_array_equal(env.task_ids, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(env.task_action_mask, [[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(env.action_mask, env.task_action_mask[[0, 0, 1, 1, 2, 2]])
    obs = env.reset()
    assert obs.shape == (6, 15) and obs.dtype == np.float32
    assert not obs[:2, 3:].any() and not obs[2:4, 4:].any()  # zero padding
    assert np.abs(obs[:2, :3]).sum() > 0 and np.abs(obs[4:, :15]).sum() > 0
    result = env.step(np.zeros((6, 4)))
    assert not result.obs[:2, 3:].any() and not result.obs[2:4, 4:].any()
    env.close()


def test_actions_are_clipped_rescaled_and_cut():
    env = MultiTaskEnv(resolve("Pendulum-v1,ezmtest/Counting-v0,hopper-hop"), copies=1, seed=0)
    env.reset()
    actions = np.full((3, 4), np.nan)  # masked dims hold NaN: they must never reach an env
    actions[0, 0] = 0.5
    actions[1, :3] = [-1.0, 0.5, 7.0]
    actions[2] = 0.0
    env.step(actions)
    assert env.raw_envs[0].env.unwrapped.last_u == pytest.approx(1.0)  # [-1, 1] -> [-2, 2]
    received = _counting(env, 1).received[-1]
    assert received.shape == (3,)
    np.testing.assert_allclose(received, [0.0, 0.0, 1.0])  # bounds [0,4], [-3,1], [-1,1]; 7 clipped to 1
    actions[0, 0] = -3.0
    env.step(actions)
    assert env.raw_envs[0].env.unwrapped.last_u == pytest.approx(-2.0)
    env.close()


def test_termination_truncation_and_row_resets():
    env = MultiTaskEnv(resolve("ezmtest/Terminating-v0,ezmtest/Counting-v0"), copies=1, seed=0)
    env.reset()
    zeros = np.zeros((2, 3))
    flags = [(r.terminated.tolist(), r.truncated.tolist()) for r in (env.step(zeros) for _ in range(3))]
    assert flags == [([False, False], [False, False])] * 2 + [([True, False], [False, False])]
    with pytest.raises(RuntimeError, match=r"rows \[0\]"):
        env.step(zeros)
    obs = env.reset_rows(np.array([0]))
    assert obs[0, 0] == 0 and obs[1, 0] == 3  # row 0 restarted, row 1 untouched
    np.testing.assert_array_equal(env.episode_steps, [0, 3])
    for _ in range(2):
        result = env.step(zeros)
    assert not result.terminated.any() and result.truncated.tolist() == [False, False]
    result = env.step(zeros)
    assert result.terminated.tolist() == [True, False]  # row 0: its third step again
    assert result.truncated.tolist() == [False, True]  # row 1: the time limit of 6 steps
    assert result.obs[1, 0] == 6  # the final observation, not a reset one
    env.close()


def test_action_repeat_sums_rewards_and_stops_at_the_end():
    env = MultiTaskEnv(resolve("ezmtest/Terminating-v0,ezmtest/Counting-v0"), copies=1, seed=0, action_repeat=2)
    env.reset()
    first = env.step(np.zeros((2, 3)))
    np.testing.assert_array_equal(first.reward, [1 + 2, 1 + 2])
    second = env.step(np.zeros((2, 3)))
    np.testing.assert_array_equal(second.reward, [3, 3 + 4])  # row 0 terminates after one of its two steps
    np.testing.assert_array_equal(env.episode_steps, [3, 4])
    assert second.terminated.tolist() == [True, False]
    assert len(_counting(env, 0).received) == 3
    env.close()


def test_dmc_time_limit_with_action_repeat():
    env = MultiTaskEnv(resolve("cartpole-balance"), copies=1, seed=0, action_repeat=3)
    env.reset()
    decisions = 0
    while True:
        result = env.step(np.zeros((1, 1)))
        decisions += 1
        if result.terminated[0] or result.truncated[0]:
            break
    assert decisions == 334 and env.episode_steps[0] == 1000  # 333 * 3 + 1 simulator steps
    assert result.truncated[0] and not result.terminated[0]
    env.close()


def _trajectory(seed):
    env = MultiTaskEnv(resolve("walker-walk,cartpole-swingup"), copies=2, seed=seed)
    rng = np.random.default_rng(0)
    observations = [env.reset()]
    for _ in range(5):
        observations.append(env.step(rng.uniform(-1, 1, (4, 6))).obs)
    observations.append(env.reset_rows(np.array([1, 2])))
    env.close()
    return np.stack(observations)


def test_seeding_is_reproducible_and_copies_differ():
    a = _trajectory(seed=3)
    np.testing.assert_array_equal(a, _trajectory(seed=3))
    assert not np.allclose(a[0, 0], a[0, 1]) and not np.allclose(a[0, 2], a[0, 3])  # copies differ
    assert not np.allclose(a[-1, 1], a[0, 1])  # a row's next reset uses the next seed of its stream
    np.testing.assert_array_equal(a[-1, [0, 3]], a[-2, [0, 3]])  # rows not reset keep their observation
    assert not np.allclose(a, _trajectory(seed=4))


@pytest.mark.parametrize("task", ["ezmtest/NaNObs-v0", "ezmtest/NaNReward-v0"])
def test_nan_is_reported_with_task_copy_and_step(task):
    env = MultiTaskEnv(resolve(f"ezmtest/Counting-v0,{task}"), copies=2, seed=0)
    env.reset()
    env.step(np.zeros((4, 3)))
    with pytest.raises(EnvironmentNaNError, match=f"{task}.*copy 0.*episode step 2"):
        env.step(np.zeros((4, 3)))
    env.close()


@pytest.mark.parametrize("task", ["ezmtest/NaNObsAt5-v0", "ezmtest/NaNRewardAt5-v0"])
def test_nan_inside_an_action_repeat_is_caught_at_its_simulator_step(task):
    """NaN at simulator step 5 of 4-step repeats: the second decision's first step, whose last
    step is finite again, so checking only a repeat's last observation would miss it."""
    env = MultiTaskEnv(resolve(f"ezmtest/Counting-v0,{task}"), copies=2, seed=0, action_repeat=4)
    env.reset()
    env.step(np.zeros((4, 3)))
    with pytest.raises(EnvironmentNaNError, match=f"task '{task}' copy 0 returned NaN or inf at episode step 5$"):
        env.step(np.zeros((4, 3)))
    assert len(_counting(env, 2).received) == 5  # stopped at the NaN, not at the end of the repeat
    env.close()


def test_wrong_action_shape_and_duplicate_tasks_are_refused():
    tasks = resolve("ezmtest/Counting-v0")
    env = MultiTaskEnv(tasks, copies=2, seed=0)
    env.reset()
    with pytest.raises(ValueError, match=r"\[2, 3\]"):
        env.step(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="once"):
        MultiTaskEnv(tasks * 2, copies=1, seed=0)
    env.close()
