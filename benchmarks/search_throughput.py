"""Roots searched per second, and the share of search time spent inside the model.

    python benchmarks/search_throughput.py [--devices cpu,cuda] [--presets dmc,paper] [--batches 1,16,256,1024]
                                           [--budget 32x16 | --budget preset] [--threads T] [--out NAME.json]

The acting search (`ezm.search.search`, Gumbel noise on) of the `dmc` preset's model (obs 24,
act 6, 3 tasks) and of the `paper` preset's model (a 14-task suite: obs 177, act 61), with
--budget simulations x sampled root actions (default 32 x 16, the paper's; `preset` takes each
preset's own: dmc 8 x 8, paper 32 x 16), over batches of B roots with random observations.
roots_per_s is timed on the bare model; a second set of repeats wraps `model.initial` /
`model.recurrent` in a timing proxy (synchronising CUDA around every call) for
model_call_fraction = time inside those calls / wall time of that search. Each number is
the median over repeats (fewer repeats for the big cases). Other processes may share the
machine: the 1-minute load average before and after every case is recorded beside it.
Writes benchmarks/results/search_throughput.json (search_throughput_cuda.json with only cuda, or
--out NAME.json).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
from _meta import meta
from ezm.config import dmc, paper
from ezm.model import WorldModel, count_parameters
from ezm.search import search

RESULTS = Path(__file__).parent / "results"
# preset -> (config, tasks, obs size, action sizes of the tasks)
PRESETS = {
    "dmc": (dmc, 3, 24, (6, 6, 1)),
    "paper": (paper, 14, 177, (61,) * 14),
}


class TimedModel:
    """Forwards the search protocol to `model`, adding up the seconds spent inside it."""

    def __init__(self, model: WorldModel, sync: Callable[[], None]):
        self.model, self.sync, self.seconds = model, sync, 0.0

    def _timed(self, call: Callable[..., Any], *args: torch.Tensor | None) -> Any:
        self.sync()
        start = time.perf_counter()
        out = call(*args)
        self.sync()
        self.seconds += time.perf_counter() - start
        return out

    def initial(self, obs: torch.Tensor, task: torch.Tensor) -> Any:
        return self._timed(self.model.initial, obs, task)

    def recurrent(self, latent: torch.Tensor, action: torch.Tensor, task: torch.Tensor,
                  heads: torch.Tensor | None = None) -> Any:
        return self._timed(self.model.recurrent, latent, action, task, heads)


def build(preset: str, device: torch.device, budget: str = "32x16") -> tuple[Any, WorldModel, torch.Tensor, int]:
    """Config, model, task action masks [T, A] and observation size of a preset; `budget` is
    "SIMULATIONSxROOT_ACTIONS" or "preset" (the preset's own search)."""
    make, tasks, obs_size, action_sizes = PRESETS[preset]
    cfg = make()
    if budget != "preset":
        simulations, root_actions = (int(n) for n in budget.split("x"))
        cfg = dataclasses.replace(cfg, search=dataclasses.replace(
            cfg.search, simulations=simulations, root_actions=root_actions,
            root_policy_samples=min(cfg.search.root_policy_samples, root_actions)))
    width = max(action_sizes)
    mask = (torch.arange(width)[None, :] < torch.tensor(action_sizes)[:, None]).float()  # [T, A]
    model = WorldModel(cfg.model, tasks, obs_size, width, mask).to(device).eval()
    return cfg, model, mask.to(device), obs_size


def repeats_for(preset: str, batch: int) -> int:
    if batch >= 1024:
        return 2 if preset == "dmc" else 1
    return 3 if batch >= 256 else 7


def run_case(preset: str, device: torch.device, batch: int, budget: str) -> dict[str, Any]:
    cfg, model, mask, obs_size = build(preset, device, budget)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    timed = TimedModel(model, sync)
    generator = torch.Generator(device="cpu").manual_seed(0)
    task = torch.arange(batch, device=device) % mask.shape[0]  # [B]
    obs = torch.randn(batch, obs_size, generator=generator).to(device)  # [B, O]
    search(timed, obs[:16], task[:16], mask[task[:16]], cfg.search, cfg.decision_discount, generator, True)  # warm-up

    def seconds(searched: Any) -> float:
        sync()
        start = time.perf_counter()
        search(searched, obs, task, mask[task], cfg.search, cfg.decision_discount, generator, True)
        sync()
        return time.perf_counter() - start

    load = [os.getloadavg()[0]]
    walls, fractions = [], []
    for _ in range(repeats_for(preset, batch)):
        walls.append(seconds(model))
        timed.seconds = 0.0
        proxied = seconds(timed)
        fractions.append(timed.seconds / proxied)
    load.append(os.getloadavg()[0])
    wall = statistics.median(walls)
    return {"preset": preset, "device": device.type, "batch": batch, "simulations": cfg.search.simulations,
            "sampled_actions": cfg.search.root_actions, "roots_per_s": round(batch / wall, 2),
            "model_call_fraction": round(statistics.median(fractions), 4), "seconds_per_search": round(wall, 4),
            "repeats": len(walls), "load_average_1min": [round(x, 2) for x in load]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--presets", default="dmc,paper")
    parser.add_argument("--batches", default="1,16,256,1024")
    parser.add_argument("--budget", default="32x16", help="SIMULATIONSxROOT_ACTIONS, or preset")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--out", default=None, help="result file name under benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device(name) for name in args.devices.split(",")]
    results = []
    for device in devices:
        for preset in args.presets.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                result = run_case(preset, device, batch, args.budget)
                results.append(result)
                print(json.dumps(result), flush=True)
    paper_params = count_parameters(build("paper", torch.device("cpu"))[1])
    report = {**meta(), "torch_threads": torch.get_num_threads(), "budget": args.budget,
              "paper_preset_params": paper_params, "results": results}
    name = args.out or ("search_throughput_cuda.json" if [d.type for d in devices] == ["cuda"]
                        else "search_throughput.json")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
