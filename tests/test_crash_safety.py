"""Crash safety: a folder replacement interrupted at any step; fine-tuning, search and the pipeline killed and resumed."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import preforked
import pytest
from syne_tune.config_space import randint

from nas_tune import io
from nas_tune.io import atomic_folder, recover_folder
from nas_tune.search.driver import SearchDriver, SearchSettings
from nas_tune.search.executors import LocalExecutor
from nas_tune.search.searchers import make_searcher
from nas_tune.search.store import ResultsStore, StartedTrial, TrialRecord


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
    with pytest.raises(RuntimeError), atomic_folder(target) as staging:
        write_folder(staging, NEW)
        raise RuntimeError("disk full")
    assert contents(target) == OLD and [p.name for p in tmp_path.iterdir()] == ["ckpt"]


# A `nas-tune` process that SIGKILLs itself at a chosen moment of a state save ("save:N": the N-th save, after the
# weights file and before the optimizer file; "replace:N": the N-th save, after the old state was renamed aside).
DRIVER = """
import os, signal, sys
from pathlib import Path
import torch
from nas_tune.cli import main
where, count = os.environ["KILL_AT"].split(":")
calls = {"n": 0}

def maybe_die():
    calls["n"] += 1
    if calls["n"] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)

if where == "save":
    save = torch.save
    def dying_save(*args, **kwargs):
        maybe_die()
        return save(*args, **kwargs)
    torch.save = dying_save
else:
    rename = Path.rename
    def dying_rename(self, target):
        if self.name.startswith(".training_state.staging-"):
            maybe_die()
        return rename(self, target)
    Path.rename = dying_rename
sys.exit(main(sys.argv[1:]))
"""


def write_csv(path: Path, rows: int) -> Path:
    words = ["good", "bad", "fine", "awful", "great", "poor"]
    lines = ["text,label"] + [
        f"{words[i % 6]} film number {i},{'pos' if i % 6 in (0, 2, 4) else 'neg'}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def finetune_argv(model: Path, data: Path, output: Path) -> list[str]:
    return [
        "finetune",
        "--model",
        str(model),
        "--train-file",
        str(data),
        "--text-columns",
        "text",
        "--max-seq-length",
        "16",
        "--batch-size",
        "4",
        "--epochs",
        "2",
        "--lr",
        "1e-3",
        "--save-steps",
        "1",
        "--seed",
        "3",
        "--output",
        str(output),
    ]


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "NAS_TUNE_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": str(Path(__file__).parents[1]),
    }


def run_killed(process: preforked.Process, kill_when: Callable[[], bool] | None = None) -> tuple[int, str]:
    """Wait for `process`; SIGKILL it as soon as `kill_when()` holds (polled every 10 ms). Returns exit code and output."""
    while kill_when is not None and process.poll() is None:
        if kill_when():
            process.kill()
        time.sleep(0.01)
    output = process.communicate(timeout=600)
    return process.returncode, output


def nas_tune(argv: list[str], env: dict[str, str], kill_at: str = "none:0") -> preforked.Process:
    """A new `nas-tune` process (see DRIVER), started."""
    return preforked.Process([sys.executable, "-c", DRIVER, *argv], {**env, "KILL_AT": kill_at})


def lines(path: Path) -> int:
    """Complete lines of a file another process appends to (0 before it exists)."""
    return path.read_text().count("\n") if path.is_file() else 0


@pytest.mark.slow  # five nas-tune processes, the uninterrupted one alongside the others
def test_finetune_killed_at_several_moments_resumes_to_the_same_weights(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    data = write_csv(tmp_path / "reviews.csv", 40)  # 28 training rows: 7 steps an epoch, 14 in all
    env = subprocess_env(tmp_path)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    uninterrupted = nas_tune(finetune_argv(tiny_model_dir, data, straight), env)  # runs alongside the killed ones
    resume = [*finetune_argv(tiny_model_dir, data, killed), "--resume"]
    log = killed / "train_log.csv"
    moments = [
        ("save:3", None),
        ("none:0", lambda: lines(log) > 9),
        ("replace:2", None),
    ]  # mid-save, between saves, mid-replacement
    for number, (kill_at, kill_when) in enumerate(moments):
        code, err = run_killed(nas_tune(resume if number else resume[:-1], env, kill_at=kill_at), kill_when)
        assert code == -signal.SIGKILL, err
        assert (killed / "supernet.json").is_file() and not (killed / "model.safetensors").exists()
    code, err = run_killed(nas_tune(resume, env))
    assert code == 0, err
    code, err = run_killed(uninterrupted)
    assert code == 0, err
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    steps = [line.split(",")[0] for line in log.read_text().splitlines()[1:]]
    assert steps == [str(i) for i in range(1, 15)]  # each step logged once
    assert sorted(p.name for p in killed.iterdir() if p.name.startswith(".")) == []  # no staging leftovers


# A search killed at any moment resumes into the trials of an uninterrupted run, for every searcher that learns fast
# enough for a unit test (ehvi fits a GP per suggestion): the kill is rebuilt from the uninterrupted run's own files.
TOY_SPACE = {"layers": randint(1, 6), "units": randint(1, 64)}


def toy_trial(config, fidelity):
    """Error falls with size (less so on a fraction of the validation set), params grow with it: a real trade-off."""
    size = config["layers"] * config["units"] / 384
    return {"error": 1 / (1 + 4 * size * fidelity), "params": size}


def toy_search(folder: Path, searcher: str, num_trials: int) -> list[TrialRecord]:
    store = ResultsStore(folder)
    settings = SearchSettings(searcher=searcher, num_trials=num_trials, workers=1)
    start = make_searcher(
        searcher, TOY_SPACE, settings.objectives, seed=5, initial_configs=[{"layers": 6, "units": 64}]
    )
    with LocalExecutor(toy_trial, 1) as executor:
        SearchDriver(store, start, executor, settings, show_progress=False).run()
    return store.records()


def same_trials(records: list[TrialRecord]) -> dict[int, tuple]:
    """What must not change when a search is killed and resumed: which config each trial ran, at what fidelity, with
    what result (timings aside)."""
    return {
        r.trial_id: (r.config, r.fidelity, r.status, {k: v for k, v in r.metrics.items() if not k.endswith("_seconds")})
        for r in records
    }


@pytest.mark.parametrize("searcher", ["random", "local_search", "morea", "nsga2", "moasha"])
@pytest.mark.parametrize(
    ("done", "stored"), [(3, 3), (6, 7)]
)  # trial `done` was running; (6, 7): its result was appended too
def test_a_search_killed_while_a_trial_runs_resumes_to_the_trials_of_an_uninterrupted_run(
    tmp_path, searcher, done, stored
):
    straight = toy_search(tmp_path / "straight", searcher, 10)
    killed = tmp_path / "killed"
    killed.mkdir()
    lines = (tmp_path / "straight" / "trials.jsonl").read_text().splitlines(keepends=True)
    (killed / "trials.jsonl").write_text("".join(lines[:stored]))
    ResultsStore(killed).mark_started(
        [StartedTrial(r.trial_id, r.config, r.fidelity) for r in straight[: done + 1]]
    )  # as the driver journals them
    resumed = toy_search(killed, searcher, 10)
    assert same_trials(resumed) == same_trials(straight)
    assert len(resumed) == 10  # the running trial ran once more, no other trial twice


def trial_running(run: Path, trial_id: int) -> bool:
    """Whether `trial_id` is being evaluated: the trials before it are stored and started.jsonl lists it."""
    try:
        return lines(run / "trials.jsonl") == trial_id and trial_id in {t.trial_id for t in ResultsStore(run).started()}
    except (OSError, ValueError):  # not written yet
        return False


def kill_moments(seed: int, num_trials: int, count: int = 2) -> list[int]:
    """The trials (seeded, in order) during which a search is killed; never the first, whose replay is trivial."""
    return sorted(random.Random(seed).sample(range(1, num_trials), count))


@pytest.mark.slow  # four nas-tune processes, the uninterrupted one alongside the others
def test_search_killed_at_random_moments_resumes_to_the_trials_of_an_uninterrupted_run(tmp_path, supernet, glue_dir):
    env = subprocess_env(tmp_path)
    straight, killed = tmp_path / "straight", tmp_path / "killed"

    def search(output: Path) -> list[str]:
        return [
            "search",
            "--checkpoint",
            str(supernet),
            "--searcher",
            "local_search",
            "--num-trials",
            "12",
            "--seed",
            "2",
            "--data-dir",
            str(glue_dir),
            "--output",
            str(output),
        ]

    uninterrupted = nas_tune(search(straight), env)  # runs alongside the killed ones
    for number, trial in enumerate(kill_moments(13, 12)):  # killed while these trials run
        code, err = run_killed(
            nas_tune(search(killed) + ["--resume"] * (number > 0), env),
            lambda trial=trial: trial_running(killed, trial),
        )
        assert code == -signal.SIGKILL, err
    code, err = run_killed(nas_tune([*search(killed), "--resume"], env))
    assert code == 0, err
    code, err = run_killed(uninterrupted)
    assert code == 0, err
    resumed = ResultsStore(killed).records()
    assert same_trials(resumed) == same_trials(ResultsStore(straight).records())
    assert len(resumed) == 12  # a trial killed while running ran again, no other trial twice


@pytest.mark.slow  # four launcher processes, the uninterrupted one alongside the others
def test_pipeline_killed_in_fine_tuning_and_in_search_resumes_to_the_picks_of_an_uninterrupted_run(
    tmp_path, tiny_model_dir, glue_dir
):
    import json

    env = subprocess_env(tmp_path)

    def local(output: Path, *extra: str) -> list[str]:
        return [
            sys.executable,
            str(Path(__file__).parents[1] / "launchers" / "local.py"),
            "--model",
            str(tiny_model_dir),
            "--dataset",
            "rte",
            "--data-dir",
            str(glue_dir),
            "--max-train-samples",
            "48",
            "--max-validation-samples",
            "24",
            "--max-test-samples",
            "24",
            "--max-seq-length",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--save-steps",
            "1",
            "--searcher",
            "local_search",
            "--num-trials",
            "8",
            "--seed",
            "4",
            "--output",
            str(output),
            *extra,
        ]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    uninterrupted = preforked.Process(local(straight), env)  # runs alongside the killed ones
    trial = kill_moments(17, 8, count=1)[0]
    moments = [
        lambda: lines(killed / "supernet" / "train_log.csv") > 1,
        lambda: trial_running(killed / "search", trial),
    ]
    for number, kill_when in enumerate(moments):  # after one training step, then while a trial runs
        code, err = run_killed(preforked.Process(local(killed, *["--resume"] * (number > 0)), env), kill_when)
        assert code == -signal.SIGKILL, err
    code, err = run_killed(preforked.Process(local(killed, "--resume"), env))
    assert code == 0, err
    code, err = run_killed(uninterrupted)
    assert code == 0, err
    assert same_trials(ResultsStore(killed / "search").records()) == same_trials(
        ResultsStore(straight / "search").records()
    )

    def picks(run: Path) -> list[dict]:
        """The summary's picks, less where they lie and how long they took."""
        exported = json.loads((run / "summary.json").read_text())["exported"]
        return [{k: v for k, v in pick.items() if k not in ("path", "latency_seconds")} for pick in exported]

    assert picks(killed) == picks(straight) and len(picks(straight)) >= 2
