"""The results store of one search run: crash-safe, resumable, one folder per run.

Layout of RUN_DIR:
  metadata.json  run settings, rewritten atomically
  trials.jsonl   one JSON object per finished trial, appended and fsynced one line at a time
  trials.csv     flattened export, rewritten atomically on demand

Appends are the only way trials.jsonl grows, so a crash (even SIGKILL) can at worst leave a
truncated last line. Readers skip such a tail and the next append cuts it off before writing,
so the file never holds garbage between valid lines; garbage anywhere else is real corruption.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from nas_tune.errors import UserError
from nas_tune.io import atomic_write_json, atomic_write_text, read_json

STATUSES = ("completed", "failed")


@dataclass
class TrialRecord:
    """One finished evaluation. `metrics` holds objectives and raw metric values (NaN allowed)."""

    trial_id: int
    config: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "completed"
    error_message: str | None = None
    fidelity: float = 1.0
    worker: str = ""
    start_time: float = 0.0  # unix seconds
    end_time: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        clashes = set(self.metrics) & _BASE_COLUMNS
        if clashes:
            raise ValueError(f"metric names {sorted(clashes)} clash with trial table columns")


_BASE_COLUMNS = {f.name for f in fields(TrialRecord)} | {"duration"}
_FRAME_COLUMNS = ["trial_id", "status", "fidelity", "worker", "start_time", "end_time", "duration", "error_message"]

# One lock per trials file, shared by every store object of this process that points at it.
_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path.resolve(), threading.Lock())


def _json_default(value: Any) -> Any:
    """Search spaces often sample numpy scalars/arrays; store them as plain JSON values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encode(record: TrialRecord) -> bytes:
    return (json.dumps(asdict(record), default=_json_default) + "\n").encode("utf-8")


def _decode(line: bytes) -> TrialRecord:
    """Parse one line; ValueError for anything that is not a complete, valid record."""
    data = json.loads(line.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    try:
        return TrialRecord(**data)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc


def _last_line_start(handle: BinaryIO, end: int) -> int:
    """Offset where the last line starts, ignoring a newline that ends the file."""
    position, chunk = end - 1, 4096
    while position > 0:
        begin = max(0, position - chunk)
        handle.seek(begin)
        newline = handle.read(position - begin).rfind(b"\n")
        if newline >= 0:
            return begin + newline + 1
        position = begin
    return 0


def _repair_tail(handle: BinaryIO) -> None:
    """Make the file end with a complete, valid line, the same way records() reads it: a valid
    unterminated last line gets its newline, anything else after the last good line is cut."""
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return
    start = _last_line_start(handle, end)
    handle.seek(start)
    tail = handle.read()
    try:
        _decode(tail.removesuffix(b"\n"))
    except ValueError:
        handle.truncate(start)
        return
    if not tail.endswith(b"\n"):
        handle.write(b"\n")


class ResultsStore:
    """Reads and writes one run folder. The search driver never appends a completed trial id
    twice; a resumed run may append a second record for an id that failed or ran at another
    fidelity, so records() keeps every line and latest_by_trial() gives the last one per id."""

    def __init__(self, run_dir: str | Path):
        self._run_dir = Path(run_dir)
        self._trials_path = self._run_dir / "trials.jsonl"
        self._metadata_path = self._run_dir / "metadata.json"

    @property
    def run_dir(self) -> Path:
        return self._run_dir

    @property
    def trials_path(self) -> Path:
        return self._trials_path

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        atomic_write_json(self._metadata_path, metadata)

    def read_metadata(self) -> dict[str, Any] | None:
        if not self._metadata_path.exists():
            return None
        try:
            metadata = read_json(self._metadata_path)
        except ValueError as exc:
            raise UserError(
                f"{self._metadata_path} is not valid JSON ({exc}); restore or delete it, or start a new run folder."
            ) from exc
        if not isinstance(metadata, dict):
            raise UserError(f"{self._metadata_path} must hold a JSON object; restore or delete it, or start a new run folder.")
        return metadata

    def append(self, record: TrialRecord) -> None:
        """Durably add one record: a single write of one line, flushed and fsynced before return."""
        line = _encode(record)
        with _lock_for(self._trials_path):
            self._run_dir.mkdir(parents=True, exist_ok=True)
            with open(self._trials_path, "a+b") as handle:
                _repair_tail(handle)
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())

    def records(self) -> list[TrialRecord]:
        """Every record in file order; a broken last line (crash mid-append) is skipped."""
        if not self._trials_path.exists():
            return []
        lines = self._trials_path.read_bytes().split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(_decode(line))
            except ValueError as exc:
                if number == len(lines):
                    break
                raise UserError(
                    f"{self._trials_path} line {number} is not a valid trial record ({exc}); "
                    "the file is corrupted, so restore it from a backup or start a new run folder."
                ) from exc
        return records

    def completed_ids(self) -> set[int]:
        return {record.trial_id for record in self.records() if record.status == "completed"}

    def latest_by_trial(self) -> dict[int, TrialRecord]:
        return {record.trial_id: record for record in self.records()}

    def to_frame(self) -> pd.DataFrame:
        """One row per record: bookkeeping columns, then metrics, then config keys as config_*."""
        rows, metric_names, config_names = [], {}, {}
        for record in self.records():
            row = {name: getattr(record, name) for name in _FRAME_COLUMNS if name != "duration"}
            row["duration"] = record.end_time - record.start_time
            row.update(record.metrics)
            row.update({f"config_{key}": value for key, value in record.config.items()})
            metric_names.update(dict.fromkeys(record.metrics))
            config_names.update(dict.fromkeys(f"config_{key}" for key in record.config))
            rows.append(row)
        return pd.DataFrame(rows, columns=[*_FRAME_COLUMNS, *metric_names, *config_names])

    def write_csv(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path is not None else self._run_dir / "trials.csv"
        atomic_write_text(target, self.to_frame().to_csv(index=False))
        return target
