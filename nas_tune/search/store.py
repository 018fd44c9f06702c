"""The results store of one search run: crash-safe, resumable, one folder per run.

Layout of RUN_DIR:
  metadata.json  run settings, rewritten atomically
  trials.jsonl   one JSON object per finished trial; appended, never rewritten
  started.jsonl  one JSON object per trial handed to a worker (id, config, fidelity); appended
  trials.csv     flattened export, rewritten atomically on demand

Group commit: `append_many` writes any number of records with one write and one fsync, so a
driver that collects every trial finished since its last commit pays one fsync per group, not per
trial. A record is durable when `append_many` returns; the driver *reports* a trial (tells the
searcher, counts it in the progress bar) only after that, so a SIGKILL (or a power loss) at any
moment loses no reported trial. The started journal is written without fsync: after a SIGKILL the
kernel still has it; an OS crash can lose its tail, and then in-flight trials are asked anew
instead of rerun, which loses nothing reported either.

Appends are the only way the journals grow, so a crash can at worst leave a truncated last line.
Readers skip such a tail and the next append cuts it off before writing, so a file never holds
garbage between valid lines; garbage anywhere else is real corruption.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
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


def _encode(entry: Any) -> bytes:
    """One JSON line for a dataclass entry (a trial record or a started trial)."""
    return (json.dumps(asdict(entry), default=_json_default) + "\n").encode("utf-8")


def _decoder(entry_type: type) -> Callable[[bytes], Any]:
    """Parse one line into `entry_type`; ValueError for anything that is not a complete, valid entry."""

    def decode(line: bytes) -> Any:
        data = json.loads(line.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        try:
            return entry_type(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    return decode


@dataclass(frozen=True)
class StartedTrial:
    """A trial handed to a worker: what a resumed run reruns if no record of it was stored."""

    trial_id: int
    config: dict[str, Any]
    fidelity: float = 1.0


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


class JsonLines:
    """An append-only file of JSON lines that a crash can only ever leave with a torn last line."""

    def __init__(self, path: Path, decode: Callable[[bytes], Any]):
        self.path, self._decode = path, decode

    def _repair_tail(self, handle: BinaryIO) -> None:
        """Make the file end with a complete, valid line, the same way read() sees it: a valid
        unterminated last line gets its newline, anything else after the last good line is cut."""
        end = handle.seek(0, os.SEEK_END)
        if end == 0:
            return
        start = _last_line_start(handle, end)
        handle.seek(start)
        tail = handle.read()
        try:
            self._decode(tail.removesuffix(b"\n"))
        except ValueError:
            handle.truncate(start)
            return
        if not tail.endswith(b"\n"):
            handle.write(b"\n")

    def append(self, lines: list[bytes], *, durable: bool) -> None:
        """One write of all `lines`; with `durable`, fsynced before return (one fsync for the whole group)."""
        if not lines:
            return
        with _lock_for(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as handle:
                self._repair_tail(handle)
                handle.write(b"".join(lines))
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())

    def read(self) -> list[Any]:
        """Every entry in file order; a broken last line (crash mid-append) is skipped."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        entries = []
        for number, line in enumerate(lines, start=1):
            try:
                entries.append(self._decode(line))
            except ValueError as exc:
                if number == len(lines):
                    break
                raise UserError(
                    f"{self.path} line {number} is not a valid entry ({exc}); "
                    "the file is corrupted, so restore it from a backup or start a new run folder."
                ) from exc
        return entries


class ResultsStore:
    """Reads and writes one run folder. The search driver never appends a completed trial id
    twice; a resumed run may append a second record for an id that failed or ran at another
    fidelity, so records() keeps every line and latest_by_trial() gives the last one per id."""

    def __init__(self, run_dir: str | Path):
        self._run_dir = Path(run_dir)
        self._trials = JsonLines(self._run_dir / "trials.jsonl", _decoder(TrialRecord))
        self._started = JsonLines(self._run_dir / "started.jsonl", _decoder(StartedTrial))
        self._metadata_path = self._run_dir / "metadata.json"

    @property
    def run_dir(self) -> Path:
        return self._run_dir

    @property
    def trials_path(self) -> Path:
        return self._trials.path

    @property
    def started_path(self) -> Path:
        return self._started.path

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
            raise UserError(
                f"{self._metadata_path} must hold a JSON object; restore or delete it, or start a new run folder."
            )
        return metadata

    def append(self, record: TrialRecord) -> None:
        """Durably add one record (a group of one)."""
        self.append_many([record])

    def append_many(self, records: list[TrialRecord]) -> None:
        """Durably add `records` with one write and one fsync: a group commit."""
        self._trials.append([_encode(record) for record in records], durable=True)

    def records(self) -> list[TrialRecord]:
        """Every record in file order; a broken last line (crash mid-append) is skipped."""
        return self._trials.read()

    def mark_started(self, trials: list[StartedTrial]) -> None:
        """Journal trials handed to workers, one write for all; no fsync (see the module docstring)."""
        self._started.append([_encode(trial) for trial in trials], durable=False)

    def started(self) -> list[StartedTrial]:
        return self._started.read()

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
