"""Checkpoints that are written atomically, checked on load and never run pickled code.

File layout: the line `ezm-checkpoint`, one line of JSON header (format, version, config,
payload size, SHA-256) and the payload, a `torch.save` of the state. The hash covers the
header fields and the payload, so a truncated or corrupted file is refused, and the payload
is read with `torch.load(weights_only=True)`, so states may hold only tensors, numbers,
strings, lists, tuples and dicts (`rng_state` puts random generators in that form).

`save_checkpoint` writes a temporary file in the same folder, syncs it, keeps the file it
replaces as `previous_path(path)` and renames the new one into place, so `path` always holds
a complete checkpoint, even when the process is killed while writing.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ezm.config import flatten

FORMAT = "ezm-checkpoint"
VERSION = 4  # 2: discount per environment step, observation statistics in the model; 3: tanh-squashed policy; 4: value heads stored as one grouped ensemble
_MAGIC = (FORMAT + "\n").encode()
_HEADER_LIMIT = 1 << 20  # bytes; a longer first line is not an ezm header


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the one-line message names the file."""


def previous_path(path: str | Path) -> Path:
    """Where `save_checkpoint(path, ...)` keeps the checkpoint it replaced."""
    path = Path(path)
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def save_checkpoint(path: str | Path, state: dict, config: dict) -> None:
    """Write `state` (tensors, numbers, strings, lists, dicts) with the run's `config` dict."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    fields = {"format": FORMAT, "version": VERSION, "config": _plain_json(config),
              "payload_bytes": len(payload)}
    header = dict(fields, sha256=_digest(fields, payload))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                     delete=False) as tmp:
        try:
            tmp.write(_MAGIC)
            tmp.write(json.dumps(header).encode() + b"\n")
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    if path.exists():
        _keep_previous(path)
    os.replace(tmp.name, path)
    _sync_folder(path.parent)


def load_checkpoint(path: str | Path, config: dict | None = None, ignore: Iterable[str] = (),
                    defaults: dict | None = None, retired: dict[str, Any] | None = None) -> dict:
    """The state saved at `path`. With `config`, the checkpoint's config must equal it except
    for keys under the dotted prefixes in `ignore` (e.g. "train.env_steps_per_task"). A key the
    checkpoint lacks (a field added after it was written) counts at its value in `defaults`; a
    dotted key in `retired` (a field deleted since) is not compared when the checkpoint holds
    the value given there (the one that behaves as the code does now)."""
    path = Path(path)
    header, payload = _read(path)
    if config is not None:
        saved = {**flatten(_plain_json(defaults or {})), **flatten(header["config"])}
        saved = {k: v for k, v in saved.items() if k not in (retired or {}) or v != retired[k]}
        _compare(path, saved, flatten(_plain_json(config)), tuple(ignore))
    try:
        return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as err:  # whatever the unpickler refuses or fails on, the file is unusable
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path}: payload refused or unreadable ({reason})") from None


def checkpoint_config(path: str | Path) -> dict:
    """The config dict a checkpoint was written with (the whole file is verified)."""
    return _read(Path(path))[0]["config"]


def _read(path: Path) -> tuple[dict, bytes]:
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_MAGIC))
            line = f.readline(_HEADER_LIMIT)
            payload = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: no such file") from None
    except OSError as err:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({err.strerror})") from None
    if magic != _MAGIC:
        if _MAGIC.startswith(magic):
            raise CheckpointError(f"checkpoint {path}: truncated (ends inside the header)")
        raise CheckpointError(f"checkpoint {path}: not an ezm checkpoint")
    if not line.endswith(b"\n"):
        raise CheckpointError(f"checkpoint {path}: truncated (ends inside the header)")
    try:
        header = json.loads(line)
        fields = {k: header[k] for k in ("format", "version", "config", "payload_bytes")}
        digest = header["sha256"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"checkpoint {path}: corrupt header") from None
    if fields["format"] != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not an ezm checkpoint")
    if fields["version"] != VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {fields['version']}, "
                              f"this ezm reads version {VERSION} (written by another ezm: resume or "
                              f"evaluate it with that ezm, or train anew)")
    if len(payload) < fields["payload_bytes"]:
        raise CheckpointError(f"checkpoint {path}: truncated ({len(payload)} of "
                              f"{fields['payload_bytes']} payload bytes)")
    if len(payload) != fields["payload_bytes"] or _digest(fields, payload) != digest:
        raise CheckpointError(f"checkpoint {path}: corrupt (SHA-256 mismatch)")
    return fields, payload


def _digest(fields: dict, payload: bytes | memoryview) -> str:
    sha = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    sha.update(payload)
    return sha.hexdigest()


def _plain_json(config: dict) -> dict:
    """The config as JSON reads it back (tuples become lists), so both sides compare equal."""
    return json.loads(json.dumps(config))


def _compare(path: Path, saved: dict, run: dict, ignore: tuple[str, ...]) -> None:
    """Refuse when the flat configs `saved` and `run` differ outside `ignore`, naming the keys."""
    missing = object()
    differ = [key for key in [*run, *(k for k in saved if k not in run)]
              if saved.get(key, missing) != run.get(key, missing)
              and not any(key == p or key.startswith(p + ".") for p in ignore)]
    if differ:
        shown = "; ".join(f"{key}: checkpoint {saved.get(key, '(absent)')!r}, "
                          f"run {run.get(key, '(absent)')!r}" for key in differ[:3])
        more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
        raise CheckpointError(f"checkpoint {path}: config differs from this run: {shown}{more}")


def _keep_previous(path: Path) -> None:
    """Hard-link (or copy) `path` to its previous name, leaving `path` itself in place."""
    previous = previous_path(path)
    staging = previous.with_name(f".{previous.name}.tmp")
    staging.unlink(missing_ok=True)
    try:
        os.link(path, staging)
    except OSError:
        staging.write_bytes(path.read_bytes())
    os.replace(staging, previous)


def _sync_folder(folder: Path) -> None:
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------- random generators
def rng_state(generator: np.random.Generator | None = None,
              torch_generators: dict[str, torch.Generator] | None = None) -> dict:
    """Python `random`, numpy's global generator, torch's CPU (and CUDA) generators, and
    optionally a numpy `generator` and named torch generators, as plain data."""
    state = {
        "python": _to_plain(random.getstate()),
        "numpy": _to_plain(np.random.get_state(legacy=False)),
        "torch": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "torch_generators": {name: g.get_state() for name, g in (torch_generators or {}).items()},
    }
    if generator is not None:
        state["generator"] = _to_plain(generator.bit_generator.state)
    return state


def set_rng_state(state: dict, generator: np.random.Generator | None = None,
                  torch_generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of `rng_state` (pass the same numpy generator and torch generator names)."""
    random.setstate(_from_plain(state["python"]))
    np.random.set_state(_from_plain(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if state["torch_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
    for name, g in (torch_generators or {}).items():
        g.set_state(state["torch_generators"][name])
    if generator is not None:
        generator.bit_generator.state = _from_plain(state["generator"])


def _to_plain(value: Any) -> Any:
    """numpy arrays become {"ndarray": list, "dtype": str}, tuples {"tuple": list}."""
    if isinstance(value, np.ndarray):
        return {"ndarray": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, tuple):
        return {"tuple": [_to_plain(v) for v in value]}
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"ndarray", "dtype"}:
        return np.array(value["ndarray"], dtype=np.dtype(value["dtype"]))
    if isinstance(value, dict) and set(value) == {"tuple"}:
        return tuple(_from_plain(v) for v in value["tuple"])
    if isinstance(value, dict):
        return {k: _from_plain(v) for k, v in value.items()}
    return value
