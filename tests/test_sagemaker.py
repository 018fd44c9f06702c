"""SageMaker launcher, request builders and container entry, all offline: moto mocks S3 and SageMaker, botocore's
Stubber scripts job states moto cannot (InProgress -> Completed, Failed)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from moto import mock_aws

from nas_tune import cli
from nas_tune.cloud import entrypoint
from nas_tune.cloud import sagemaker as sm
from nas_tune.data import GLUE_TASKS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "launchers"))  # the launcher imports its sibling local.py
_spec = importlib.util.spec_from_file_location("sagemaker_launcher", REPO / "launchers" / "sagemaker.py")
launcher = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(launcher)

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/nas-tune:latest"
BUCKET = "nas-tune-test"
AWS = [
    "--dataset",
    "rte",
    "--role",
    ROLE,
    "--bucket",
    BUCKET,
    "--prefix",
    "runs",
    "--region",
    REGION,
    "--image-uri",
    IMAGE,
]
LATENCY_DEFAULTS = {
    "latency-batch-size": "1",
    "latency-warmup": "3",
    "latency-repeats": "10",
}  # the search job's timing flags
SAGEMAKER_MODEL = botocore.session.get_session().get_service_model("sagemaker")


@pytest.fixture
def aws(monkeypatch):
    """Fake credentials and mocked S3 + SageMaker holding an empty bucket."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield


def bucket_objects() -> dict[str, int]:
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET)
    return {o["Key"]: o["Size"] for o in listed.get("Contents", [])}


def training_jobs(region: str = REGION) -> list[str]:
    return [
        j["TrainingJobName"]
        for j in boto3.client("sagemaker", region_name=region).list_training_jobs()["TrainingJobSummaries"]
    ]


def describe(name: str, region: str = REGION) -> dict:
    return boto3.client("sagemaker", region_name=region).describe_training_job(TrainingJobName=name)


def channels(job: dict) -> dict[str, str]:
    return {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}


def artifact_of(name: str) -> str:
    return f"s3://{BUCKET}/runs/{name}/output/model.tar.gz"


# --- names and requests ----------------------------------------------------------------------------------------


def test_job_names_are_valid_for_every_task_and_unique_per_millisecond():
    pattern = (
        SAGEMAKER_MODEL.operation_model("CreateTrainingJob").input_shape.members["TrainingJobName"].metadata["pattern"]
    )
    stamp = sm.timestamp(datetime(2026, 11, 29, 23, 59, 59, 999999, tzinfo=timezone.utc))
    assert stamp == "20261129-235959-999"
    for task in GLUE_TASKS.values():
        for stage in sm.STAGES:
            name = sm.job_name(task, stage, stamp)
            assert name.startswith(f"nas-tune-{task.name}-{stage}-") and len(name) <= 63 and re.fullmatch(pattern, name)
    assert sm.timestamp(datetime(2026, 1, 1, 0, 0, 0, 1000, tzinfo=timezone.utc)) != sm.timestamp(
        datetime(2026, 1, 1, tzinfo=timezone.utc)
    )


def test_dry_run_prints_one_json_document_of_valid_requests_and_sends_nothing(aws, glue_dir, capsys):
    assert launcher.main([*AWS, "--data-dir", str(glue_dir), "--quick", "--num-trials", "5", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["s3_upload_file"] == [
        {"Filename": str(glue_dir / "RTE" / name), "Bucket": BUCKET, "Key": f"runs/data/RTE/{name}"}
        for name in ("train.tsv", "dev.tsv")
    ]
    finetune, search = plan["create_training_job"]
    for request in (finetune, search):
        validate_parameters(
            request, SAGEMAKER_MODEL.operation_model("CreateTrainingJob").input_shape
        )  # raises if AWS would refuse the shape
    assert channels(finetune) == {"training": f"s3://{BUCKET}/runs/data/"}
    assert channels(search) == {
        "training": f"s3://{BUCKET}/runs/data/",
        "checkpoint": artifact_of(finetune["TrainingJobName"]),
    }
    assert search["HyperParameters"] == {
        "search-space": "small",
        "searcher": "local_search",
        "num-trials": "5",
        "workers": "1",
        "objectives": "error,params",
        "seed": "0",
        **LATENCY_DEFAULTS,
    }
    assert finetune["AlgorithmSpecification"]["ContainerArguments"] == ["finetune"] and search[
        "AlgorithmSpecification"
    ]["ContainerArguments"] == ["search"]
    assert bucket_objects() == {} and training_jobs() == []


# --- submitting with moto --------------------------------------------------------------------------------------


def test_submit_uploads_the_task_and_creates_job_1_then_the_printed_follow_up_creates_job_2(aws, glue_dir, capsys):
    argv = [
        *AWS,
        "--data-dir",
        str(glue_dir),
        "--quick",
        "--epochs",
        "3",
        "--lr",
        "3e-5",
        "--instance-type",
        "ml.c5.2xlarge",
        "--instance-count",
        "1",
        "--max-run",
        "7200",
        "--searcher",
        "random",
        "--workers",
        "2",
    ]
    assert launcher.main(argv) == 0
    out = capsys.readouterr().out
    assert bucket_objects() == {
        f"runs/data/RTE/{n}": (glue_dir / "RTE" / n).stat().st_size for n in ("train.tsv", "dev.tsv")
    }
    [name] = training_jobs()
    assert re.fullmatch(r"nas-tune-rte-finetune-\d{8}-\d{6}-\d{3}", name) and name in out
    job = describe(name)
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE and job["AlgorithmSpecification"][
        "ContainerArguments"
    ] == ["finetune"]
    assert job["AlgorithmSpecification"]["ContainerEntrypoint"] == ["python", "-u", "-m", "nas_tune.cloud.entrypoint"]
    assert job["RoleArn"] == ROLE
    assert job["ResourceConfig"]["InstanceType"] == "ml.c5.2xlarge" and job["ResourceConfig"]["InstanceCount"] == 1
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/runs"
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == artifact_of(name)
    assert channels(job) == {"training": f"s3://{BUCKET}/runs/data/"}
    hyper = job["HyperParameters"]
    assert {
        k: hyper[k]
        for k in ("dataset", "epochs", "lr", "max-train-samples", "max-seq-length", "strategy", "search-space", "seed")
    } == {
        "dataset": "rte",
        "epochs": "3",
        "lr": "3e-05",
        "max-train-samples": "256",
        "max-seq-length": "64",
        "strategy": "sandwich_kd",
        "search-space": "small",
        "seed": "0",
    }  # explicit options beat --quick
    assert not {"data-dir", "output", "num-trials", "searcher", "quick", "trust-remote-code"} & set(hyper)

    [command] = [line.strip() for line in out.splitlines() if line.strip().startswith(launcher.PROG)]
    follow_up = shlex.split(command)[len(shlex.split(launcher.PROG)) :]
    assert follow_up[-3:] == ["--search-only", "--checkpoint-s3", artifact_of(name)]
    assert launcher.main(follow_up) == 0
    [search_name] = [n for n in training_jobs() if n != name]
    search = describe(search_name)
    assert search_name.startswith("nas-tune-rte-search-") and search["AlgorithmSpecification"][
        "ContainerArguments"
    ] == ["search"]
    assert channels(search) == {"training": f"s3://{BUCKET}/runs/data/", "checkpoint": artifact_of(name)}
    assert search["HyperParameters"] == {
        "search-space": "small",
        "searcher": "random",
        "num-trials": "16",
        "workers": "2",
        "objectives": "error,params",
        "seed": "0",
        **LATENCY_DEFAULTS,
    }
    assert search["ResourceConfig"]["InstanceType"] == "ml.c5.2xlarge" and search["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 7200
    }
    assert len(bucket_objects()) == 2  # the follow-up reuses the uploaded data


def test_region_and_data_come_from_the_environment(aws, glue_dir, monkeypatch, capsys):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    argv = [a for a in AWS if a not in ("--region", REGION)]
    assert launcher.main(argv) == 0
    assert training_jobs(REGION) == [] and len(training_jobs("eu-west-1")) == 1
    assert set(bucket_objects()) == {"runs/data/RTE/train.tsv", "runs/data/RTE/dev.tsv"}


# --- --wait with scripted job states ---------------------------------------------------------------------------


def _described(name: str, status: str, secondary: str, artifact: str = "s3://elsewhere/model.tar.gz", **extra) -> dict:
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{name}",
        "ModelArtifacts": {"S3ModelArtifacts": artifact},
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "CreationTime": datetime(2026, 11, 29, tzinfo=timezone.utc),
        **extra,
    }


@pytest.fixture
def stubbed(aws, monkeypatch):
    """A SageMaker client whose answers the test scripts; S3 stays on moto. Yields (stubber, created requests)."""
    client = boto3.client("sagemaker", region_name=REGION)
    created: list[dict] = []
    client.meta.events.register(
        "provide-client-params.sagemaker.CreateTrainingJob", lambda params, **_: created.append(dict(params))
    )
    monkeypatch.setattr(
        sm,
        "client",
        lambda service, region: client if service == "sagemaker" else boto3.client(service, region_name=region),
    )
    monkeypatch.setattr(sm, "POLL_SECONDS", 0)
    with Stubber(client) as stubber:
        yield stubber, created
        stubber.assert_no_pending_responses()


def test_wait_follows_job_1_then_submits_job_2_on_its_artifact(stubbed, glue_dir, capsys):
    stubber, created = stubbed
    job1_artifact = f"s3://{BUCKET}/runs/from-describe/output/model.tar.gz"  # taken from AWS's answer, not recomputed
    created_ok = {"TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/x"}
    stubber.add_response("create_training_job", created_ok)
    for status, secondary in (
        ("InProgress", "Starting"),
        ("InProgress", "Training"),
        ("InProgress", "Training"),
        ("Completed", "Completed"),
    ):
        stubber.add_response("describe_training_job", _described("job1", status, secondary, job1_artifact))
    stubber.add_response("create_training_job", created_ok)
    stubber.add_response("describe_training_job", _described("job2", "InProgress", "Downloading"))
    stubber.add_response(
        "describe_training_job",
        _described("job2", "Completed", "Completed", f"s3://{BUCKET}/runs/job2/output/model.tar.gz"),
    )

    assert launcher.main([*AWS, "--data-dir", str(glue_dir), "--quick", "--wait"]) == 0
    finetune, search = created
    assert finetune["TrainingJobName"].startswith("nas-tune-rte-finetune-") and search["TrainingJobName"].startswith(
        "nas-tune-rte-search-"
    )
    assert channels(search) == {"training": f"s3://{BUCKET}/runs/data/", "checkpoint": job1_artifact}
    captured = capsys.readouterr()
    transitions = [line.split(": ", 1)[1] for line in captured.err.splitlines() if finetune["TrainingJobName"] in line]
    assert transitions == ["InProgress (Starting)", "InProgress (Training)", "Completed (Completed)"]  # changes only
    assert f"search results: s3://{BUCKET}/runs/job2/output/model.tar.gz" in captured.out
    assert len(bucket_objects()) == 2


def test_a_failed_job_1_exits_1_with_its_reason_and_never_starts_job_2(stubbed, capsys):
    stubber, created = stubbed
    stubber.add_response(
        "create_training_job", {"TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/x"}
    )
    stubber.add_response(
        "describe_training_job", _described("job1", "Failed", "Failed", FailureReason="AlgorithmError: exit code 2")
    )
    assert launcher.main([*AWS, "--s3-data", "s3://glue-bucket/glue", "--wait"]) == 1
    err = capsys.readouterr().err
    assert "ended Failed: AlgorithmError: exit code 2" in err and "Traceback" not in err
    assert len(created) == 1 and channels(created[0]) == {"training": "s3://glue-bucket/glue/"}


# --- errors ----------------------------------------------------------------------------------------------------


def _without(argv: list[str], option: str) -> list[str]:
    index = argv.index(option)
    return argv[:index] + argv[index + 2 :]


@pytest.mark.parametrize(
    "argv, unset, message",
    [
        (_without(AWS, "--role"), (), "No IAM role given: pass --role"),
        (_without(AWS, "--bucket"), (), "No S3 bucket given: pass --bucket"),
        (_without(AWS, "--region"), ("AWS_REGION", "AWS_DEFAULT_REGION"), "No AWS region given: pass --region"),
        ([*_without(AWS, "--role"), "--role", "SageMakerRole"], (), "is not an IAM role ARN"),
        ([*_without(AWS, "--bucket"), "--bucket", f"s3://{BUCKET}/x"], (), "is not a valid S3 bucket name"),
        ([*_without(AWS, "--dataset"), "--dataset", "imagenet"], (), "Unknown dataset 'imagenet'"),
        (AWS, ("GLUE_DIR",), "No data given: pass --data-dir"),
        ([*AWS, "--data-dir", "/nowhere", "--s3-data", "s3://b/glue"], (), "Both --data-dir and --s3-data given"),
        ([*AWS, "--s3-data", "b/glue"], (), "is not an S3 URI"),
        ([*AWS, "--data-dir", "/nowhere"], (), "No rte data to upload"),
        ([*AWS, "--s3-data", "s3://b/glue", "--search-only"], (), "--search-only and --checkpoint-s3 go together"),
        ([*AWS, "--train-file", "my.csv"], (), "Custom data files"),
    ],
)
def test_bad_input_exits_2_with_one_sentence_and_sends_nothing(aws, monkeypatch, capsys, argv, unset, message):
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    assert launcher.main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("sagemaker.py: error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err
    )
    assert bucket_objects() == {} and training_jobs() == []


@pytest.mark.parametrize("option", ["--instance-count", "--max-run"])
def test_counts_must_be_positive(capsys, option):
    with pytest.raises(SystemExit) as exit_:
        launcher.parse_args([*AWS, option, "0"])
    assert exit_.value.code == 2 and "must be a positive integer" in capsys.readouterr().err


def test_aws_errors_become_one_sentence(stubbed, glue_dir, capsys):
    stubber, _ = stubbed
    stubber.add_client_error(
        "create_training_job", service_error_code="ResourceLimitExceeded", service_message="quota for ml.m5.xlarge is 0"
    )
    assert launcher.main([*AWS, "--s3-data", "s3://b/glue"]) == 2
    err = capsys.readouterr().err
    assert (
        "AWS refused to create training job nas-tune-rte-finetune-" in err
        and "(ResourceLimitExceeded: quota for ml.m5.xlarge is 0)" in err
    )
    # an upload to a bucket that does not exist (moto)
    assert launcher.main([*_without(AWS, "--bucket"), "--bucket", "no-such-bucket", "--data-dir", str(glue_dir)]) == 2
    err = capsys.readouterr().err
    assert "Could not upload" in err and "no-such-bucket" in err and "Traceback" not in err


def test_missing_credentials_exit_2_before_anything_is_sent(monkeypatch, tmp_path, capsys):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    def guarded(service, region):  # any request that got as far as the network would fail the test
        made = boto3.client(service, region_name=region)
        made.meta.events.register("before-send", lambda **_: pytest.fail("a request was about to be sent"))
        return made

    monkeypatch.setattr(sm, "client", guarded)
    assert launcher.main([*AWS, "--s3-data", "s3://b/glue"]) == 2
    assert "No AWS credentials found to create training job" in capsys.readouterr().err


def test_the_script_exits_2_without_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    done = subprocess.run(
        [sys.executable, "launchers/sagemaker.py", *_without(AWS, "--region"), "--s3-data", "s3://b/glue"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr.strip()
        == "sagemaker.py: error: No AWS region given: pass --region (e.g. us-east-1) or set AWS_REGION or AWS_DEFAULT_REGION."
    )


# --- the container entry ---------------------------------------------------------------------------------------


@pytest.fixture
def opt_ml(tmp_path, monkeypatch):
    """A fake /opt/ml; nas-tune's main only records the argv it was given."""
    calls: list[list[str]] = []
    monkeypatch.setattr(cli, "main", lambda argv: calls.append(argv) or 0)
    (tmp_path / "input" / "config").mkdir(parents=True)
    return tmp_path, calls


def _write_hyperparameters(root: Path, request: dict) -> None:
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))


def _plan(capsys, *extra: str) -> list[dict]:
    assert launcher.main([*AWS, "--s3-data", "s3://b/glue", "--dry-run", *extra]) == 0
    return json.loads(capsys.readouterr().out)["create_training_job"]


def test_entrypoint_turns_job_1_hyperparameters_into_the_finetune_command(opt_ml, capsys):
    root, calls = opt_ml
    finetune, _ = _plan(capsys, "--quick", "--epochs", "3", "--lr", "3e-5", "--trust-remote-code", "--strategy", "kd")
    _write_hyperparameters(root, finetune)
    assert entrypoint.main(["finetune"], root=root) == 0
    [argv] = calls
    assert argv[0] == "finetune" and argv[-4:] == [
        "--data-dir",
        str(root / "input/data/training"),
        "--output",
        str(root / "model"),
    ]
    assert "--trust-remote-code" in argv and argv[argv.index("--epochs") + 1] == "3"
    parsed = cli.build_parser().parse_args(argv)  # the real `nas-tune finetune` parser accepts it
    assert (
        parsed.dataset,
        parsed.epochs,
        parsed.lr,
        parsed.strategy,
        parsed.max_train_samples,
        parsed.max_seq_length,
    ) == ("rte", 3, 3e-5, "kd", 256, 64)
    assert (
        parsed.trust_remote_code
        and parsed.output == str(root / "model")
        and parsed.data_dir == str(root / "input/data/training")
    )


def test_entrypoint_untars_job_1_artifact_and_runs_the_search(opt_ml, capsys):
    root, calls = opt_ml
    _, search = _plan(capsys, "--quick", "--searcher", "nsga2", "--objectives", "error,params,latency")
    _write_hyperparameters(root, search)
    checkpoint = root / "input" / "data" / "checkpoint"
    checkpoint.mkdir(parents=True)
    with tarfile.open(checkpoint / "model.tar.gz", "w:gz") as archive:  # what SageMaker makes of job 1's /opt/ml/model
        for name, data in (("supernet.json", b'{"status": "completed"}'), ("model.safetensors", b"weights")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    assert entrypoint.main(["search"], root=root) == 0
    assert sorted(p.name for p in checkpoint.iterdir()) == ["model.safetensors", "supernet.json"]
    [argv] = calls
    parsed = cli.build_parser().parse_args(argv)
    assert (parsed.command, parsed.checkpoint, parsed.output) == ("search", str(checkpoint), str(root / "model"))
    assert (parsed.searcher, parsed.num_trials, parsed.objectives, parsed.search_space) == (
        "nsga2",
        16,
        "error,params,latency",
        "small",
    )
    assert entrypoint.main(["search"], root=root) == 0 and calls[1] == argv  # an unpacked checkpoint is used as it is


def test_entrypoint_refuses_a_missing_checkpoint_and_an_unknown_stage(opt_ml, capsys):
    root, calls = opt_ml
    assert entrypoint.main(["search"], root=root) == 2
    assert "holds neither model.tar.gz nor supernet.json" in capsys.readouterr().err
    assert entrypoint.main(["export"], root=root) == 2 and calls == []
