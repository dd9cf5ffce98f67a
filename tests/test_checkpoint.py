import random

import numpy as np
import pytest
import torch

from ezm.config import RETIRED, Config, to_dict
from ezm.learning.checkpoint import (VERSION, CheckpointError, checkpoint_config, load_checkpoint,
                                     previous_path, rng_state, save_checkpoint, set_rng_state)


def config():
    return to_dict(Config())


def state():
    return {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "step": 7, "name": "run",
            "losses": [1.5, 2.5], "nothing": None}


def test_round_trip_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "ckpt" / "latest.pt"
    save_checkpoint(path, state(), config())
    loaded = load_checkpoint(path, config())
    assert torch.equal(loaded["model"]["w"], state()["model"]["w"])
    assert {k: v for k, v in loaded.items() if k != "model"} == {
        "step": 7, "name": "run", "losses": [1.5, 2.5], "nothing": None}
    assert checkpoint_config(path) == config()

    save_checkpoint(path, dict(state(), step=8), config())
    assert load_checkpoint(path, config())["step"] == 8
    assert load_checkpoint(previous_path(path), config())["step"] == 7
    assert sorted(p.name for p in path.parent.iterdir()) == ["latest.previous.pt", "latest.pt"]


def test_a_failed_write_leaves_the_last_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, state(), config())

    def killed(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, dict(state(), step=8), config())
    monkeypatch.undo()
    assert load_checkpoint(path, config())["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt: no such file"):
        load_checkpoint(tmp_path / "nope.pt", None)


@pytest.mark.parametrize("keep", [0, 10, 40, -1, -100])
def test_truncated_file_is_refused(tmp_path, keep):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, state(), config())
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(CheckpointError, match=r"latest\.pt: truncated"):
        load_checkpoint(path, None)


@pytest.mark.parametrize("where", [0.5, 0.9, 0.999])
def test_a_flipped_byte_is_refused(tmp_path, where):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, state(), config())
    data = bytearray(path.read_bytes())
    data[int(where * len(data))] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="latest.pt: corrupt"):
        load_checkpoint(path, None)


def test_a_flipped_config_value_in_the_header_is_refused(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, state(), config())
    data = path.read_bytes()
    assert data.count(b'"hidden": 64') == 1
    path.write_bytes(data.replace(b'"hidden": 64', b'"hidden": 65'))
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        load_checkpoint(path, None)


def test_foreign_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"w": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt: not an ezm checkpoint"):
        load_checkpoint(foreign, None)
    noise = tmp_path / "noise.bin"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="noise.bin: not an ezm checkpoint"):
        load_checkpoint(noise, None)


def test_another_format_version_is_refused(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, state(), config())
    path.write_bytes(path.read_bytes().replace(f'"version": {VERSION}'.encode(), b'"version": 1', 1))
    with pytest.raises(CheckpointError, match=f"format version 1, this ezm reads version {VERSION}"):
        load_checkpoint(path, None)


class Payload:
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_code_is_never_run(tmp_path):
    Payload.marker = tmp_path / "marker"
    raw = tmp_path / "raw.pt"
    torch.save({"x": Payload()}, raw)
    with pytest.raises(CheckpointError, match="raw.pt: not an ezm checkpoint"):
        load_checkpoint(raw, None)
    framed = tmp_path / "framed.pt"  # a well-formed envelope with a valid hash around it
    save_checkpoint(framed, {"x": Payload()}, config())
    with pytest.raises(CheckpointError, match="framed.pt: payload refused"):
        load_checkpoint(framed, config())
    assert not Payload.marker.exists()


def test_config_mismatch_names_the_keys(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, state(), config())
    run = config()
    run["model"]["hidden"] = 32
    run["replay"]["independent"] = False
    with pytest.raises(CheckpointError, match="model.hidden: checkpoint 64, run 32; "
                                              "replay.independent: checkpoint True, run False"):
        load_checkpoint(path, run)
    run = config()
    run["train"]["env_steps_per_task"] = 10**6
    assert load_checkpoint(path, run, ignore=["train.env_steps_per_task"])["step"] == 7
    with pytest.raises(CheckpointError, match="train.env_steps_per_task"):
        load_checkpoint(path, run, ignore=["train.env_steps"])


def draws(generator, torch_generator):
    return (random.random(), float(np.random.rand()), float(generator.normal()),
            float(torch.rand(())), float(torch.rand((), generator=torch_generator)))


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    generator = np.random.default_rng(3)
    torch_generator = torch.Generator().manual_seed(5)
    draws(generator, torch_generator)
    path = tmp_path / "latest.pt"
    save_checkpoint(path, {"rng": rng_state(generator, {"replay": torch_generator})}, config())
    first = draws(generator, torch_generator)
    other = np.random.default_rng(99)
    other_torch = torch.Generator().manual_seed(99)
    set_rng_state(load_checkpoint(path, config())["rng"], other, {"replay": other_torch})
    assert draws(other, other_torch) == first


def test_a_checkpoint_from_before_a_field_existed_matches_that_fields_default(tmp_path):
    path = tmp_path / "latest.pt"
    old = config()
    del old["learn"]["td_bootstrap"]  # written by a version without the field
    save_checkpoint(path, state(), old)
    assert load_checkpoint(path, config(), defaults=config())["step"] == 7
    run = config()
    default = config()["learn"]["td_bootstrap"]  # what the absent field counts as
    run["learn"]["td_bootstrap"] = other = "search" if default == "mean" else "mean"  # not what that version did
    with pytest.raises(CheckpointError, match=f"learn.td_bootstrap: checkpoint '{default}', run '{other}'"):
        load_checkpoint(path, run, defaults=config())
    with pytest.raises(CheckpointError, match="learn.td_bootstrap: checkpoint '\\(absent\\)'"):
        load_checkpoint(path, config())  # without defaults an absent key differs


def test_a_checkpoint_from_before_a_field_was_deleted_matches_only_at_the_retired_value(tmp_path):
    path = tmp_path / "latest.pt"
    old = config()
    old["search"]["head_draw"] = "node"  # written by a version that still had the field
    save_checkpoint(path, state(), old)
    assert load_checkpoint(path, config(), retired=RETIRED)["step"] == 7
    with pytest.raises(CheckpointError, match="search.head_draw: checkpoint 'node', run '\\(absent\\)'"):
        load_checkpoint(path, config())  # without the retired values an extra key differs
    old["search"]["head_draw"] = "search"  # a run of the deleted lever: not what this version runs
    save_checkpoint(path, state(), old)
    with pytest.raises(CheckpointError, match="search.head_draw: checkpoint 'search'"):
        load_checkpoint(path, config(), retired=RETIRED)
