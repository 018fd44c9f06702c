"""New processes for the kill-and-resume tests, forked from a server that has imported nas-tune's libraries.

A fresh interpreter pays ~7 s CPU of torch/transformers imports before it runs a command; the crash tests start a
dozen. Each run here is still its own process (SIGKILLed for real, resumed by another one), forked from a
multiprocessing fork server that imported the libraries once and never ran a command.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing import forkserver, resource_tracker
from pathlib import Path

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["nas_tune.cli", "nas_tune.supernet.run", "nas_tune.search.run", "nas_tune.pipeline"])
SERVER_ENV = {"OMP_NUM_THREADS": "1"}  # read once, when torch loads OpenMP: the server's environment decides


def start_server() -> None:
    """Start the fork server (it imports in the background) with the environment its imports must see."""
    saved = {key: os.environ.get(key) for key in SERVER_ENV}
    os.environ.update(SERVER_ENV)
    try:
        forkserver.ensure_running()
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


def _main(command: list[str], env: dict[str, str], log: str) -> None:
    """In the child: what `python -c CODE ARGS...` or `python SCRIPT ARGS...` does, with stdout and stderr in `log`."""
    import numpy

    mismatched = {key: value for key, value in SERVER_ENV.items() if env.get(key) != value}
    assert not mismatched, f"the fork server was started with {SERVER_ENV}; a child cannot change {mismatched}"
    os.environ.clear()
    os.environ.update(env)
    numpy.random.seed()  # fresh entropy, as a new interpreter has (Python's `random` reseeds itself on fork)
    resource_tracker._resource_tracker._fd = resource_tracker._resource_tracker._pid = None  # its own, as a new one has
    output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(output, 1)
    os.dup2(output, 2)
    if command[0] == "-c":
        sys.argv = ["-c", *command[2:]]
        exec(compile(command[1], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = list(command)
        sys.path.insert(0, os.path.dirname(os.path.abspath(command[0])))
        runpy.run_path(command[0], run_name="__main__")


class Process:
    """`subprocess.Popen(command, env=env)` for `python -c CODE ...` / `python SCRIPT ...`, forked from the server,
    with stdout and stderr together in a temporary file: poll(), kill(), returncode, and communicate() for the output."""

    def __init__(self, command: list[str], env: dict[str, str]):
        assert command[0] == sys.executable, command
        start_server()
        descriptor, self._log = tempfile.mkstemp(prefix="preforked-", suffix=".log")
        os.close(descriptor)
        # daemon: if a test fails before waiting for it, the run is stopped when pytest exits
        self._process = CONTEXT.Process(target=_main, args=(command[1:], env, self._log), daemon=True)
        self._process.start()

    def poll(self) -> int | None:
        return self._process.exitcode

    def kill(self) -> None:
        self._process.kill()

    def lines(self) -> Iterator[str]:
        """The output's lines as the child writes them, until it ends."""
        with open(self._log) as log:
            pending = ""
            while True:
                ended = self.poll() is not None
                *complete, pending = (pending + log.read()).split("\n")
                yield from complete
                if ended:
                    return
                time.sleep(0.01)

    def communicate(self, timeout: float) -> str:
        self._process.join(timeout)
        assert self._process.exitcode is not None, f"still running after {timeout} s"
        output = Path(self._log).read_text()
        os.remove(self._log)
        return output

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode
