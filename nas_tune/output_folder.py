"""The one guard of every command that writes a folder: two runs never mix, nothing is deleted unasked.

Importable without torch: the command line runs the same guard before its slow imports.
"""

from __future__ import annotations

from pathlib import Path

from nas_tune.errors import UserError


def is_empty(path: str | Path) -> bool:
    """True for a missing folder or one without entries."""
    path = Path(path)
    return not path.is_dir() or not any(path.iterdir())


def occupied(path: str | Path, markers: tuple[str, ...] = ()) -> bool:
    """Whether `path` holds a run: one of its marker files, or (without markers) any entry."""
    return any((Path(path) / marker).exists() for marker in markers) if markers else not is_empty(path)


def check_output_folder(
    path: str | Path,
    *,
    holds_run: bool,
    what: str,
    resume: bool = False,
    overwrite: bool = False,
    resumable: bool = True,
    resume_may_start: bool = False,
) -> None:
    """Refuse what would lose or mix results; deleting the old run (on --overwrite) is the caller's job.

    `holds_run` is what the caller found in `path` (its marker file, or simply files); `what` names it in the
    message ("a search"); `resumable` False for outputs that cannot be continued (exported models);
    `resume_may_start` True where --resume also starts a run that has nothing to resume yet (the pipeline).
    """
    path = Path(path)
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one of them.")
    if path.exists() and not path.is_dir():
        raise UserError(f"output path {path} exists and is not a folder; choose another --output.")
    if resume:
        if not holds_run and not resume_may_start:
            raise UserError(f"--resume: {path} holds no {what} to resume; drop --resume.")
        return
    if holds_run and not overwrite:
        how = (
            "pass --resume to continue it, --overwrite to replace it,"
            if resumable
            else "pass --overwrite to replace it"
        )
        raise UserError(f"output folder {path} already holds {what}; {how} or choose another --output.")
