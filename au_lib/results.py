"""Result files: the one format every experiment writes and the one loader every chapter reads.

A result file is JSON with ``config``, ``metrics``, ``provenance``, a ``key`` (hash of the config, so a
re-run with the same config can reuse it) and a ``checksum`` over the rest, so a truncated or edited
file is detected instead of being read as data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from au_lib.provenance import Provenance, _json_default, atomic_write_json

FORMAT_VERSION = 1


class CorruptResultError(ValueError):
    """A result file exists but cannot be trusted (unreadable JSON, bad checksum, wrong format)."""


def config_key(config: dict) -> str:
    """Stable 16-hex-digit hash of a JSON-serialisable config."""
    text = json.dumps(config, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _checksum(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def save_result(path: str | Path, config: dict, metrics: dict, provenance: Provenance | dict,
                extra: dict | None = None) -> Path:
    """Write a result file atomically and return its path."""
    payload: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "key": config_key(config),
        "config": config,
        "metrics": metrics,
        "provenance": provenance,
        "extra": extra or {},
    }
    payload = json.loads(json.dumps(payload, default=_json_default))  # normalise types before hashing
    payload["checksum"] = _checksum(payload)
    return atomic_write_json(path, payload)


def load_result(path: str | Path) -> dict:
    """Read and verify a result file.

    Raises:
        FileNotFoundError: if it does not exist.
        CorruptResultError: naming the file, if it is unreadable or fails its checksum.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CorruptResultError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise CorruptResultError(f"{path}: not text (binary garbage at byte {exc.start})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise CorruptResultError(f"{path}: not a result file of format {FORMAT_VERSION}")
    stored = payload.pop("checksum", None)
    if stored != _checksum(payload):
        raise CorruptResultError(f"{path}: checksum mismatch (file truncated or edited)")
    payload["path"] = str(path)
    return payload


def reusable(path: str | Path, config: dict) -> dict | None:
    """Return the stored result at ``path`` if it is valid and was made with ``config``, else None.

    A corrupt file is reported (warning) and treated as missing, so the caller recomputes it.
    """
    import warnings

    path = Path(path)
    if not path.exists():
        return None
    try:
        res = load_result(path)
    except CorruptResultError as exc:
        warnings.warn(f"recomputing: {exc}", stacklevel=2)
        return None
    return res if res.get("key") == config_key(config) else None


def provenance_line(result: dict) -> str:
    """One line describing where a loaded result came from (for captions)."""
    p = result.get("provenance", {})
    return (f"{Path(result.get('path', '?')).name}: profile={p.get('profile')} · commit={p.get('commit')} · "
            f"device={p.get('device')} · wall={p.get('wall_time_s', 0):.0f}s · {p.get('date')}")
