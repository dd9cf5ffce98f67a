"""The config tree: presets, YAML and overrides, round trips, refusal of bad keys and types."""
import dataclasses

import pytest

from ezm import config as C


def test_every_field_of_every_section_has_a_comment():
    import inspect

    source = inspect.getsource(C)
    for section in (C.EnvConfig, C.ModelConfig, C.SearchConfig, C.ReplayConfig, C.LearnConfig,
                    C.TrainConfig, C.Config):
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
    ("search.head_draw=tree", "search.head_draw must be one of node, search"),
    ("model.policy_log_std_min=0", "model.policy_log_std_min must lie in"),
    ("learn.td_bootstrap=max", "learn.td_bootstrap must be one of search, mean"),
    ("learn.policy_target=improved", "learn.policy_target must be one of action, release"),
    ("model.value_range=[5,-5]", "model.value_range must be"),
    ("search.eval_root_widen=0", "search.eval_root_widen must be positive"),
    ("search.root_widen=-1", "search.root_widen must be positive"),
])
def test_bad_keys_and_types_are_refused_naming_the_key(override, message):
    with pytest.raises(C.ConfigError, match=message.replace(".", r"\.")):
        C.build("dmc", overrides=[override])


def test_unknown_key_suggests_the_closest():
    with pytest.raises(C.ConfigError, match="did you mean lr"):
        C.build("dmc", overrides=["learn.lrr=1"])


def test_bad_yaml_and_missing_file_and_unknown_preset(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learn: [unclosed\n")
    with pytest.raises(C.ConfigError, match="not valid YAML"):
        C.build("dmc", bad)
    with pytest.raises(C.ConfigError, match="does not exist"):
        C.build("dmc", tmp_path / "nope.yaml")
    with pytest.raises(C.ConfigError, match="unknown preset"):
        C.build("huge")
