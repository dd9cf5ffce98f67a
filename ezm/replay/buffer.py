"""Prioritised sequence replay: one ring lane per environment row, one buffer per task.

The E = T * N environment rows are task-major (row e belongs to task e // N) and each row
writes to its own lane, so consecutive rows of a lane are consecutive states of one
environment. A row is a state: its observation, the action taken there, the reward and
termination that action led to, and what the acting search said about it. When an episode
ends, one extra `last` row holds the final observation (no action, priority 0).

Sampling draws sequence starts by priority (alpha), without replacement, and gathers
S = unroll + td_steps + 1 consecutive rows of each start's lane. Independent mode (IER) draws
floor or ceil of B / T starts from every task, prioritised within the task; shared mode (the
-IER ablation) draws B starts from all rows pooled. New rows enter at their task's current
maximum priority. Importance weights (N P)^-beta are normalised within each task's share and
floored at 0.1. Everything is tensor indexing: no Python loop over rows, lanes or tasks.

Memory: 34 + 4 O + 4 A + 4 K + 2 K A bytes per row (obs, action, policy float32; candidates
float16; reward, root_value, priority float32; episode, env_step int64; terminal, last bool).
With O = 151, A = 61, K = 16: 2,898 bytes, so 100k rows a task take 290 MB.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ezm.config import ReplayConfig


class Batch(NamedTuple):
    """B sampled sequences of S consecutive rows. Rows where `valid` is False are not part of
    the start row's episode (or were never written): their reward, terminal and last are zero
    and the rest holds unrelated data that must be masked."""
    obs: torch.Tensor         # [B, S, O] float32
    action: torch.Tensor      # [B, S, A] float32, the action taken at the row (0 on `last` rows)
    reward: torch.Tensor      # [B, S] float32, reward of that action
    terminal: torch.Tensor    # [B, S] bool, that action led to a true terminal state
    valid: torch.Tensor       # [B, S] bool, the row exists and is in row 0's episode
    last: torch.Tensor        # [B, S] bool, the episode's final observation (valid, no action)
    root_value: torch.Tensor  # [B, S] float32, the acting search's root value
    policy: torch.Tensor      # [B, S, K] float32, the acting search's improved policy
    candidates: torch.Tensor  # [B, S, K, A] float32, the candidate actions of that policy
    env_step: torch.Tensor    # [B] int64, global env-step counter when the start row was written
    task: torch.Tensor        # [B] int64
    weight: torch.Tensor      # [B] float32, importance weight in [0.1, 1], max 1 within each task
    index: torch.Tensor       # [B] int64, flat row index e * L + l, for `update_priorities`


MIN_WEIGHT = 0.1  # floor of the normalised importance weights (both releases)


class Replay:
    """Ring lanes of rows for E = tasks * copies environment rows, L = ceil(capacity / copies)
    rows a lane. Storage lives on `device` (the CPU unless asked otherwise)."""

    def __init__(self, cfg: ReplayConfig, num_tasks: int, copies: int, obs_size: int,
                 action_size: int, num_candidates: int, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.num_tasks, self.copies = num_tasks, copies
        self.lane = math.ceil(cfg.capacity_per_task / copies)
        E, L, O, A, K = num_tasks * copies, self.lane, obs_size, action_size, num_candidates
        kw = dict(device=device)
        self.obs = torch.zeros(E, L, O, **kw)                                # [E, L, O]
        self.action = torch.zeros(E, L, A, **kw)                             # [E, L, A]
        self.reward = torch.zeros(E, L, **kw)                                # [E, L]
        self.terminal = torch.zeros(E, L, dtype=torch.bool, **kw)            # [E, L]
        self.last = torch.zeros(E, L, dtype=torch.bool, **kw)                # [E, L]
        self.episode = torch.full((E, L), -1, dtype=torch.int64, **kw)       # [E, L]
        self.env_step = torch.zeros(E, L, dtype=torch.int64, **kw)           # [E, L]
        self.root_value = torch.zeros(E, L, **kw)                            # [E, L]
        self.policy = torch.zeros(E, L, K, **kw)                             # [E, L, K]
        self.candidates = torch.zeros(E, L, K, A, dtype=torch.float16, **kw)  # [E, L, K, A]
        self.priority = torch.zeros(E, L, **kw)                              # [E, L]
        self.head = torch.zeros(E, dtype=torch.int64, **kw)                  # [E] next row to write
        self.filled = torch.zeros(E, dtype=torch.int64, **kw)                # [E] rows stored
        self.current_episode = torch.arange(E, **kw)                         # [E] id of the open episode
        self.next_episode = E
        self._rows = torch.arange(E, **kw)                                   # [E]

    # ------------------------------------------------------------------ writing
    def add(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
            terminal: torch.Tensor, root_value: torch.Tensor, policy: torch.Tensor,
            candidates: torch.Tensor, env_step: int, rows: torch.Tensor | None = None) -> None:
        """One row a lane: obs [E, O] is the state the action [E, A] was taken in; reward [E]
        and terminal [E] are what it led to; root_value [E], policy [E, K] and candidates
        [E, K, A] come from the acting search. With `rows` [R] (a rollout worker's slice of
        the env rows) every tensor holds those R rows instead of all E."""
        rows = self._rows if rows is None else rows.to(self.obs.device, torch.int64)
        E, K, A = rows.shape[0], self.policy.shape[2], self.action.shape[2]
        self._check("obs", obs, (E, self.obs.shape[2]))
        self._check("action", action, (E, A))
        self._check("reward", reward, (E,))
        self._check("terminal", terminal, (E,))
        self._check("root_value", root_value, (E,))
        self._check("policy", policy, (E, K))
        self._check("candidates", candidates, (E, K, A))
        self._write(rows, obs, action, reward, terminal, root_value, policy, candidates,
                    env_step, last=False, priority=self.entry_priority()[rows])

    def entry_priority(self) -> torch.Tensor:
        """[E] priority of a new row: the current maximum priority of its task (1 while the task
        holds none), so that every new row is sampled soon, as both releases do."""
        per_task = self.priority.view(self.num_tasks, -1).amax(1)             # [T]
        per_task = torch.where(per_task > 0, per_task, torch.ones_like(per_task))
        return per_task.repeat_interleave(self.copies)                        # [E]

    def add_final(self, rows: torch.Tensor, final_obs: torch.Tensor, env_step: int) -> None:
        """The episodes of env rows `rows` [R] ended in observations final_obs [R, O]: write
        one `last` row to those lanes; their next `add` opens a new episode."""
        dev = self.obs.device
        rows = rows.to(dev, torch.int64)
        R, K, A = rows.shape[0], self.policy.shape[2], self.action.shape[2]
        self._check("final_obs", final_obs, (R, self.obs.shape[2]))
        zeros = torch.zeros(R, device=dev)                                    # [R]
        self._write(rows, final_obs, torch.zeros(R, A, device=dev), zeros,
                    torch.zeros(R, dtype=torch.bool, device=dev), zeros,
                    torch.zeros(R, K, device=dev), torch.zeros(R, K, A, device=dev), env_step,
                    last=True, priority=0.0)
        self.open_new_episodes(rows)

    def open_new_episodes(self, rows: torch.Tensor) -> None:
        """The next `add` on env rows `rows` [R] starts a new episode. `add_final` does this;
        call it alone where an episode stops without a final observation, e.g. for every row
        after a resume, whose restarted environments cannot continue the saved episodes."""
        rows = rows.to(self.obs.device, torch.int64)
        self.current_episode[rows] = self.next_episode + torch.arange(len(rows), device=rows.device)
        self.next_episode += len(rows)

    def _write(self, rows, obs, action, reward, terminal, root_value, policy, candidates,
               env_step, last, priority) -> None:
        at = self.head[rows]                                                  # [R]
        self.obs[rows, at] = obs.to(self.obs)
        self.action[rows, at] = action.to(self.action)
        self.reward[rows, at] = reward.to(self.reward)
        self.terminal[rows, at] = terminal.to(self.terminal)
        self.last[rows, at] = last
        self.episode[rows, at] = self.current_episode[rows]
        self.env_step[rows, at] = env_step
        self.root_value[rows, at] = root_value.to(self.root_value)
        self.policy[rows, at] = policy.to(self.policy)
        self.candidates[rows, at] = candidates.to(self.candidates)
        self.priority[rows, at] = priority
        self.head[rows] = (at + 1) % self.lane
        self.filled[rows] = torch.clamp(self.filled[rows] + 1, max=self.lane)

    @staticmethod
    def _check(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
        if tuple(tensor.shape) != shape:
            raise ValueError(f"replay: {name} has shape {tuple(tensor.shape)}, expected {shape}")

    # ------------------------------------------------------------------ sampling
    @property
    def groups(self) -> int:
        """Buffers a batch draws from: one per task (IER), or one pooled buffer (-IER)."""
        return self.num_tasks if self.cfg.independent else 1

    def shares(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """Rows [G] each group (task, or the one pooled buffer) contributes to a batch of
        `batch_size`: floor(B / G) each, and one more for B mod G groups drawn at random, so
        that every task gets B / G rows on average whatever B and G are."""
        groups = self.groups
        if batch_size < groups:
            raise ValueError(f"replay: batch_size {batch_size} is smaller than the {groups} tasks "
                             f"(independent replay takes at least one row from each)")
        share = torch.full((groups,), batch_size // groups, dtype=torch.int64)     # [G]
        share[torch.randperm(groups, generator=generator, device=generator.device)[: batch_size % groups].cpu()] += 1
        return share

    def sample(self, batch_size: int, unroll: int, td_steps: int,
               generator: torch.Generator) -> Batch:
        """Draw `batch_size` sequence starts by priority, without replacement within a group,
        and gather their S = unroll + td_steps + 1 rows. Rows come task-major (see `shares`).
        `generator` must live on the storage device."""
        E, L = self.priority.shape
        groups = self.groups
        share = self.shares(batch_size, generator).to(self.priority.device)  # [G]
        most = int(share.max())
        # lanes fill from position 0 until they wrap: only the first `used` positions can hold rows
        used = int(self.filled.max())
        lanes = E // groups                                                   # lanes a group
        priority = self.priority[:, :used].reshape(groups, lanes * used)      # [G, W]
        scaled = torch.where(priority > 0, priority.pow(self.cfg.priority_alpha),
                             torch.zeros_like(priority))                     # [G, W]
        stored = (priority > 0).sum(1)                                        # [G] rows that can start
        if bool((stored == 0).any()):
            empty = (stored == 0).nonzero().flatten().tolist()
            what = f"task(s) {empty}" if self.cfg.independent else "the buffer"
            raise ValueError(f"replay: {what} hold no rows to sample from")
        if bool((stored < most).any()):
            # a group holds fewer rows than its share: draw with replacement
            pick = torch.multinomial(scaled, most, replacement=True, generator=generator)  # [G, most]
        else:
            # without replacement, as both releases draw: the `most` first of exponential clocks
            # E_i / p_i ring in the order of weighted sampling without replacement
            clocks = torch.empty_like(scaled).exponential_(generator=generator)  # [G, W]
            pick = (scaled / clocks).topk(most, dim=1).indices                # [G, most]
        prob = scaled.gather(1, pick) / scaled.sum(1, keepdim=True)           # [G, most]
        # importance weights (N P)^-beta, normalised within each group and floored at 0.1 (both
        # releases): one rare row cannot shrink the gradient of the rest of the batch
        weight = (stored[:, None].to(prob.dtype) * prob).pow(-self.cfg.priority_beta)  # [G, most]
        keep = torch.arange(most, device=pick.device)[None, :] < share[:, None]  # [G, most]
        weight = weight / weight.masked_fill(~keep, 0).amax(1, keepdim=True)
        weight = weight.clamp(MIN_WEIGHT, 1.0)
        group = torch.arange(groups, device=pick.device)[:, None].expand_as(pick)
        lane_of = group * lanes + pick // used                                # [G, most]
        index = (lane_of * L + pick % used)[keep]                             # [B] flat row e * L + l
        weight = weight[keep]                                                 # [B]

        lane, start = index // L, index % L                                   # [B], [B]
        S = unroll + td_steps + 1
        steps = torch.arange(S, device=index.device)                          # [S]
        at = (start[:, None] + steps) % L                                     # [B, S]
        rows = lane[:, None].expand_as(at)                                    # [B, S]
        written_after = (self.head[lane] - 1 - start) % L                     # [B]
        valid = ((self.episode[rows, at] == self.episode[lane, start][:, None])
                 & (steps <= written_after[:, None]))                         # [B, S]
        return Batch(
            obs=self.obs[rows, at],
            action=self.action[rows, at],
            reward=self.reward[rows, at] * valid,
            terminal=self.terminal[rows, at] & valid,
            valid=valid,
            last=self.last[rows, at] & valid,
            root_value=self.root_value[rows, at],
            policy=self.policy[rows, at],
            candidates=self.candidates[rows, at].float(),
            env_step=self.env_step[lane, start],
            task=lane // self.copies,
            weight=weight,
            index=index,
        )

    def update_priorities(self, index: torch.Tensor, priority: torch.Tensor) -> None:
        """Set the priorities of flat rows index [B] (from `Batch.index`) to priority [B] >= 0.
        `last` rows keep priority 0."""
        dev = self.priority.device
        index, priority = index.to(dev), priority.to(dev, torch.float32)
        if not bool(torch.isfinite(priority).all()) or bool((priority < 0).any()):
            raise ValueError("replay: priorities must be finite and >= 0")
        flat = self.priority.view(-1)                                         # [E L]
        flat[index] = torch.where(self.last.view(-1)[index], torch.zeros_like(priority), priority)

    def priority_quantiles(self, quantiles: tuple[float, ...]) -> torch.Tensor:
        """[T, Q] quantiles of the priorities of every task's rows that can start a sequence
        (pooled over all tasks' rows in shared mode, repeated for every task)."""
        groups = self.groups
        priority = self.priority.view(groups, -1)                             # [G, W]
        q = torch.tensor(quantiles, dtype=priority.dtype, device=priority.device)
        out = torch.nanquantile(priority.masked_fill(priority <= 0, float("nan")), q, dim=1).T  # [G, Q]
        return out.expand(self.num_tasks, -1)

    # ------------------------------------------------------------------ size
    def size_per_task(self) -> torch.Tensor:
        """Rows stored per task [T] (`last` rows included)."""
        return self.filled.view(self.num_tasks, self.copies).sum(1)

    def __len__(self) -> int:
        return int(self.filled.sum())

    # ------------------------------------------------------------------ checkpoints
    _ROWS = ("obs", "action", "reward", "terminal", "last", "episode", "env_step",
             "root_value", "policy", "candidates", "priority")  # [E, L, ...]
    _LANES = ("head", "filled", "current_episode")  # [E]
    _TENSORS = _ROWS + _LANES

    def state_dict(self) -> dict:
        """Plain tensors and numbers; `load_state_dict` restores the buffer exactly. Lanes fill
        from position 0 until they wrap, so only the first `filled.max()` positions of every
        lane were ever written and only those are kept (the rest are as a new buffer holds them)."""
        used = int(self.filled.max())
        state = {name: getattr(self, name)[:, :used].clone() for name in self._ROWS}
        state.update({name: getattr(self, name).clone() for name in self._LANES})
        state.update(next_episode=self.next_episode, lane=self.lane)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict`, compact or holding whole lanes (as written before compaction)."""
        lane = int(state.get("lane", state["obs"].shape[1]))
        if lane != self.lane:
            raise ValueError(f"replay: saved lanes hold {lane} rows, this buffer's {self.lane}")
        for name in self._TENSORS:
            mine, theirs = getattr(self, name), state[name]
            if not self._fits(name, theirs):
                raise ValueError(f"replay: saved {name} is {tuple(theirs.shape)} {theirs.dtype}, "
                                 f"this buffer holds {tuple(mine.shape)} {mine.dtype}")
        for name in self._ROWS:
            mine, theirs = getattr(self, name), state[name]
            used = theirs.shape[1]
            mine[:, :used] = theirs
            mine[:, used:] = -1 if name == "episode" else 0  # never written, as in a new buffer
        for name in self._LANES:
            getattr(self, name).copy_(state[name])
        self.next_episode = int(state["next_episode"])

    def _fits(self, name: str, saved: torch.Tensor) -> bool:
        """`saved` can be restored into tensor `name`: the same dtype and shape, except that a
        row tensor may hold only the first positions of every lane."""
        mine = getattr(self, name)
        if saved.dtype != mine.dtype or saved.dim() != mine.dim():
            return False
        if name in self._LANES:
            return saved.shape == mine.shape
        return (saved.shape[0] == mine.shape[0] and saved.shape[2:] == mine.shape[2:]
                and saved.shape[1] <= mine.shape[1])
