"""Crash safety: a folder replacement interrupted at any step, and fine-tuning killed with SIGKILL and resumed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nas_tune import io
from nas_tune.io import atomic_folder, recover_folder


class Crash(BaseException):
    """Stands for the process dying: nothing after the failing call runs, no cleanup either."""


def contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_folder(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


OLD = {"model.safetensors": "old weights", "state/optimizer.pt": "old optimizer"}
NEW = {"model.safetensors": "new weights", "state/optimizer.pt": "new optimizer", "extra.json": "{}"}


def crashing_after(monkeypatch, calls: int) -> None:
    """Let `calls` renames/removals of nas_tune.io run, then crash in the next one (a removal half done)."""
    done = {"count": 0}
    rename, rmtree = Path.rename, shutil.rmtree

    def step():
        if done["count"] == calls:
            raise Crash
        done["count"] += 1

    def crashing_rename(self, target):
        step()
        return rename(self, target)

    def crashing_rmtree(path, *args, **kwargs):
        if done["count"] == calls and Path(path).is_dir():  # a removal killed midway leaves part of the folder
            next(p for p in Path(path).rglob("*") if p.is_file()).unlink()
        step()
        return rmtree(path, *args, **kwargs)

    monkeypatch.setattr(Path, "rename", crashing_rename)
    monkeypatch.setattr(io.shutil, "rmtree", crashing_rmtree)


@pytest.mark.parametrize("calls", range(4))
def test_atomic_folder_survives_a_crash_at_every_step(tmp_path, monkeypatch, calls):
    target = tmp_path / "training_state"
    write_folder(target, OLD)
    crashing_after(monkeypatch, calls)
    try:
        with atomic_folder(target) as staging:
            write_folder(staging, NEW)
        crashed = False
    except Crash:
        crashed = True
    monkeypatch.undo()
    assert crashed == (calls < 3)  # three steps: old aside, new in, old removed
    recover_folder(target)  # what the next start does
    assert contents(target) in (OLD, NEW)  # never neither, never a mix
    assert contents(target) == (NEW if calls >= 2 else OLD)  # once the new folder is in place it stays
    assert [p.name for p in tmp_path.iterdir()] == ["training_state"]  # no leftovers


def test_a_writer_killed_while_staging_leaves_the_old_folder_and_no_leftovers(tmp_path):
    target = tmp_path / "ckpt"
    write_folder(target, OLD)
    write_folder(tmp_path / ".ckpt.staging-abc123", {"model.safetensors": "half writ"})  # SIGKILL mid-write
    with atomic_folder(target) as staging:
        write_folder(staging, NEW)
    assert contents(target) == NEW and [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_an_error_while_staging_keeps_the_old_folder(tmp_path):
    target = tmp_path / "ckpt"
    write_folder(target, OLD)
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as staging:
            write_folder(staging, NEW)
            raise RuntimeError("disk full")
    assert contents(target) == OLD and [p.name for p in tmp_path.iterdir()] == ["ckpt"]
