"""Method weights on disk: safetensors with JSON metadata, written atomically, loaded with a shape check.

Shared by every learned plugin so that a wrong file gets the same one-line error everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .errors import SRBenchError


def save_weights(path: Path, state: dict[str, torch.Tensor], meta: dict) -> None:
    """Atomic safetensors write with JSON-encoded metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    tmp.replace(path)


def require_checkpoint(path) -> Path:
    """``path`` as a Path when it is a file, else the one-line error every command gives for a missing checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise SRBenchError(f"{path}: checkpoint not found")
    return path


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of a safetensors file, or a one-line error naming it."""
    path = require_checkpoint(path)
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        return load_file(str(path)), meta
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise SRBenchError(f"{path}: cannot read safetensors weights ({type(exc).__name__}: {str(exc)[:120]})") from None


def load_into(net: torch.nn.Module, state: dict, path: Path, method: str, preset: str) -> None:
    """Strict load with a one-line user error when the weights belong to another architecture."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        example = (missing or unexpected or mismatched)[0]
        raise SRBenchError(f"{path}: weights do not fit {method} preset {preset!r} ({len(missing)} missing, "
                           f"{len(unexpected)} unexpected, {len(mismatched)} mis-shaped tensors, e.g. {example})")
    net.load_state_dict(state)


def load_network(net: torch.nn.Module, path: Path, method: str, preset: str, device) -> dict:
    """Load a method's safetensors into ``net``, move it to ``device`` in eval mode; returns the metadata."""
    state, meta = load_weights(path)
    load_into(net, state, path, method, preset)
    net.to(device).eval()
    return meta
