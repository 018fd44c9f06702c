"""`--help`, `--version`, bad options and a refused run folder answer before torch or transformers is imported
(checked by the modules a fresh process has loaded, not by a clock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "pandas", "syne_tune", "ray")

PROBE = """
import contextlib, io, json, runpy, sys
results = []
for argv in json.loads(sys.argv[1]):  # in one process, in turn: a heavy import by any command stays in sys.modules
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            if argv[0].endswith(".py"):
                sys.argv = argv
                runpy.run_path(argv[0], run_name="__main__")
                code = 0
            else:
                from nas_tune.cli import main
                code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
    results.append({"code": code, "output": output.getvalue(), "heavy": [m for m in %r if m in sys.modules]})
print(json.dumps(results))
""" % (HEAVY,)  # noqa: UP031  (the probe has braces of its own)


def probe(cases: list[list[str]]) -> list[dict]:
    """Each command line's exit code, output, and the heavy libraries loaded by then, from one fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(cases)], capture_output=True, text=True, env=env, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def taken(tmp_path):
    """A folder that already holds a run (a super-network's and a search's marker files), and a bad run file beside it."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metadata.json").write_text("{}")
    (tmp_path / "unknown.yaml").write_text("epochs: 2\nlearning-rate: 0.1\n")
    (tmp_path / "zero.yaml").write_text("epochs: 0\n")
    return tmp_path / "run"


HELP = [
    ["--version"],
    ["--help"],
    *(
        [command, "--help"]
        for command in ("finetune", "search", "report", "show", "select", "evaluate", "export", "baseline")
    ),
    ["launchers/local.py", "--help"],
    ["launchers/ray_cluster.py", "--help"],
    ["launchers/sagemaker.py", "--help"],
]

REFUSED = [
    (["finetune", "--strategy", "nope", "--output", "x"], "invalid choice: 'nope'"),
    (["search", "--checkpoint", "c", "--searcher", "nope", "--output", "x"], "unknown searcher 'nope'"),
    (["finetune", "--epochs", "0", "--output", "x"], "must be a positive integer"),
    (
        ["finetune", "--warmup-ratio", "2", "--output", "x"],
        "--warmup-ratio is a part of the training steps in [0, 1], got 2.0.",
    ),
    (["finetune", "--output", "{taken}"], "output folder {taken} already holds a super-network run; pass --resume"),
    (["search", "--checkpoint", "c", "--output", "{taken}"], "already holds a search or baseline run; pass --resume"),
    (["baseline", "importance", "--output", "{taken}"], "already holds a search or baseline run; pass --resume"),
    (
        ["baseline", "importance", "--budgets", "0.5,half", "--output", "x"],
        "--budgets must be comma-separated fractions such as 0.25,0.5,0.75, got '0.5,half'.",
    ),
    (["finetune", "--output", "{taken}", "--resume", "--overwrite"], "--resume and --overwrite contradict each other"),
    (["export", "--config", "smallest", "--output", "{taken}"], "already holds files; pass --overwrite to replace it"),
    (["select", "{taken}", "--max-params", "0.5", "--output", "{taken}"], "already holds files; pass --overwrite"),
    (["launchers/local.py", "--output", "{taken}"], "already holds a run; pass --resume"),
    (["launchers/ray_cluster.py", "--output", "{taken}"], "already holds a run; pass --resume"),
    (["finetune", "--config", "{taken}/../unknown.yaml", "--output", "x"], "unknown.yaml: unknown key 'learning-rate'"),
    (
        ["launchers/local.py", "--config", "{taken}/../zero.yaml"],
        "zero.yaml: 'epochs': must be a positive integer, got 0.",
    ),
    (
        ["search", "--checkpoint", "c", "--config", "{taken}/../missing.yaml", "--output", "x"],
        "missing.yaml: cannot be read",
    ),
]


def test_help_and_version_import_no_heavy_library():
    for argv, result in zip(HELP, probe(HELP)):
        assert result["code"] == 0 and result["heavy"] == [], (argv, result)
        assert "usage:" in result["output"] or "nas-tune 0." in result["output"], argv


def test_bad_input_is_refused_before_heavy_imports(taken):
    cases = [[part.format(taken=taken) for part in argv] for argv, _ in REFUSED]
    for (argv, message), result in zip(REFUSED, probe(cases)):
        message = message.format(taken=taken)
        assert result["code"] == 2 and message in result["output"] and result["heavy"] == [], (argv, result)
        assert "Traceback" not in result["output"], argv
    assert sorted(p.name for p in taken.iterdir()) == ["metadata.json"]  # nothing written
