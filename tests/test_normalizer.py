"""Per-task observation standardisation: exact running moments, tasks kept apart, padding kept 0."""
import dataclasses

import numpy as np
import torch

from ezm.config import quickstart
from ezm.model import WorldModel
from ezm.model.normalizer import ObservationNorm


def test_running_moments_equal_the_moments_of_every_row_seen_per_task():
    g = torch.Generator().manual_seed(0)
    norm = ObservationNorm(num_tasks=3, obs_size=4)
    rows = {0: [], 1: []}
    for size in (5, 17, 1, 64):  # uneven batches, task 2 never appears
        obs = torch.randn(size, 4, generator=g) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + torch.tensor([5.0, -2.0, 0.0, 1.0])
        task = torch.randint(0, 2, (size,), generator=g)
        norm.update(obs, task)
        for t in (0, 1):
            rows[t].append(obs[task == t].double().numpy())
    for t in (0, 1):
        seen = np.concatenate(rows[t])
        assert norm.count[t] == len(seen)
        np.testing.assert_allclose(norm.mean[t].numpy(), seen.mean(0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(norm.var[t].numpy(), seen.var(0), rtol=1e-9, atol=1e-9)
    assert norm.count[2] == 0 and (norm.mean[2] == 0).all() and (norm.var[2] == 1).all()


def test_standardised_per_task_unseen_passes_padding_stays_zero_and_outliers_clip():
    norm = ObservationNorm(num_tasks=3, obs_size=3, clip=10.0)
    g = torch.Generator().manual_seed(1)
    a = torch.cat([torch.randn(500, 2, generator=g) * 4 + 7, torch.zeros(500, 1)], 1)  # task 0: last dim padded
    b = torch.randn(500, 3, generator=g) * 0.5 - 3  # task 1: another scale altogether
    norm.update(torch.cat([a, b]), torch.cat([torch.zeros(500), torch.ones(500)]).long())
    out_a = norm(a, torch.zeros(500, dtype=torch.long))
    out_b = norm(b, torch.ones(500, dtype=torch.long))
    for out in (out_a[:, :2], out_b):
        torch.testing.assert_close(out.mean(0), torch.zeros(out.shape[1]), atol=1e-3, rtol=0)
        torch.testing.assert_close(out.std(0), torch.ones(out.shape[1]), atol=0.02, rtol=0)
    assert (out_a[:, 2] == 0).all()
    unseen = torch.randn(4, 3, generator=g) * 100
    assert torch.equal(norm(unseen, torch.full((4,), 2)), unseen)
    far = torch.tensor([[7.0 + 400.0, 7.0, 0.0]])
    assert norm(far, torch.zeros(1, dtype=torch.long))[0, 0] == 10.0


def test_the_model_standardises_before_the_representation_and_can_be_switched_off():
    mask = torch.ones(2, 2)
    on = WorldModel(quickstart().model, 2, 3, 2, mask).eval()
    off_cfg = dataclasses.replace(quickstart().model, normalize_obs=False)
    off = WorldModel(off_cfg, 2, 3, 2, mask).eval()
    assert on.obs_norm is not None and off.obs_norm is None
    assert "obs_norm.mean" in on.state_dict() and not any("obs_norm" in k for k in off.state_dict())
    obs, task = torch.randn(8, 3) * 50 + 20, torch.tensor([0, 1] * 4)
    with torch.no_grad():
        before = on.represent(obs, task)
        on.obs_norm.update(obs, task)
        after = on.represent(obs, task)
        by_hand = on.representation(on.obs_norm(obs, task), on.task_embedding(task))
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, by_hand)


def test_an_empty_update_changes_nothing():
    norm = ObservationNorm(num_tasks=2, obs_size=2)
    norm.update(torch.ones(3, 2), torch.zeros(3, dtype=torch.long))
    state = {k: v.clone() for k, v in norm.state_dict().items()}
    norm.update(torch.ones(0, 2), torch.zeros(0, dtype=torch.long))
    assert all(torch.equal(state[k], v) for k, v in norm.state_dict().items())
