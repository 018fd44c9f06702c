"""Atomic file writes: a reader (or a crash) never sees a half-written file."""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nas_tune.output_folder import check_output_folder, is_empty


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def as_json(obj: Any) -> Any:
    """`obj` as `atomic_write_json` stores it and `read_json` gives it back (tuples become lists), to compare with what was stored."""
    return json.loads(json.dumps(obj, default=str))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _replaced(path: Path) -> Path:
    """Where `atomic_folder` keeps the old folder while the new one moves in."""
    return path.parent / f".{path.name}.replaced"


def recover_folder(path: str | Path) -> None:
    """Finish or undo an `atomic_folder` replacement that a crash interrupted, so `path` holds one whole folder.

    Old folder aside and no new one: the crash came before the new folder moved in, so the old one goes back.
    Both there: the crash came after, so the old one is removed. Staging folders of killed writers are removed.
    """
    path = Path(path)
    aside = _replaced(path)
    if aside.is_dir():
        if path.exists():
            shutil.rmtree(aside)
        else:
            aside.rename(path)
    for staging in path.parent.glob(f".{glob.escape(path.name)}.staging-*"):
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a staging folder beside `path`; on success it replaces `path` whole, on error it is removed.

    At every moment `path` or its stand-in `.NAME.replaced` holds a complete folder, old or new:
    the old folder is renamed aside, the new one renamed in, and only then the old one removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(path)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.staging-"))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    aside = _replaced(path)
    if path.exists():
        path.rename(aside)
    staging.rename(path)
    shutil.rmtree(aside, ignore_errors=True)


def prepare_output_dir(path: str | Path, *, overwrite: bool) -> Path:
    """Refuse to clobber a non-empty folder unless asked: nothing already written is lost by accident."""
    check_output_folder(path, holds_run=not is_empty(path), what="files", overwrite=overwrite, resumable=False)
    return Path(path)
