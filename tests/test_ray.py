"""The Ray executor and launcher on a real two-node Ray cluster on this machine.

The nodes are started with `ray start`, each in a process group of its own; teardown stops those
groups only (`ray stop` would stop every Ray instance on the machine, also other people's).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
from syne_tune.config_space import randint

from nas_tune.data import DataConfig
from nas_tune.errors import UserError
from nas_tune.evaluate.setup import checkpoint_evaluator, read_checkpoint
from nas_tune.search.driver import SearchDriver, SearchSettings
from nas_tune.search.executors import TrialRequest
from nas_tune.search.ray_executor import RayExecutor, ray_executor
from nas_tune.search.run import search_checkpoint
from nas_tune.search.searchers import make_searcher
from nas_tune.search.store import ResultsStore
from nas_tune.supernet import FinetuneConfig, read_supernet_meta

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "launchers"))
import ray_cluster  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {"RAY_AUTH_MODE": "disabled"}  # Ray 2.60 turns token authentication on by default


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_node(*arguments: str) -> int:
    """`ray start` in a new session, so that its daemons share one process group; return that group's id."""
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
    command = [
        RAY,
        "start",
        "--node-ip-address",
        "127.0.0.1",
        "--object-store-memory",
        str(300 * 2**20),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--disable-usage-stats",
        *arguments,
    ]
    process = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-3000:]
    return process.pid


def stop_group(group: int) -> None:
    """What `ray stop` does (SIGTERM, then SIGKILL), limited to one node's process group.

    The GCS server ignores SIGTERM for ~10 s; this throwaway cluster gets 2 s before SIGKILL.
    """
    for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        deadline = time.monotonic() + grace
        try:
            os.killpg(group, sig)
            while time.monotonic() < deadline:
                time.sleep(0.2)
                os.killpg(group, 0)
        except ProcessLookupError:
            return


@pytest.fixture(scope="module")
def cluster():
    """A head node with 2 CPUs and a worker node with 1 CPU; yields the address to connect to."""
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay under 108 characters
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    address = f"127.0.0.1:{free_port()}"
    groups = []
    try:
        groups.append(
            start_node(
                "--head",
                "--port",
                address.split(":")[1],
                "--num-cpus",
                "2",
                "--include-dashboard=false",
                "--temp-dir",
                temp_dir,
            )
        )
        groups.append(start_node("--address", address, "--num-cpus", "1"))
        ray.init(address=address, log_to_driver=False)
        yield address
    finally:
        ray.shutdown()
        for group in reversed(groups):
            stop_group(group)
        shutil.rmtree(temp_dir, ignore_errors=True)
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


@pytest.fixture(scope="module")
def supernet(cluster, tmp_path_factory, tiny_model_dir, glue_dir):
    """A tiny BERT fine-tuned as a super-network on 32 RTE examples, as one Ray task (--finetune-on-cluster)."""
    output = tmp_path_factory.mktemp("supernet") / "ckpt"
    data = DataConfig(
        "rte", data_dir=str(glue_dir), max_train_samples=32, max_validation_samples=48, max_test_samples=32
    )
    ray_cluster.finetune_on_cluster(
        str(tiny_model_dir), data, FinetuneConfig(epochs=1, batch_size=16, lr=1e-3), output, max_seq_length=48
    )
    return output


def by_config(frame: pd.DataFrame) -> dict:
    configs = frame.filter(like="config_").astype(int).apply(tuple, axis=1)
    return dict(zip(configs, zip(frame["error"].round(10), frame["params"].round(10))))


def test_finetune_on_cluster_brings_the_checkpoint_back(supernet, tiny_model_dir, glue_dir):
    meta = read_supernet_meta(supernet)
    assert meta["status"] == "completed" and meta["options"]["max_seq_length"] == 48
    assert {"model.safetensors", "config.json", "tokenizer.json", "eval_log.csv"} <= {
        p.name for p in supernet.iterdir()
    }
    assert not supernet.with_name("ckpt.incoming").exists()
    data = DataConfig("rte", data_dir=str(glue_dir), max_train_samples=32)
    with pytest.raises(UserError, match="--overwrite"):  # the remote task's user error reaches the caller as itself
        ray_cluster.finetune_on_cluster(
            str(tiny_model_dir), data, FinetuneConfig(epochs=1), supernet, max_seq_length=48
        )


def test_launcher_search_on_two_actors_matches_the_local_executor(cluster, supernet, tmp_path, glue_dir):
    settings = SearchSettings(
        searcher="random", num_trials=8, workers=2
    )  # seeded: the same configs whatever the result order
    local, _ = search_checkpoint(supernet, tmp_path / "local", settings, data_dir=str(glue_dir), show_progress=False)
    code = ray_cluster.main(
        [
            "--checkpoint",
            str(supernet),
            "--address",
            cluster,
            "--workers",
            "2",
            "--searcher",
            "random",
            "--num-trials",
            "8",
            "--data-dir",
            str(glue_dir),
            "--output",
            str(tmp_path / "ray"),
        ]
    )
    assert code == 0
    remote = ResultsStore(tmp_path / "ray").to_frame()
    assert sorted(remote["trial_id"]) == list(range(8)) and (remote["status"] == "completed").all()
    assert by_config(remote) == by_config(local.to_frame())
    assert remote["worker"].str.fullmatch(r"ray-actor-[01]@[0-9.]+").all()


def test_each_actor_builds_the_supernet_once_without_the_checkpoint_folder(cluster, supernet, tmp_path, glue_dir):
    copy = tmp_path / "ckpt"
    shutil.copytree(supernet, copy)
    setup = checkpoint_evaluator(read_checkpoint(copy), data_dir=str(glue_dir))
    shutil.rmtree(copy)  # the actors get the super-network from the object store
    configs = [setup.evaluator.search_space.sample(np.random.default_rng(i)) for i in range(8)]
    with ray_executor(cluster)(setup, SearchSettings(workers=2, seed=0), None) as executor:
        executor.worker_stats()  # both actors are built, so both take trials
        for trial_id, config in enumerate(configs):
            executor.submit(TrialRequest(trial_id, config))
        outcomes = []
        while executor.running:
            outcomes += executor.wait()
        stats = executor.worker_stats()
    assert sorted(o.request.trial_id for o in outcomes) == list(range(8))
    for outcome in outcomes:
        assert outcome.metrics["error"] == setup.evaluator.evaluate(outcome.request.config).error
    assert (
        [s.builds for s in stats] == [1, 1] and sum(s.trials for s in stats) == 8 and min(s.trials for s in stats) > 0
    )
    assert len({s.node_id for s in stats}) == 2  # spread: one actor on each node
    assert {o.worker for o in outcomes} == {s.name for s in stats}


def test_trials_of_dead_actors_run_again_on_live_ones_and_the_search_completes(cluster, tmp_path):
    def build(marker: str):
        def evaluate(config, fidelity):
            if config["x"] == 3 and not os.path.exists(marker):  # the first run of x=3 kills its actor mid-trial
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            if config["x"] == 7:  # x=7 kills every actor that runs it
                os.kill(os.getpid(), signal.SIGKILL)
            return {"error": config["x"] / 100, "params": 1 - config["x"] / 100}

        return evaluate

    searcher = make_searcher(
        "random",
        {"x": randint(0, 99)},
        ["error", "params"],
        seed=0,
        initial_configs=[{"x": 1}, {"x": 2}, {"x": 3}, {"x": 7}],
    )
    settings = SearchSettings(searcher="random", num_trials=10, workers=2)
    with RayExecutor(build, (str(tmp_path / "died"),), 2, max_retries=1) as executor:
        frame = SearchDriver(ResultsStore(tmp_path / "run"), searcher, executor, settings, show_progress=False).run()
    assert sorted(frame["trial_id"]) == list(range(10))  # every trial exactly once
    assert executor.retried == 2  # x=3 once (then it completed), x=7 once (then it failed)
    failed = frame[frame["status"] == "failed"]
    assert list(failed["config_x"]) == [7] and "died on each of 2 attempts" in failed["error_message"].iloc[0]
    assert (frame.loc[frame["config_x"] == 3, "status"] == "completed").all()


def test_launcher_rejects_bad_cluster_options_with_exit_code_2(capsys):
    assert ray_cluster.main(["--checkpoint", "CKPT", "--cpus-per-worker", "0"]) == 2
    assert "--cpus-per-worker" in capsys.readouterr().err
