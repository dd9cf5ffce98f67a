"""One frozen dataclass tree holds every setting of a run.

Presets (`quickstart`, `dmc`, `paper`) are functions returning a full `Config`; a YAML file
and `section.field=value` overrides change any field. Unknown keys and values of the wrong
type are refused with a `ConfigError` that names the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class EnvConfig:
    suite: str = "dmc-cartpole"  # a named suite (see `ezm tasks`) or a comma-separated task list
    copies_per_task: int = 4  # N environment copies of every task, all stepped as one batch
    action_repeat: int = 4  # simulator steps per chosen action; env steps count simulator steps
    sim_workers: int = 0  # worker processes that step slices of the environment rows concurrently; 0 steps them in this process


@dataclass(frozen=True)
class ModelConfig:
    hidden: int = 64  # width of the latent state h and of every residual block (EfficientZero-V2 DMC: 128)
    blocks: int = 1  # residual blocks in the representation, dynamics, reward and value trunks (V2 DMC: 2)
    head_hidden: int = 128  # width of the two hidden layers of the reward, value and policy heads (V2 DMC: 256)
    task_embedding_dim: int = 16  # size of the task embedding e (nn.Embedding, max_norm=1; paper: 128)
    action_embedding_dim: int = 16  # size of the encoded action u = U(a, e) (V2 DMC: 64)
    value_heads: int = 5  # value ensemble size (heads over one shared trunk)
    dropout: float = 0.0  # dropout in the value heads
    policy_init_std: float = 0.5  # std of the untrained policy (wide, so that early search explores)
    policy_log_std_min: float = -10.0  # lowest policy log-std (release -10; log(0.1) = -2.3 floors the std at 0.1)
    projector_hidden: int = 128  # hidden width of the SimSiam projector
    projector_out: int = 64  # output width of the projector (and of the predictor)
    predictor_hidden: int = 128  # hidden width of the SimSiam predictor
    support_bins: int = 51  # bins of the categorical reward and value supports
    reward_range: tuple[float, float] = (-10.0, 10.0)  # reward support of one decision (before the h-transform): any DMC action repeat up to 10
    value_range: tuple[float, float] = (-1000.0, 1000.0)  # value support (before the h-transform): DMC's 1 a step over 1 / (1 - discount) steps
    normalize_obs: bool = True  # standardise observations per task by running mean and std before H (both releases)
    te_representation: bool = True  # feed the task embedding to the representation H
    te_dynamics: bool = True  # feed the task embedding to the dynamics G
    te_reward: bool = True  # feed the task embedding to the reward path R
    te_value_policy: bool = True  # feed the task embedding to the value V and policy P


@dataclass(frozen=True)
class SearchConfig:
    simulations: int = 8  # model calls (simulations) per search (paper: 32)
    root_actions: int = 8  # K candidate actions sampled at the root (also the top-m of halving; paper: 16)
    root_policy_samples: int = 2  # of the K, how many come from N(mu, sigma); the rest are widened (release: 4 of 16)
    root_widen: float = 3.0  # std multiplier for the widened root samples N(mu, widen * sigma)
    eval_root_widen: float = 1.0  # root_widen when evaluating (release: 1, every candidate from N(mu, sigma))
    root_uniform: float = 0.0  # fraction of the K drawn uniformly over the action box instead (floor(f K), at most K - 1; acting and reanalyze: 0, the release)
    eval_root_uniform: float = 0.25  # root_uniform when evaluating: actions the policy rarely proposes, e.g. small ones under a control cost (0.5 lost walker)
    child_actions: int = 2  # candidate actions sampled at every interior node
    c_visit: float = 50.0  # sigma(q) = (c_visit + max N) * c_scale * q
    c_scale: float = 0.1  # see c_visit
    value_min_heads: int = 2  # value inference: minimum over this many randomly chosen heads (the release)
    gumbel_scale: float = 1.0  # scale of the Gumbel noise when acting (0 disables it)

    def for_evaluation(self) -> SearchConfig:
        """This search as evaluation runs it: root candidates by eval_root_widen and eval_root_uniform."""
        return dataclasses.replace(self, root_widen=self.eval_root_widen, root_uniform=self.eval_root_uniform)

    def for_reanalyze(self, simulations: int) -> SearchConfig:
        """This search as reanalyze runs it: the same root candidates, `simulations` model calls."""
        return dataclasses.replace(self, simulations=simulations)


@dataclass(frozen=True)
class ReplayConfig:
    capacity_per_task: int = 100_000  # transitions kept per task (oldest are overwritten)
    priority_alpha: float = 1.0  # prioritised sampling exponent within a task (0 = uniform)
    priority_beta: float = 1.0  # importance-weight exponent
    independent: bool = True  # one buffer per task (IER); False pools all tasks (the -IER ablation)


@dataclass(frozen=True)
class LearnConfig:
    batch_size: int = 128  # sequences per update, floor or ceil of B / |T| from every task (paper: 512)
    unroll: int = 5  # K unroll steps of the dynamics in the loss
    td_steps: int = 5  # n of the n-step TD value target
    td_bootstrap: str = "mean"  # TD bootstrap value: "mean" = ensemble mean (a TD target takes no max, so needs no pessimism), "search" = min over search.value_min_heads random heads (release)
    lr: float = 3e-4  # Adam learning rate
    lr_final: float = 1.0  # lr at the last env step, as a fraction of lr: half-cosine decay (1 = constant)
    lr_warmup: float = 0.01  # fraction of the run's env steps after warm-up over which lr rises linearly from 0 (EfficientZero-V2: 0.01)
    weight_decay: float = 2e-5  # Adam weight decay
    grad_clip: float = 5.0  # global gradient-norm clip
    reward_coef: float = 1.0  # weight of the reward cross-entropy
    value_coef: float = 0.5  # weight of the value cross-entropy (every ensemble head)
    policy_coef: float = 1.0  # weight of the policy loss
    policy_target: str = "improved_1d"  # "improved_1d": CE with the improved policy on 1-D tasks, MLE of the searched action on the rest (EfficientZero-V2's DMC rule); "action": MLE on every task (the EZ-M release); "improved": CE on every task
    consistency_coef: float = 5.0  # weight of the SimSiam temporal consistency loss
    path_coef: float = 0.5  # weight of the path consistency loss
    entropy_coef: float = 5e-2  # weight of the squashed policy's entropy bonus (EfficientZero-V2 DMC; the EZ-M release: 5e-3)
    path_consistency: bool = True  # use the path consistency loss (off: the -PathCons ablation)
    latent_grad_scale: float = 0.5  # gradient scale on the latent at every unroll step
    target_update_interval: int = 25  # updates between copies of the online model to the target (EfficientZero-V2 DMC: 200; 25 beat 100 on 3 cartpole seeds, level on 3 walker seeds: docs/results.md)
    value_target: str = "rule"  # "rule" (age-based, the release), "mixed" (the paper's ensemble-variance alpha) or "td"
    rule_switch_updates: int = 50_000  # rule-based mixing: updates before old transitions use search values
    rule_age: int = 20_000  # rule-based mixing: transitions older than this many env steps use search values
    reanalyze_simulations: int = 8  # simulations of the reanalyze search: one visit to each of the 8 root candidates (paper: 32)
    replay_ratio: float = 1.0  # updates per decision (summed over every copy of every task)
    warmup_steps: int = 2_000  # env steps per task collected before the first update
    mixed_precision: bool = False  # bf16 autocast for the learner (CUDA only)
    grad_similarity_interval: int = 0  # updates between measurements of per-task gradient similarity (Fig. 3); 0 = off
    grad_similarity_pairs: tuple[str, ...] = ()  # task pairs measured, each "taskA~taskB" (tasks of the run's suite)


@dataclass(frozen=True)
class TrainConfig:
    env_steps_per_task: int = 100_000  # environment steps collected per task (simulator steps)
    eval_interval: int = 10_000  # env steps per task between evaluations
    eval_episodes: int = 4  # evaluation episodes per task (no noise)
    checkpoint_interval: int = 10_000  # env steps per task between checkpoints
    log_interval: int = 1_000  # env steps per task between log lines
    run_dir: str = "runs"  # parent folder of run directories
    progress: bool = True  # show a progress bar


@dataclass(frozen=True)
class SystemConfig:
    backend: str = "single"  # "single": one process collects, reanalyzes and learns in turn; "ray": the Ray pipeline (docs/scale-out.md)
    address: str = "local"  # Ray cluster: "local" starts one in this process, "auto" joins the one `ray start` made here, or HOST:PORT
    rollout_workers: int = 1  # Ray actors that act and step the envs, each env.copies_per_task / rollout_workers copies of every task
    reanalyze_workers: int = 1  # Ray actors that compute the targets of sampled batches with the target weights
    lockstep: bool = False  # run the pipeline's pieces in the single process's order: its results, bit for bit, without overlap
    queue_size: int = 2  # batches sampled ahead for reanalyze, per reanalyze worker (a full queue holds sampling back)
    broadcast_interval: int = 5  # updates between broadcasts of the acting weights (the release: 5); the target's go at every copy
    worker_threads: int = 1  # torch threads in every Ray actor
    worker_cpus: float = 0.5  # CPUs Ray reserves for every actor (fractions pack several actors on a core)
    worker_gpus: float = 0.0  # GPUs Ray reserves for every actor (the release: 0.05 rollout, 0.1 reanalyze); > 0 with a CUDA device
    max_restarts: int = 10  # times Ray restarts a rollout or reanalyze actor that died before the run gives up


@dataclass(frozen=True)
class Config:
    seed: int = 0  # the one seed every generator of the run derives from
    device: str = "cpu"  # torch device of the model, search and learner
    discount: float = 0.99875  # discount of one environment step, shared by every task; a decision's is discount ** env.action_repeat
    env: EnvConfig = field(default_factory=EnvConfig)  # tasks and environment copies
    model: ModelConfig = field(default_factory=ModelConfig)  # the world model
    search: SearchConfig = field(default_factory=SearchConfig)  # the acting search
    replay: ReplayConfig = field(default_factory=ReplayConfig)  # replay buffers
    learn: LearnConfig = field(default_factory=LearnConfig)  # targets, losses and optimiser
    train: TrainConfig = field(default_factory=TrainConfig)  # the training loop
    system: SystemConfig = field(default_factory=SystemConfig)  # one process or the Ray pipeline

    @property
    def decision_discount(self) -> float:
        """The discount of one decision: `discount` (per environment step) to the action repeat."""
        return self.discount ** self.env.action_repeat


def quickstart() -> Config:
    """The `dmc` configuration on a short budget: minutes on a 2-core CPU."""
    base = dmc()
    return replace(
        base,
        learn=dataclasses.replace(base.learn, warmup_steps=1_000, replay_ratio=0.5),
        train=dataclasses.replace(base.train, env_steps_per_task=10_000, eval_interval=5_000,
                                  eval_episodes=2, checkpoint_interval=5_000),
    )


def dmc() -> Config:
    """The configuration `benchmarks/learn_dmc.py` measures on every DMC suite (the field
    defaults): a small model and search that fit a 2-core CPU, action repeat 4."""
    return Config()


def paper() -> Config:
    """The paper's Tables 3 and 4 (HumanoidBench-Hard scale, about 16M parameters)."""
    return Config(
        discount=0.99,
        env=EnvConfig(suite="hb-hard", copies_per_task=4, action_repeat=1),
        model=ModelConfig(hidden=512, blocks=3, head_hidden=512, task_embedding_dim=128,
                          action_embedding_dim=64, value_heads=5, dropout=0.1,
                          projector_hidden=1024, projector_out=512, predictor_hidden=1024,
                          reward_range=(-299.0, 299.0), value_range=(-299.0, 299.0)),
        search=SearchConfig(simulations=32, root_actions=16, root_policy_samples=4, value_min_heads=2),
        learn=LearnConfig(batch_size=512, lr=1e-4, weight_decay=2e-5, unroll=5, td_steps=5,
                          td_bootstrap="search", target_update_interval=200, entropy_coef=5e-3,
                          policy_target="action", reanalyze_simulations=32, value_target="mixed", replay_ratio=0.25),
        train=TrainConfig(env_steps_per_task=1_000_000, eval_interval=50_000,
                          checkpoint_interval=50_000, log_interval=10_000),
    )


PRESETS = {"quickstart": quickstart, "dmc": dmc, "paper": paper}


def preset(name: str) -> Config:
    """The named preset; an unknown name is refused with the closest names."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def replace(cfg: Config, **changes: Any) -> Config:
    return dataclasses.replace(cfg, **changes)


def _suggest(key: str, names: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(names), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Convert `value` to the field type `hint`, or refuse naming `key`."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.startswith("[") else [v for v in value.split(",") if v]
        item_types = typing.get_args(hint)
        if item_types[-1] is Ellipsis:  # tuple[X, ...]: any number of X
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{key}: expected a list, got {value!r}")
            return tuple(_coerce(key, v, item_types[0]) for v in value)
        if not isinstance(value, (list, tuple)) or len(value) != len(item_types):
            raise ConfigError(f"{key}: expected a list of {len(item_types)} values, got {value!r}")
        return tuple(_coerce(key, v, t) for v, t in zip(value, item_types))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported field type {hint}")  # pragma: no cover


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# deleted fields -> the value that behaves as ezm does now: the stored config of an older run
# that kept it loads (evaluate, resume); one that changed it is refused, since this version
# cannot run what it ran (docs/results.md says why each lever was deleted)
RETIRED = {"search.head_draw": "node", "search.root_prior": "uniform", "learn.policy_correction": False,
           "search.root_proposal": "widened", "search.reanalyze_root_uniform": 0.0,
           "search.root_widen_action": 0.0, "model.policy_log_std_max": 2.0}


def _matches_retired(name: str, value: Any) -> bool:
    """Whether `value` (typed, from a stored config, or a string, from an override) is the one
    value a deleted setting may still take: `model.policy_log_std_max=2` reads as 2.0."""
    try:
        return _coerce(name, value, type(RETIRED[name])) == RETIRED[name]
    except ConfigError:
        return False


def merge(cfg: Any, changes: dict[str, Any], prefix: str = "") -> Any:
    """Return `cfg` with the nested dict `changes` applied, checking every key and type."""
    if not isinstance(changes, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {changes!r}")
    hints = _hints(type(cfg))
    updates = {}
    for key, value in changes.items():
        name = f"{prefix}{key}"
        if name in RETIRED:
            if _matches_retired(name, value):
                continue
            raise ConfigError(f"{name}={value!r} is a deleted setting (see docs/results.md): this version "
                              f"runs only what {name}={RETIRED[name]!r} ran")
        if key not in hints:
            raise ConfigError(f"unknown config key {name!r}{_suggest(str(key), hints)}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            updates[key] = merge(current, value, prefix=f"{name}.")
        else:
            updates[key] = _coerce(name, value, hints[key])
    return dataclasses.replace(cfg, **updates)


def parse_overrides(items: typing.Sequence[str]) -> dict[str, Any]:
    """Turn `["learn.lr=1e-3", "seed=3"]` into a nested dict (values stay strings)."""
    nested: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with an earlier one")
        node[parts[-1]] = value.strip()
    return nested


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), for YAML, JSON and checkpoints."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
    return data or {}


def build(preset_name: str = "dmc", config_file: str | Path | None = None,
          overrides: typing.Sequence[str] = ()) -> Config:
    """Preset, then the YAML file, then the command-line overrides."""
    cfg = preset(preset_name)
    if config_file is not None:
        cfg = merge(cfg, load_yaml(config_file))
    return validate(merge(cfg, parse_overrides(overrides)))


VALUE_TARGETS = ("mixed", "rule", "td")
POLICY_TARGETS = ("action", "improved_1d", "improved")
TD_BOOTSTRAPS = ("search", "mean")
BACKENDS = ("single", "ray")


AT_LEAST = {  # field -> the smallest value any run can use
    "env.copies_per_task": 1, "env.action_repeat": 1, "env.sim_workers": 0,
    "model.hidden": 1, "model.blocks": 0, "model.head_hidden": 1, "model.task_embedding_dim": 1,
    "model.action_embedding_dim": 1, "model.value_heads": 1,
    "model.projector_hidden": 1, "model.projector_out": 1, "model.predictor_hidden": 1, "model.support_bins": 2,
    "search.simulations": 1, "search.root_actions": 1, "search.child_actions": 1, "search.c_visit": 0.0,
    "search.value_min_heads": 1, "search.gumbel_scale": 0.0,
    "replay.capacity_per_task": 1, "replay.priority_alpha": 0.0, "replay.priority_beta": 0.0,
    "learn.batch_size": 1, "learn.unroll": 1, "learn.td_steps": 1,
    "learn.weight_decay": 0.0, "learn.reward_coef": 0.0, "learn.value_coef": 0.0, "learn.policy_coef": 0.0,
    "learn.consistency_coef": 0.0, "learn.path_coef": 0.0, "learn.entropy_coef": 0.0,
    "learn.latent_grad_scale": 0.0, "learn.target_update_interval": 1, "learn.rule_switch_updates": 0,
    "learn.rule_age": 0, "learn.reanalyze_simulations": 1, "learn.warmup_steps": 0,
    "learn.grad_similarity_interval": 0,
    "train.env_steps_per_task": 1, "train.eval_interval": 1, "train.eval_episodes": 1,
    "train.checkpoint_interval": 1, "train.log_interval": 1,
    "system.rollout_workers": 1, "system.reanalyze_workers": 1, "system.queue_size": 1,
    "system.broadcast_interval": 1, "system.worker_threads": 1, "system.worker_cpus": 0.0,
    "system.worker_gpus": 0.0, "system.max_restarts": 0,
}
POSITIVE = ("search.root_widen", "search.eval_root_widen", "search.c_scale", "learn.lr", "learn.grad_clip",
            "learn.replay_ratio", "model.policy_init_std")  # fields that must be > 0


def _field(cfg: Config, name: str) -> Any:
    value: Any = cfg
    for part in name.split("."):
        value = getattr(value, part)
    return value


def _kind(value: Any) -> str:
    return "an integer" if isinstance(value, int) else "a finite number"


def _range_problems(cfg: Config) -> list[str]:
    """Counts, sizes, rates and coefficients outside the range any run can use."""
    problems = []
    for name, low in AT_LEAST.items():
        value = _field(cfg, name)
        if not (value >= low and math.isfinite(value)):
            problems.append(f"{name} must be {_kind(value)} >= {low}, got {value}")
    for name in POSITIVE:
        value = _field(cfg, name)
        if not 0.0 < value < math.inf:
            problems.append(f"{name} must be positive (a finite number > 0), got {value}")
    dropout, warmup, final = cfg.model.dropout, cfg.learn.lr_warmup, cfg.learn.lr_final
    for name, value, within, interval in (
            ("model.dropout", dropout, 0.0 <= dropout < 1.0, "[0, 1)"),
            ("search.root_uniform", cfg.search.root_uniform, 0.0 <= cfg.search.root_uniform <= 1.0, "[0, 1]"),
            ("search.eval_root_uniform", cfg.search.eval_root_uniform, 0.0 <= cfg.search.eval_root_uniform <= 1.0,
             "[0, 1]"),
            ("learn.lr_warmup", warmup, 0.0 <= warmup <= 1.0, "[0, 1]"),
            ("learn.lr_final", final, 0.0 <= final <= 1.0, "[0, 1] (a fraction of learn.lr)")):
        if not within:
            problems.append(f"{name} must lie in {interval}, got {value}")
    if not 0.0 < cfg.discount <= 1.0:
        problems.append(f"discount must lie in (0, 1], got {cfg.discount}")
    if not 1 <= cfg.search.root_policy_samples <= cfg.search.root_actions:
        problems.append(f"search.root_policy_samples must lie in [1, search.root_actions = "
                        f"{cfg.search.root_actions}], got {cfg.search.root_policy_samples}")
    return problems


def _device_problem(device: str) -> str | None:
    """Why `device` cannot hold a model on this machine, or None where it can."""
    import torch  # here, not at the top: `ezm --help` must not wait for torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        return f"device must be cpu, cuda, cuda:N or mps, got {device!r}"
    if parsed.type == "cpu":
        return None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return (f"device {device!r}: CUDA is not available here (torch {torch.__version__}, "
                    f"CUDA build {torch.version.cuda or 'none'}); use device=cpu")
        if (parsed.index or 0) >= count:
            return f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        return None
    if parsed.type == "mps":
        available = torch.backends.mps.is_available()
        return None if available else f"device {device!r}: MPS is not available here; use device=cpu"
    return f"device must be cpu, cuda, cuda:N or mps, got {device!r}"


def _system_problems(cfg: Config) -> list[str]:
    """Ray settings that cannot be arranged: copies that do not split evenly over the rollout
    workers, a lockstep of several workers, gradient measurements the asynchronous learner does
    not take, a CUDA device without a GPU share for the actors."""
    system, problems = cfg.system, []
    if system.rollout_workers >= 1 and cfg.env.copies_per_task % system.rollout_workers:
        problems.append(f"env.copies_per_task ({cfg.env.copies_per_task}) must be a multiple of "
                        f"system.rollout_workers ({system.rollout_workers}): every worker steps as many copies of every task")
    if system.lockstep and (system.rollout_workers, system.reanalyze_workers) != (1, 1):
        problems.append(f"system.lockstep=true runs one rollout and one reanalyze worker (the single process's "
                        f"order), got system.rollout_workers={system.rollout_workers} and "
                        f"system.reanalyze_workers={system.reanalyze_workers}")
    if system.backend == "ray" and not system.lockstep and cfg.learn.grad_similarity_interval > 0:
        problems.append("learn.grad_similarity_interval > 0 with system.backend=ray needs system.lockstep=true "
                        "(the asynchronous learner does not measure gradients)")
    if system.backend == "ray" and cfg.device.startswith("cuda") and system.worker_gpus <= 0:
        problems.append(f"device {cfg.device!r} with system.backend=ray needs system.worker_gpus > 0 "
                        f"(the GPU share of every actor, e.g. 0.1)")
    return problems


def validate(cfg: Config) -> Config:
    """Refuse field values that no run can use, naming every offending field; returns cfg."""
    problems = _range_problems(cfg)
    for name, value, choices in (("learn.value_target", cfg.learn.value_target, VALUE_TARGETS),
                                 ("learn.policy_target", cfg.learn.policy_target, POLICY_TARGETS),
                                 ("learn.td_bootstrap", cfg.learn.td_bootstrap, TD_BOOTSTRAPS),
                                 ("system.backend", cfg.system.backend, BACKENDS)):
        if value not in choices:
            problems.append(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    if cfg.model.policy_init_std > 0.0 and not (
            -10.0 <= cfg.model.policy_log_std_min < math.log(cfg.model.policy_init_std) < 2.0):
        problems.append(f"model.policy_log_std_min must lie in [-10, log(model.policy_init_std)) and "
                        f"policy_init_std below e^2, got {cfg.model.policy_log_std_min} and {cfg.model.policy_init_std}")
    for name, (low, high) in (("model.reward_range", cfg.model.reward_range),
                              ("model.value_range", cfg.model.value_range)):
        if not low < high:
            problems.append(f"{name} must be [low, high] with low < high, got [{low}, {high}]")
    for pair in cfg.learn.grad_similarity_pairs:
        names = pair.split("~")
        if len(names) != 2 or not all(names) or names[0] == names[1]:
            problems.append(f"learn.grad_similarity_pairs: each pair must be two different tasks "
                            f"as 'taskA~taskB', got {pair!r}")
    if cfg.learn.grad_similarity_interval > 0 and not cfg.learn.grad_similarity_pairs:
        problems.append("learn.grad_similarity_interval > 0 needs learn.grad_similarity_pairs "
                        "(e.g. walker-walk~walker-run)")
    problems += _system_problems(cfg)
    device = _device_problem(cfg.device)
    if device is not None:
        problems.append(device)
    if problems:
        raise ConfigError("; ".join(problems))
    return cfg


def validate_tasks(cfg: Config, num_tasks: int) -> None:
    """Refuse settings that the suite's task count rules out (checked where tasks are resolved)."""
    if cfg.replay.independent and cfg.learn.batch_size < num_tasks:
        raise ConfigError(f"learn.batch_size must be >= the number of tasks ({num_tasks} in "
                          f"{cfg.env.suite!r}) with replay.independent=true, got {cfg.learn.batch_size}")
    rows = num_tasks * cfg.env.copies_per_task
    if cfg.env.sim_workers > rows:
        raise ConfigError(f"env.sim_workers must be <= the number of environment rows ({num_tasks} tasks x "
                          f"{cfg.env.copies_per_task} copies = {rows}), so that every worker steps one at least, "
                          f"got {cfg.env.sim_workers}")


def save(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict (a config as `to_dict` writes it) as {dotted name: value}."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def absent_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The dotted fields of the config tree that the nested dict `data` lacks (fields added
    after a run's config file was written), with the values they take: the defaults."""
    given = flatten(data)
    return {name: value for name, value in flatten(to_dict(Config())).items() if name not in given}


def from_dict(data: dict[str, Any]) -> Config:
    """Inverse of `to_dict` (every key and value checked)."""
    return validate(merge(Config(), data))

