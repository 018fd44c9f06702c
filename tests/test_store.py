import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nas_tune.errors import UserError
from nas_tune.search.store import ResultsStore, TrialRecord

REPO_ROOT = Path(__file__).resolve().parents[1]


def _record(trial_id: int, **overrides) -> TrialRecord:
    fields = dict(
        trial_id=trial_id,
        config={"num_layers": 6, "num_heads": 8 + trial_id % 4},
        metrics={"error": 0.1 * (trial_id % 10), "params": 0.5},
        worker="w0",
        start_time=100.0 + trial_id,
        end_time=102.5 + trial_id,
    )
    fields.update(overrides)
    return TrialRecord(**fields)


def _lines(store: ResultsStore) -> list[bytes]:
    return store.trials_path.read_bytes().splitlines()


def test_append_records_round_trip(tmp_path):
    store = ResultsStore(tmp_path / "run")
    assert store.records() == []
    written = [
        _record(0),
        _record(1, status="failed", error_message="CUDA OOM", metrics={}),
        _record(2, config={"mask": np.array([1, 0, 1]), "width": np.int64(3)}, metrics={"error": math.nan}),
    ]
    for record in written:
        store.append(record)
    read = store.records()
    assert read[:2] == written[:2]
    assert read[2].config == {"mask": [1, 0, 1], "width": 3}
    assert math.isnan(read[2].metrics["error"])
    assert store.completed_ids() == {0, 2}
    assert store.run_dir == tmp_path / "run"


def test_latest_by_trial_keeps_last_record_per_id(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(_record(0, status="failed", metrics={}))
    store.append(_record(1))
    store.append(_record(0, fidelity=0.5))
    assert [r.trial_id for r in store.records()] == [0, 1, 0]
    latest = store.latest_by_trial()
    assert latest[0].status == "completed" and latest[0].fidelity == 0.5


def test_invalid_record_rejected_before_writing(tmp_path):
    with pytest.raises(ValueError, match="status"):
        _record(0, status="running")
    with pytest.raises(ValueError, match="clash"):
        _record(0, metrics={"duration": 1.0})


def test_metadata_round_trip(tmp_path):
    store = ResultsStore(tmp_path / "run")
    assert store.read_metadata() is None
    store.write_metadata({"searcher": "random", "objectives": ["error", "params"], "seed": 0})
    assert store.read_metadata() == {"searcher": "random", "objectives": ["error", "params"], "seed": 0}
    assert sorted(p.name for p in store.run_dir.iterdir()) == ["metadata.json"]  # no temp files left


@pytest.mark.parametrize("content", ['{"searcher": ', "[1, 2]"])
def test_bad_metadata_is_user_error(tmp_path, content):
    (tmp_path / "metadata.json").write_text(content)
    with pytest.raises(UserError, match="metadata.json"):
        ResultsStore(tmp_path).read_metadata()


def test_truncated_last_line_is_skipped_and_repaired_by_next_append(tmp_path):
    store = ResultsStore(tmp_path)
    for i in range(3):
        store.append(_record(i))
    full_line = json.dumps({"trial_id": 3, "config": {}, "metrics": {"error": 0.5}})
    with open(store.trials_path, "ab") as handle:
        handle.write(full_line[: len(full_line) // 2].encode())
    assert [r.trial_id for r in store.records()] == [0, 1, 2]
    store.append(_record(3))
    lines = _lines(store)
    assert len(lines) == 4 and all(json.loads(line) for line in lines)
    assert [r.trial_id for r in store.records()] == [0, 1, 2, 3]


def test_complete_but_unterminated_last_line_is_kept(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(_record(0))
    store.trials_path.write_bytes(store.trials_path.read_bytes().rstrip(b"\n"))
    assert [r.trial_id for r in store.records()] == [0]
    store.append(_record(1))
    assert [r.trial_id for r in store.records()] == [0, 1]
    assert len(_lines(store)) == 2


def test_garbled_middle_line_is_user_error(tmp_path):
    store = ResultsStore(tmp_path)
    for i in range(3):
        store.append(_record(i))
    lines = _lines(store)
    store.trials_path.write_bytes(b"\n".join([lines[0], b'{"trial_id": 1, "conf', lines[2]]) + b"\n")
    with pytest.raises(UserError, match=r"trials\.jsonl line 2"):
        store.records()


def test_concurrent_appends_from_threads(tmp_path):
    def worker(index: int) -> None:
        store = ResultsStore(tmp_path)  # separate objects share the per-file lock
        for j in range(50):
            store.append(_record(index * 50 + j, worker=f"w{index}", config={"blob": "x" * 3000}))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = ResultsStore(tmp_path)
    lines = _lines(store)
    assert len(lines) == 200 and all(json.loads(line) for line in lines)
    assert store.completed_ids() == set(range(200))


def test_sigkill_during_appends_loses_at_most_the_last_line(tmp_path):
    script = textwrap.dedent(
        f"""
        from nas_tune.search.store import ResultsStore, TrialRecord
        store = ResultsStore({str(tmp_path)!r})
        i = 0
        while True:
            store.append(TrialRecord(trial_id=i, config={{"blob": "x" * 20000}}, metrics={{"error": 0.5}}))
            i += 1
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    trials = tmp_path / "trials.jsonl"
    try:
        while not (
            trials.exists() and trials.read_bytes().count(b"\n") >= 20
        ):  # no deadline: a busy machine only slows it
            assert process.poll() is None, "writer exited early"
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    lines = trials.read_bytes().split(b"\n")
    for line in lines[:-1]:  # every newline-terminated line is complete
        json.loads(line)
    store = ResultsStore(tmp_path)
    ids = [r.trial_id for r in store.records()]
    assert len(ids) >= 20 and ids == list(range(len(ids)))
    store.append(TrialRecord(trial_id=len(ids), config={}, metrics={}))
    assert [r.trial_id for r in store.records()] == list(range(len(ids) + 1))
    assert all(json.loads(line) for line in _lines(store))


def test_to_frame_columns(tmp_path):
    store = ResultsStore(tmp_path)
    assert list(store.to_frame().columns)[:7] == [
        "trial_id",
        "status",
        "fidelity",
        "worker",
        "start_time",
        "end_time",
        "duration",
    ]
    store.append(_record(0, status="failed", error_message="boom", metrics={}))
    store.append(_record(1, metrics={"error": 0.2, "params": 0.4, "latency": 0.3}))
    frame = store.to_frame()
    assert list(frame.columns) == [
        "trial_id",
        "status",
        "fidelity",
        "worker",
        "start_time",
        "end_time",
        "duration",
        "error_message",
        "error",
        "params",
        "latency",
        "config_num_layers",
        "config_num_heads",
    ]
    assert frame["duration"].tolist() == [2.5, 2.5]
    assert frame.loc[1, "latency"] == 0.3 and pd.isna(frame.loc[0, "error"])
    assert frame["config_num_heads"].tolist() == [8, 9]


def test_write_csv(tmp_path):
    store = ResultsStore(tmp_path)
    for i in range(3):
        store.append(_record(i))
    path = store.write_csv()
    assert path == tmp_path / "trials.csv"
    frame = pd.read_csv(path)
    assert frame["trial_id"].tolist() == [0, 1, 2] and "config_num_layers" in frame.columns
    custom = store.write_csv(tmp_path / "export" / "all.csv")
    assert custom.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "trials.csv", "trials.jsonl"]
