import copy
import io

import pytest
import torch

from ezm.config import ReplayConfig
from ezm.replay import Replay

O, A, K = 2, 3, 4


class Recorder:
    """Writes rows whose obs[0] is a unique id and remembers every lane's history."""

    def __init__(self, replay: Replay):
        self.replay = replay
        self.rows = replay.obs.shape[0]
        self.history = [[] for _ in range(self.rows)]  # per lane: (id, episode, last)
        self.episode = list(range(self.rows))
        self.next_episode = self.rows
        self.next_id = 1
        self.step = 0

    def _ids(self, n):
        ids = torch.arange(self.next_id, self.next_id + n, dtype=torch.float32)
        self.next_id += n
        return ids

    def add(self):
        E = self.rows
        ids = self._ids(E)
        obs = torch.stack([ids, torch.arange(E, dtype=torch.float32)], 1)  # [E, O]
        self.replay.add(obs, torch.ones(E, A), torch.ones(E), torch.zeros(E, dtype=torch.bool),
                        torch.zeros(E), torch.full((E, K), 1 / K), torch.zeros(E, K, A),
                        env_step=self.step)
        for e in range(E):
            self.history[e].append((int(ids[e]), self.episode[e], False))
        self.step += 1

    def end(self, rows):
        ids = self._ids(len(rows))
        obs = torch.stack([ids, torch.tensor(rows, dtype=torch.float32)], 1)  # [R, O]
        self.replay.add_final(torch.tensor(rows), obs, env_step=self.step)
        for e, i in zip(rows, ids.tolist()):
            self.history[e].append((int(i), self.episode[e], True))
            self.episode[e] = self.next_episode
            self.next_episode += 1

    def locate(self, row_id):
        for e, lane in enumerate(self.history):
            for h, (i, _, _) in enumerate(lane):
                if i == row_id:
                    return e, h
        raise KeyError(row_id)


def make(tasks=1, copies=1, capacity=64, alpha=1.0, beta=1.0, independent=True):
    cfg = ReplayConfig(capacity_per_task=capacity, priority_alpha=alpha, priority_beta=beta,
                       independent=independent)
    return Replay(cfg, num_tasks=tasks, copies=copies, obs_size=O, action_size=A,
                  num_candidates=K)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_sequences_stay_in_their_episode_across_the_ring_wrap():
    replay = make(tasks=1, copies=2, capacity=10)  # L = 5 rows a lane
    rec = Recorder(replay)
    for step in range(12):
        rec.add()
        if step in (3, 8):
            rec.end([0])  # lane 0: episodes of 4 and 5 states; lane 1: one long episode
    batch = replay.sample(512, unroll=2, td_steps=1, generator=gen())
    assert batch.obs.shape == (512, 4, O) and batch.candidates.dtype == torch.float32
    wrapped = newest_lane1 = 0
    for b in range(512):
        e, h = rec.locate(int(batch.obs[b, 0, 0]))
        lane = rec.history[e]
        assert not lane[h][2], "a last row was a sequence start"
        for j in range(4):
            expect = h + j < len(lane) and lane[h + j][1] == lane[h][1]
            assert bool(batch.valid[b, j]) == expect
            if expect:
                assert int(batch.obs[b, j, 0]) == lane[h + j][0]
                assert bool(batch.last[b, j]) == lane[h + j][2]
            else:
                assert batch.reward[b, j] == 0 and not batch.last[b, j]
        position = int(batch.index[b]) % replay.lane + torch.arange(4)  # [S] before the wrap
        wrapped += bool((batch.valid[b] & (position >= replay.lane)).any())
        newest_lane1 += e == 1 and h == len(lane) - 1
    assert wrapped > 0 and newest_lane1 > 0  # both edge cases were drawn
    assert int(batch.index.max()) < replay.obs.shape[0] * replay.lane


def test_the_newest_row_of_a_full_single_episode_lane_does_not_see_the_oldest():
    replay = make(capacity=4)
    rec = Recorder(replay)
    for _ in range(6):
        rec.add()
    replay.update_priorities(torch.arange(4), torch.tensor([0.0, 1.0, 0.0, 0.0]))  # head is 2
    batch = replay.sample(8, unroll=1, td_steps=1, generator=gen())
    assert (batch.obs[:, 0, 0] == 6).all()  # the newest row, whose lane successor is the oldest
    assert batch.valid[:, 0].all() and not batch.valid[:, 1:].any()


def test_open_new_episodes_cuts_sequences_without_a_last_row():
    replay = make(capacity=10)
    rec = Recorder(replay)
    for _ in range(3):
        rec.add()
    replay.open_new_episodes(torch.tensor([0]))  # e.g. a resume restarted the environment
    for _ in range(3):
        rec.add()
    batch = replay.sample(200, unroll=2, td_steps=2, generator=gen())
    first = batch.obs[:, 0, 0]  # ids 1..3 belong to the old episode, 4..6 to the new one
    reach = torch.where(first <= 3, 4 - first, 7 - first)  # rows left in the start's episode
    assert torch.equal(batch.valid.sum(1).float(), reach)
    assert not replay.last.any()


def test_last_rows_are_never_starts_and_have_zero_priority():
    replay = make(copies=2, capacity=40)
    rec = Recorder(replay)
    for _ in range(10):
        rec.add()
        rec.end([0])
    assert int(replay.last.sum()) == 10 and (replay.priority[replay.last] == 0).all()
    batch = replay.sample(1000, unroll=1, td_steps=1, generator=gen())
    assert not batch.last[:, 0].any()
    assert (batch.index // replay.lane == 0).any()
    assert batch.last[:, 1][batch.index // replay.lane == 0].all()  # every lane-0 state ends
    replay.update_priorities(torch.nonzero(replay.last.flatten()).flatten(), torch.ones(10))
    assert (replay.priority[replay.last] == 0).all()


def test_independent_mode_takes_floor_or_ceil_of_b_over_t_from_every_task():
    replay = make(tasks=3, copies=2, capacity=200)
    rec = Recorder(replay)
    for step in range(30):
        rec.add()
        if step % 2:
            rec.end([0, 1])  # task 0 stores more rows, half of them `last`
    task2 = torch.cat([4 * replay.lane + torch.arange(30), 5 * replay.lane + torch.arange(30)])
    replay.update_priorities(task2, torch.full((len(task2),), 50.0))
    assert replay.size_per_task().tolist() == [90, 60, 60] and len(replay) == 210
    batch = replay.sample(30, unroll=1, td_steps=1, generator=gen())
    assert torch.bincount(batch.task, minlength=3).tolist() == [10, 10, 10]
    assert (batch.index // replay.lane // 2 == batch.task).all()
    assert (batch.task[1:] >= batch.task[:-1]).all()  # task-major
    extra = torch.zeros(3)
    for seed in range(60):  # 31 = 3 * 10 + 1: one task a batch gets 11, each about as often
        counts = torch.bincount(replay.sample(31, 1, 1, gen(seed)).task, minlength=3)
        assert counts.sum() == 31 and set(counts.tolist()) == {10, 11}
        extra += counts == 11
    assert extra.min() >= 10

    shared = make(tasks=3, copies=2, capacity=200, independent=False)
    shared.load_state_dict(replay.state_dict())
    counts = torch.bincount(shared.sample(50, 1, 1, gen()).task, minlength=3)
    assert counts[2] >= 45  # pooled priorities: task 2 (60 rows, 96% of the mass) dominates


def test_any_batch_size_of_at_least_one_row_a_task_works():
    replay = make(tasks=3, capacity=20)
    rec = Recorder(replay)
    for _ in range(10):
        rec.add()
    for size in (3, 4, 5, 10, 29):
        assert replay.sample(size, 1, 1, gen()).task.shape == (size,)
    with pytest.raises(ValueError, match="batch_size 2 is smaller than the 3 tasks"):
        replay.sample(2, 1, 1, gen())
    shared = make(tasks=3, independent=False)
    Recorder(shared).add()
    assert shared.sample(2, 1, 1, gen()).task.shape == (2,)


def test_a_batch_draws_distinct_rows_when_the_task_holds_enough():
    replay = make(tasks=2, copies=2, capacity=40)
    rec = Recorder(replay)
    for _ in range(20):
        rec.add()
    replay.update_priorities(torch.tensor([0]), torch.tensor([1000.0]))  # one row holds most of the mass
    for seed in range(5):
        index = replay.sample(38, 1, 1, gen(seed)).index  # 19 of each task's 40 rows
        assert index.unique().numel() == 38
    tiny = make(tasks=1, capacity=3)
    Recorder(tiny).add()
    assert (tiny.sample(4, 1, 1, gen()).index == 0).all()  # fewer rows than the share: rows repeat


def test_a_task_with_nothing_to_sample_is_named():
    replay = make(tasks=2, copies=1)
    rec = Recorder(replay)
    rec.end([1])
    with pytest.raises(ValueError, match=r"task\(s\) \[0, 1\]"):
        replay.sample(4, 1, 1, gen())


def test_priorities_steer_sampling():
    replay = make(capacity=10)
    rec = Recorder(replay)
    for _ in range(10):
        rec.add()
    replay.update_priorities(torch.tensor([3]), torch.tensor([100.0]))
    share = (replay.sample(2000, 1, 1, gen()).index == 3).float().mean()
    assert share > 0.85  # expected 100 / 109 (more rows than stored: drawn with replacement)
    replay.update_priorities(torch.tensor([3]), torch.tensor([1e-6]))
    share = (replay.sample(2000, 1, 1, gen()).index == 3).float().mean()
    assert share < 0.005


def test_a_new_row_enters_at_its_tasks_current_maximum_priority():
    replay = make(tasks=2, copies=1, capacity=10)
    rec = Recorder(replay)
    rec.add()
    assert replay.priority[:, 0].tolist() == [1.0, 1.0]  # an empty task starts at 1
    replay.update_priorities(torch.tensor([0, replay.lane]), torch.tensor([7.0, 0.5]))
    rec.add()
    assert replay.priority[:, 1].tolist() == [7.0, 0.5]
    replay.update_priorities(torch.tensor([0, 1]), torch.tensor([2.0, 3.0]))  # the 7 is gone
    rec.add()
    assert replay.priority[:, 2].tolist() == [3.0, 0.5]


def test_importance_weights_by_hand():
    replay = make(tasks=2, copies=1, capacity=3, alpha=0.5, beta=1.0)
    rec = Recorder(replay)
    for _ in range(3):
        rec.add()
    replay.update_priorities(torch.arange(6), torch.tensor([1.0, 9.0, 0.0, 4.0, 4.0, 4.0]))
    # task 0: scaled 1, 3 -> P 1/4, 3/4, M = 2 -> (M P)^-1 = 2, 2/3, divided by the task's max 2
    # task 1: scaled 2, 2, 2 -> P 1/3 each, M = 3 -> 1, divided by its own max 1
    expected = torch.tensor([1.0, 1 / 3, 0.0, 1.0, 1.0, 1.0])
    batch = replay.sample(64, 1, 1, gen())
    assert (batch.index == 0).any() and not (batch.index == 2).any()
    torch.testing.assert_close(batch.weight, expected[batch.index])

    shared = make(tasks=2, copies=1, capacity=3, alpha=0.5, beta=1.0, independent=False)
    shared.load_state_dict(replay.state_dict())
    # pooled: scaled 1, 3, 2, 2, 2 -> P 1/10, 3/10, 1/5 each; M = 5 -> 2, 2/3, 1, 1, 1; / 2
    pooled = torch.tensor([1.0, 1 / 3, 0.0, 0.5, 0.5, 0.5])
    batch = shared.sample(64, 1, 1, gen())
    assert (batch.index == 0).any()
    torch.testing.assert_close(batch.weight, pooled[batch.index])


def test_a_rare_row_cannot_shrink_the_rest_of_its_batch_below_the_floor():
    replay = make(tasks=1, copies=1, capacity=4, alpha=1.0, beta=1.0)
    rec = Recorder(replay)
    for _ in range(4):
        rec.add()
    replay.update_priorities(torch.arange(4), torch.tensor([1e-4, 1.0, 1.0, 1.0]))
    batch = replay.sample(4, 1, 1, gen())  # all four rows, without replacement
    assert sorted(batch.index.tolist()) == [0, 1, 2, 3]
    weight = dict(zip(batch.index.tolist(), batch.weight.tolist()))
    assert weight[0] == 1.0 and weight[1] == weight[2] == weight[3] == pytest.approx(0.1)


def test_same_seed_same_batch():
    replay = make(tasks=2, copies=2, capacity=20)
    rec = Recorder(replay)
    for _ in range(15):
        rec.add()
    a, b, c = (replay.sample(16, 2, 2, gen(s)) for s in (7, 7, 8))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a.index, c.index)


def test_state_dict_round_trip_resumes_exactly():
    replay = make(tasks=2, copies=2, capacity=12)
    rec = Recorder(replay)
    for step in range(9):
        rec.add()
        if step == 4:
            rec.end([1, 2])
    replay.update_priorities(torch.tensor([0, 7]), torch.tensor([3.0, 0.5]))
    buffer = io.BytesIO()
    torch.save(replay.state_dict(), buffer)
    buffer.seek(0)
    restored = make(tasks=2, copies=2, capacity=12)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    twin = copy.deepcopy(rec)
    twin.replay = restored
    for writer in (rec, twin):
        writer.add()
        writer.end([3])  # advances heads and episode counters identically on both
        writer.add()
    for x, y in zip(replay.sample(32, 2, 2, gen(1)), restored.sample(32, 2, 2, gen(1))):
        assert torch.equal(x, y)
    for name in Replay._TENSORS:
        assert torch.equal(getattr(replay, name), getattr(restored, name)), name
    assert restored.next_episode == replay.next_episode

    with pytest.raises(ValueError, match="saved obs"):
        make(tasks=1, copies=2, capacity=12).load_state_dict(replay.state_dict())


def _saved_bytes(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()


def _restored(state: dict, **kw) -> Replay:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    replay = make(**kw)
    replay.load_state_dict(torch.load(buffer, weights_only=True))
    return replay


def _assert_same(a: Replay, b: Replay) -> None:
    for name in Replay._TENSORS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.next_episode == b.next_episode


def test_the_saved_state_holds_only_the_filled_rows_and_restores_exactly():
    kw = dict(tasks=2, copies=2, capacity=400)  # 200 rows a lane
    replay = make(**kw)
    rec = Recorder(replay)
    for step in range(20):
        rec.add()
        if step % 7 == 3:
            rec.end([1, 2])  # lanes 1 and 2 fill faster than 0 and 3
    replay.update_priorities(torch.tensor([0, 205]), torch.tensor([3.0, 0.5]))
    state = replay.state_dict()
    assert state["obs"].shape[1] == int(replay.filled.max()) == 23
    whole = {name: getattr(replay, name) for name in Replay._TENSORS}  # what was saved before
    assert _saved_bytes(state) < 0.2 * _saved_bytes(whole)
    _assert_same(_restored(state, **kw), replay)

    into_used = make(**kw)  # restoring over a buffer that holds other rows clears them
    other = Recorder(into_used)
    for _ in range(30):
        other.add()
    into_used.load_state_dict(state)
    _assert_same(into_used, replay)

    for _ in range(200):  # every lane wraps: the whole buffer is kept
        rec.add()
    assert replay.state_dict()["obs"].shape[1] == replay.lane
    _assert_same(_restored(replay.state_dict(), **kw), replay)


def test_a_state_of_whole_lanes_still_loads():
    replay = make(tasks=1, copies=2, capacity=40)
    rec = Recorder(replay)
    for _ in range(5):
        rec.add()
    whole = {name: getattr(replay, name).clone() for name in Replay._TENSORS}  # as written before compaction
    _assert_same(_restored(dict(whole, next_episode=replay.next_episode), tasks=1, copies=2, capacity=40), replay)
    with pytest.raises(ValueError, match="saved lanes hold 20 rows, this buffer's 10"):
        make(tasks=1, copies=2, capacity=20).load_state_dict(replay.state_dict())
