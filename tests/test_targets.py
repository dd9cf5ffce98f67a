"""n-step TD targets: bootstrapping cut at true terminations, kept at time-limit truncations."""
import torch

from ezm.learning.targets import VarianceRange, td_targets

GAMMA = 0.9


def _rows(rewards, terminal_at=None, last_at=None, rows=9):
    """One sequence of `rows` rows; row `last_at` is the episode's final state."""
    reward = torch.zeros(1, rows)
    reward[0, : len(rewards)] = torch.tensor(rewards)
    terminal = torch.zeros(1, rows, dtype=torch.bool)
    last = torch.zeros(1, rows, dtype=torch.bool)
    valid = torch.ones(1, rows, dtype=torch.bool)
    if terminal_at is not None:
        terminal[0, terminal_at] = True
    if last_at is not None:
        last[0, last_at] = True
        valid[0, last_at + 1:] = False
        reward[0, last_at:] = 0.0
    return reward, terminal, valid, last


def test_td_target_bootstraps_inside_an_episode():
    reward, terminal, valid, last = _rows([1.0] * 9)
    bootstrap = torch.arange(9, dtype=torch.float32)[None] * 10  # v(s_j) = 10 j
    z = td_targets(reward, terminal, valid, last, bootstrap, unroll=2, td_steps=3, discount=GAMMA)
    for k in range(3):
        expected = 1 + GAMMA + GAMMA**2 + GAMMA**3 * 10 * (k + 3)
        assert torch.isclose(z[0, k], torch.tensor(expected))


def test_td_target_is_cut_at_a_true_termination():
    # actions at rows 0, 1, 2; the action at row 2 ends the episode in a terminal state (row 3)
    reward, terminal, valid, last = _rows([1.0, 2.0, 4.0], terminal_at=2, last_at=3)
    bootstrap = torch.full((1, 9), 100.0)
    z = td_targets(reward, terminal, valid, last, bootstrap, unroll=3, td_steps=5, discount=GAMMA)
    assert torch.isclose(z[0, 0], torch.tensor(1 + GAMMA * 2 + GAMMA**2 * 4))
    assert torch.isclose(z[0, 2], torch.tensor(4.0))
    assert z[0, 3] == 0.0  # the terminal state itself is worth nothing


def test_td_target_bootstraps_at_a_time_limit_truncation():
    reward, terminal, valid, last = _rows([1.0, 2.0, 4.0], terminal_at=None, last_at=3)
    bootstrap = torch.full((1, 9), 100.0)
    z = td_targets(reward, terminal, valid, last, bootstrap, unroll=3, td_steps=5, discount=GAMMA)
    assert torch.isclose(z[0, 0], torch.tensor(1 + GAMMA * 2 + GAMMA**2 * 4 + GAMMA**3 * 100))
    assert torch.isclose(z[0, 3], torch.tensor(100.0))  # the truncated final state keeps its value


def test_variance_range_gives_alpha_per_task():
    vr = VarianceRange(num_tasks=3, device="cpu", rate=0.5)
    task = torch.tensor([0, 1])
    vr.update(torch.tensor([[1.0, 3.0], [10.0, 30.0]]), task, torch.ones(2, 2, dtype=torch.bool))
    alpha = vr.alpha(torch.tensor([[2.0, 5.0], [20.0, 0.0]]), task)
    assert torch.allclose(alpha, torch.tensor([[0.5, 1.0], [0.5, 0.0]]))
    # the extremes move halfway (rate 0.5) towards a later batch's; task 2 was never seen
    vr.update(torch.tensor([[1.0, 1.0], [10.0, 10.0]]), task, torch.ones(2, 2, dtype=torch.bool))
    assert torch.allclose(vr.high[:2], torch.tensor([2.0, 20.0]))
    assert torch.isnan(vr.low[2])
    assert vr.alpha(torch.tensor([[5.0]]), torch.tensor([2])).item() == 1.0  # unseen task: all TD


def test_td_target_of_an_open_episode_bootstraps_from_its_newest_row():
    # rows 0..2 are stored, row 2 is the newest state of a running episode; rows 3+ unwritten
    reward, terminal, valid, last = _rows([1.0, 2.0, 4.0])
    valid[0, 3:] = False
    bootstrap = torch.full((1, 9), 100.0)
    z = td_targets(reward, terminal, valid, last, bootstrap, unroll=3, td_steps=5, discount=GAMMA)
    assert torch.isclose(z[0, 0], torch.tensor(1 + GAMMA * 2 + GAMMA**2 * 100))
    assert torch.isclose(z[0, 2], torch.tensor(100.0))
