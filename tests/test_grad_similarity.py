"""Gradient similarity (Fig. 3): logged per module group and task pair, with no effect on training."""
import json
from pathlib import Path

import pytest
import torch

from ezm import config as C
from ezm.learning.checkpoint import load_checkpoint
from ezm.learning.grad_similarity import GROUPS
from ezm.workers.trainer import train

TINY = ["env.copies_per_task=1", "train.env_steps_per_task=480", "train.eval_interval=100000",
        "train.checkpoint_interval=100000", "train.eval_episodes=1", "train.log_interval=80",
        "train.progress=false", "learn.warmup_steps=320", "learn.batch_size=16", "search.simulations=2",
        "search.root_actions=2", "search.root_policy_samples=1", "learn.reanalyze_simulations=2",
        "model.dropout=0.1"]  # dropout draws from the global generator: the measurement must restore it
PAIRS = "learn.grad_similarity_pairs=cartpole-balance~cartpole-swingup,cartpole-balance~walker-walk"


def _run(tmp_path: Path, name: str, *extra: str) -> Path:
    cfg = C.build("quickstart", None, [*TINY, "env.suite=cartpole-balance,cartpole-swingup,walker-walk",
                                       f"train.run_dir={tmp_path / name}", *extra])
    return train(cfg).run_dir


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_measuring_gradient_similarity_leaves_training_unchanged(tmp_path):
    off = _run(tmp_path, "off")
    on = _run(tmp_path, "on", "learn.grad_similarity_interval=2", PAIRS)
    cos_rows = [r for r in _rows(on) if any(k.startswith("grad_cos/") for k in r)]
    train_rows = [r for r in _rows(on) if r not in cos_rows]
    assert len(cos_rows) >= 4  # every 2nd update
    for row in cos_rows:
        for group in GROUPS:
            for pair in ("cartpole-balance~cartpole-swingup", "cartpole-balance~walker-walk"):
                assert -1.0 <= row[f"grad_cos/{group}/{pair}"] <= 1.0
    assert len({row["grad_cos/dynamics/cartpole-balance~walker-walk"] for row in cos_rows}) > 1

    def losses(rows):
        return [{k: v for k, v in r.items() if k not in ("time", "updates_per_s")} for r in rows]

    assert losses(train_rows) == losses(_rows(off))  # every loss, diagnostic and update count
    weights_on = load_checkpoint(on / "checkpoint.pt")["learner"]["model"]
    weights_off = load_checkpoint(off / "checkpoint.pt")["learner"]["model"]
    assert all(torch.equal(weights_on[k], weights_off[k]) for k in weights_off)


def test_a_pair_naming_a_task_outside_the_run_is_refused_before_the_run_starts(tmp_path):
    cfg = C.build("quickstart", None, [*TINY, "env.suite=dmc-cartpole", f"train.run_dir={tmp_path}",
                                       "learn.grad_similarity_interval=10",
                                       "learn.grad_similarity_pairs=cartpole-balance~walker-run"])
    with pytest.raises(C.ConfigError, match="'walker-run' in 'cartpole-balance~walker-run' is not a task of this run"):
        train(cfg)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("pairs, message", [("walker-walk", "two different tasks"),
                                            ("walker-walk~walker-walk", "two different tasks")])
def test_malformed_pairs_are_refused(pairs, message):
    with pytest.raises(C.ConfigError, match=message):
        C.build("quickstart", None, [f"learn.grad_similarity_pairs={pairs}", "learn.grad_similarity_interval=5"])
    with pytest.raises(C.ConfigError, match="needs learn.grad_similarity_pairs"):
        C.build("quickstart", None, ["learn.grad_similarity_interval=5"])
    parsed = C.build("quickstart", None, ["learn.grad_similarity_pairs=a-b~c-d,a-b~e-f"]).learn
    assert parsed.grad_similarity_pairs == ("a-b~c-d", "a-b~e-f") and parsed.grad_similarity_interval == 0
