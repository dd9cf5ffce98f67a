"""The config tree: presets, YAML and overrides, round trips, refusal of bad keys and types."""
import dataclasses
import re
import sys

import pytest

from ezm import config as C


def test_every_field_of_every_section_has_a_comment():
    import inspect

    source = inspect.getsource(C)
    for section in (C.EnvConfig, C.ModelConfig, C.SearchConfig, C.ReplayConfig, C.LearnConfig,
                    C.TrainConfig, C.SystemConfig, C.Config):
        for field in dataclasses.fields(section):
            lines = [l for l in source.splitlines() if l.strip().startswith(f"{field.name}:")]
            assert lines and all("#" in l for l in lines), f"{section.__name__}.{field.name} has no comment"


def test_presets_differ_where_the_spec_says():
    paper, dmc, quick = C.paper(), C.dmc(), C.quickstart()
    assert (paper.model.hidden, paper.model.blocks, paper.learn.batch_size, paper.learn.lr) == (512, 3, 512, 1e-4)
    assert (paper.search.simulations, paper.search.root_actions) == (32, 16)
    assert (paper.discount, paper.decision_discount) == (0.99, 0.99)  # action repeat 1
    assert dmc == C.Config()  # the field defaults are the measured DMC configuration
    assert dmc.decision_discount == pytest.approx(0.99875 ** 4)
    # the quickstart is the same algorithm on a smaller budget
    assert (quick.model, quick.search, quick.env) == (dmc.model, dmc.search, dmc.env)
    assert quick.train.env_steps_per_task < dmc.train.env_steps_per_task


def test_overrides_and_yaml_apply_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learn:\n  lr: 0.002\n  batch_size: 64\nmodel:\n  reward_range: [-3, 3]\n")
    cfg = C.build("dmc", path, ["learn.lr=1e-3", "seed=7", "env.suite=walker-walk,cheetah-run"])
    assert cfg.learn.lr == 1e-3 and cfg.learn.batch_size == 64 and cfg.seed == 7
    assert cfg.model.reward_range == (-3.0, 3.0)
    assert cfg.env.suite == "walker-walk,cheetah-run"


def test_round_trip_through_yaml(tmp_path):
    cfg = C.build("paper", overrides=["search.simulations=8", "learn.path_consistency=false"])
    C.save(cfg, tmp_path / "config.yaml")
    assert C.from_dict(C.load_yaml(tmp_path / "config.yaml")) == cfg


@pytest.mark.parametrize("override, message", [
    ("learn.lrr=1", "learn.lrr"),
    ("lern.lr=1", "lern"),
    ("learn.batch_size=abc", "learn.batch_size"),
    ("learn.batch_size=1.5", "learn.batch_size"),
    ("learn.path_consistency=maybe", "learn.path_consistency"),
    ("model.reward_range=1,2,3", "model.reward_range"),
    ("learn=3", "learn"),
    ("novalue", "novalue"),
    ("learn.value_target=mc", "learn.value_target must be one of mixed, rule, td"),
    ("learn.lr_final=1.5", "learn.lr_final must lie in"),
    ("model.policy_log_std_min=0", "model.policy_log_std_min must lie in"),
    ("learn.td_bootstrap=max", "learn.td_bootstrap must be one of search, mean"),
    ("learn.policy_target=best", "learn.policy_target must be one of action, improved_1d, improved"),
    ("model.value_range=[5,-5]", "model.value_range must be"),
    ("search.eval_root_widen=0", "search.eval_root_widen must be positive"),
    ("search.root_widen=-1", "search.root_widen must be positive"),
    ("env.copies_per_task=0", "env.copies_per_task must be an integer >= 1, got 0"),
    ("env.action_repeat=0", "env.action_repeat must be an integer >= 1"),
    ("search.simulations=0", "search.simulations must be an integer >= 1, got 0"),
    ("search.simulations=-1", "search.simulations must be an integer >= 1, got -1"),
    ("search.root_actions=0", "search.root_actions must be an integer >= 1"),
    ("search.root_policy_samples=9", "search.root_policy_samples must lie in [1, search.root_actions = 8], got 9"),
    ("search.root_policy_samples=0", "search.root_policy_samples must lie in [1,"),
    ("search.eval_root_uniform=1.5", "search.eval_root_uniform must lie in [0, 1], got 1.5"),
    ("search.root_uniform=-1", "search.root_uniform must lie in [0, 1]"),
    ("search.child_actions=0", "search.child_actions must be an integer >= 1"),
    ("model.hidden=0", "model.hidden must be an integer >= 1"),
    ("model.value_heads=0", "model.value_heads must be an integer >= 1"),
    ("model.support_bins=1", "model.support_bins must be an integer >= 2"),
    ("model.dropout=1", "model.dropout must lie in [0, 1)"),
    ("model.policy_init_std=0", "model.policy_init_std must be positive"),
    ("learn.batch_size=0", "learn.batch_size must be an integer >= 1, got 0"),
    ("learn.unroll=0", "learn.unroll must be an integer >= 1"),
    ("learn.td_steps=0", "learn.td_steps must be an integer >= 1"),
    ("learn.reanalyze_simulations=0", "learn.reanalyze_simulations must be an integer >= 1"),
    ("learn.target_update_interval=0", "learn.target_update_interval must be an integer >= 1"),
    ("learn.lr=-1", "learn.lr must be positive (a finite number > 0), got -1.0"),
    ("learn.lr=0", "learn.lr must be positive"),
    ("learn.lr=nan", "learn.lr must be positive"),
    ("learn.lr=inf", "learn.lr must be positive"),
    ("learn.weight_decay=-1e-5", "learn.weight_decay must be a finite number >= 0.0"),
    ("learn.entropy_coef=-1", "learn.entropy_coef must be a finite number >= 0.0"),
    ("learn.value_coef=nan", "learn.value_coef must be a finite number >= 0.0"),
    ("learn.replay_ratio=0", "learn.replay_ratio must be positive"),
    ("learn.lr_warmup=2", "learn.lr_warmup must lie in [0, 1]"),
    ("learn.warmup_steps=-1", "learn.warmup_steps must be an integer >= 0"),
    ("replay.capacity_per_task=0", "replay.capacity_per_task must be an integer >= 1"),
    ("train.env_steps_per_task=-5", "train.env_steps_per_task must be an integer >= 1, got -5"),
    ("train.eval_interval=0", "train.eval_interval must be an integer >= 1"),
    ("train.checkpoint_interval=0", "train.checkpoint_interval must be an integer >= 1"),
    ("train.log_interval=0", "train.log_interval must be an integer >= 1"),
    ("train.eval_episodes=0", "train.eval_episodes must be an integer >= 1"),
    ("discount=1.5", "discount must lie in (0, 1], got 1.5"),
    ("discount=0", "discount must lie in (0, 1]"),
    ("device=gpu", "device must be cpu, cuda, cuda:N or mps, got 'gpu'"),
    ("device=cuda:99", "device 'cuda:99': "),
])
def test_bad_keys_and_types_are_refused_naming_the_key(override, message):
    with pytest.raises(C.ConfigError, match=re.escape(message)):
        C.build("dmc", overrides=[override])


def test_the_edges_of_every_range_are_accepted():
    cfg = C.build("dmc", overrides=["discount=1", "model.blocks=0", "learn.warmup_steps=0", "learn.entropy_coef=0",
                                    "search.root_policy_samples=8", "search.gumbel_scale=0", "model.dropout=0",
                                    "search.simulations=1", "learn.batch_size=1", "env.copies_per_task=1"])
    assert (cfg.discount, cfg.model.blocks, cfg.search.root_policy_samples) == (1.0, 0, 8)


def test_every_problem_is_named_in_one_line():
    with pytest.raises(C.ConfigError) as err:
        C.build("dmc", overrides=["env.copies_per_task=0", "learn.lr=-1", "discount=1.5"])
    message = str(err.value)
    assert "\n" not in message
    assert all(name in message for name in ("env.copies_per_task", "learn.lr", "discount"))


def test_cuda_without_cuda_is_refused_with_the_reason():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(C.ConfigError, match="device 'cuda': CUDA is not available here.*use device=cpu"):
        C.build("dmc", overrides=["device=cuda"])


def test_a_batch_smaller_than_the_task_count_is_refused_with_independent_replay():
    cfg = C.build("dmc", overrides=["learn.batch_size=3"])  # dmc-cartpole: 4 tasks
    with pytest.raises(C.ConfigError, match=re.escape("learn.batch_size must be >= the number of tasks (4 in "
                                                      "'dmc-cartpole') with replay.independent=true, got 3")):
        C.validate_tasks(cfg, 4)
    C.validate_tasks(C.merge(cfg, {"replay": {"independent": False}}), 4)  # a pooled buffer takes any batch
    C.validate_tasks(cfg, 3)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(C.ConfigError, match="did you mean lr"):
        C.build("dmc", overrides=["learn.lrr=1"])


def test_a_stored_config_with_a_deleted_setting_loads_only_at_todays_behaviour():
    stored = C.to_dict(C.dmc())
    stored["search"]["head_draw"] = "node"  # what runs made before the field was deleted stored
    stored["learn"]["policy_correction"] = False
    stored["search"]["root_proposal"] = "widened"
    stored["search"]["root_widen_action"] = 0.0
    stored["model"]["policy_log_std_max"] = 2.0
    assert C.from_dict(stored) == C.dmc()
    stored["search"]["root_widen_action"] = 0.5
    with pytest.raises(C.ConfigError, match="search.root_widen_action=0.5 is a deleted setting"):
        C.from_dict(stored)
    stored["search"]["root_widen_action"] = 0.0
    stored["search"]["head_draw"] = "search"
    with pytest.raises(C.ConfigError, match="search.head_draw='search' is a deleted setting"):
        C.from_dict(stored)
    with pytest.raises(C.ConfigError, match="learn.policy_correction='true' is a deleted setting"):
        C.build("dmc", None, ["learn.policy_correction=true"])
    with pytest.raises(C.ConfigError, match="search.root_proposal='uniform' is a deleted setting"):
        C.build("dmc", None, ["search.root_proposal=uniform"])
    with pytest.raises(C.ConfigError, match="model.policy_log_std_max='0' is a deleted setting"):
        C.build("dmc", None, ["model.policy_log_std_max=0"])


def test_an_override_naming_a_deleted_setting_at_its_retired_value_is_accepted():
    # an override arrives as a string: "2" is the retired 2.0, "false" the retired False
    assert C.build("dmc", None, ["model.policy_log_std_max=2", "learn.policy_correction=false",
                                 "search.head_draw=node", "search.root_widen_action=0"]) == C.dmc()
    with pytest.raises(C.ConfigError, match="model.policy_log_std_max='2.5' is a deleted setting"):
        C.build("dmc", None, ["model.policy_log_std_max=2.5"])
    with pytest.raises(C.ConfigError, match="learn.policy_correction='maybe' is a deleted setting"):
        C.build("dmc", None, ["learn.policy_correction=maybe"])


def test_bad_yaml_and_missing_file_and_unknown_preset(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learn: [unclosed\n")
    with pytest.raises(C.ConfigError, match="not valid YAML"):
        C.build("dmc", bad)
    with pytest.raises(C.ConfigError, match="does not exist"):
        C.build("dmc", tmp_path / "nope.yaml")
    with pytest.raises(C.ConfigError, match="unknown preset"):
        C.build("huge")


def test_ray_settings_that_cannot_be_arranged_are_refused_naming_the_fields():
    with pytest.raises(C.ConfigError, match="system.backend must be one of single, ray, got 'spark'"):
        C.build("dmc", overrides=["system.backend=spark"])
    with pytest.raises(C.ConfigError, match=re.escape("env.copies_per_task (4) must be a multiple of "
                                                      "system.rollout_workers (3)")):
        C.build("dmc", overrides=["system.backend=ray", "system.rollout_workers=3"])
    with pytest.raises(C.ConfigError, match="system.lockstep=true runs one rollout and one reanalyze worker"):
        C.build("dmc", overrides=["system.lockstep=true", "system.reanalyze_workers=2"])
    with pytest.raises(C.ConfigError, match="system.queue_size must be an integer >= 1, got 0"):
        C.build("dmc", overrides=["system.queue_size=0"])
    assert C.build("dmc", overrides=["system.backend=ray", "system.rollout_workers=2"]).system.rollout_workers == 2


def test_the_ray_backend_without_ray_installed_says_how_to_install_it(monkeypatch):
    from ezm.distributed import ray_trainer

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    with pytest.raises(C.ConfigError, match=re.escape("system.backend=ray needs Ray, which is not installed: "
                                                      "pip install -e '.[ray]'")):
        ray_trainer(C.build("dmc", overrides=["system.backend=ray"]))


def test_reanalyze_searches_the_acting_candidates_with_its_own_budget():
    cfg = C.SearchConfig(simulations=8, root_uniform=0.25)
    assert cfg.for_reanalyze(4) == dataclasses.replace(cfg, simulations=4)


def test_absent_fields_are_those_a_config_file_lacks_with_their_defaults():
    cfg = C.build("quickstart", overrides=["search.eval_root_uniform=0.5"])
    assert C.absent_fields(C.to_dict(cfg)) == {}  # a file of today's ezm lacks nothing
    written = C.to_dict(cfg)
    del written["search"]["eval_root_uniform"], written["learn"]["lr"], written["system"]
    absent = C.absent_fields(written)
    assert absent["search.eval_root_uniform"] == 0.25 and absent["learn.lr"] == C.Config().learn.lr
    assert {k for k in absent if k.startswith("system.")} == {f"system.{f.name}" for f in dataclasses.fields(C.SystemConfig)}
    assert len(absent) == 2 + len(dataclasses.fields(C.SystemConfig))
