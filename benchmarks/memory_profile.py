"""Peak resident memory of the pipeline, split by stage.

Runs `launchers/local.py` (or any command after `--`) as a child process, samples the resident set
size of the child and its descendants every `--interval` seconds, and attributes each sample to the
stage the pipeline last announced on its output ("[1/3] fine-tuning", the training progress bar,
"[2/3] searching", "[3/3] exporting"). The overall peak is the kernel's own high-water mark of the
child (`ru_maxrss`), so no short spike between samples is missed.

    python benchmarks/memory_profile.py [--name NAME] [--env MALLOC_ARENA_MAX=2] -- --dataset sst2 --max-train-samples 2000
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from nas_tune.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
# Output that starts a stage, in the order the pipeline prints it.
STAGE_MARKERS = (
    (b"[1/3]", "load model + tokenise"),
    (b"fine-tuning (", "super-network training"),
    (b"[2/3]", "search"),
    (b"[3/3]", "test + export"),
)
FIRST_STAGE = "start-up (imports)"


class StageWatcher:
    """Copies the child's output to a log and notes which stage it is in (progress bars end lines with \\r, so no readline)."""

    def __init__(self, stream, log):
        self.stage = FIRST_STAGE
        self.started = {FIRST_STAGE: time.perf_counter()}
        self._stream, self._log = stream, log
        self._next = 0
        self._tail = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while chunk := os.read(self._stream.fileno(), 65536):
            self._log.write(chunk)
            self._log.flush()
            self._tail = (self._tail + chunk)[-4096:]
            while self._next < len(STAGE_MARKERS) and STAGE_MARKERS[self._next][0] in self._tail:
                marker, self.stage = STAGE_MARKERS[self._next]
                self.started[self.stage] = time.perf_counter()
                self._tail = self._tail[self._tail.index(marker) + len(marker) :]
                self._next += 1


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and its descendants (search workers may be processes)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, launcher_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="memory_profile", help="results file stem in benchmarks/results/")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between RSS samples")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment for the child"
    )
    parser.add_argument("--launcher", default=str(ROOT / "launchers" / "local.py"))
    args = parser.parse_args(own)
    if args.interval <= 0:
        parser.error("--interval must be positive")
    extra_env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="nas_tune_memory_") as scratch:
        if "--output" not in launcher_args:
            launcher_args = [*launcher_args, "--output", str(Path(scratch) / "run")]
        command = [sys.executable, args.launcher, *launcher_args]
        log_path = RESULTS / f"{args.name}.log"
        RESULTS.mkdir(exist_ok=True)
        start = time.perf_counter()
        with log_path.open("wb") as log:
            child = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **extra_env}
            )
            watcher = StageWatcher(child.stdout, log)
            process = psutil.Process(child.pid)
            peaks: dict[str, int] = {}
            while child.poll() is None:
                rss = tree_rss(process)
                peaks[watcher.stage] = max(peaks.get(watcher.stage, 0), rss)
                time.sleep(args.interval)
            watcher.thread.join()
        seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux reports KiB
    stages = list(watcher.started)
    ends = [watcher.started[s] for s in stages[1:]] + [start + seconds]
    rows = [
        {"stage": s, "peak_rss_mb": round(peaks.get(s, 0) / 2**20), "seconds": round(end - watcher.started[s], 1)}
        for s, end in zip(stages, ends)
    ]
    for row in rows:
        print(f"{row['stage']:<26} peak {row['peak_rss_mb']:>6} MB   {row['seconds']:>7.1f} s")
    print(f"{'whole run (ru_maxrss)':<26} peak {peak_kib // 1024:>6} MB   {seconds:>7.1f} s   exit {child.returncode}")
    atomic_write_json(
        RESULTS / f"{args.name}.json",
        {
            "command": "python benchmarks/memory_profile.py " + shlex.join(argv),
            "child": shlex.join(command[1:]),
            "env": extra_env,
            "exit_code": child.returncode,
            "seconds": round(seconds, 1),
            "peak_rss_mb": peak_kib // 1024,
            "stages": rows,
        },
    )
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
