"""SageMaker training jobs for the two nas-tune stages: pure request builders plus thin boto3 calls.

Requests are plain dicts, exactly what `CreateTrainingJob` and `upload_file` receive, so `--dry-run` can print
them and tests can read them without AWS. Clients are created only inside the calls, with credentials from the
standard AWS chain (environment, profile, SSO, instance role), never from arguments.

Hyper-parameters are the contract with the container (`nas_tune.cloud.entrypoint`): SageMaker carries only
strings, so an option travels under its name without dashes (`--search-space small` as {"search-space": "small"}),
a set flag as "true"; unset options (None, False) are left out and the command's own defaults apply.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from nas_tune.errors import UserError

if TYPE_CHECKING:  # nas_tune.data loads torch, which the launcher's --help does not need
    from nas_tune.data import TaskSpec

STAGES = ("finetune", "search")
TRAINING_CHANNEL, CHECKPOINT_CHANNEL = "training", "checkpoint"
ENTRYPOINT = ["python", "-u", "-m", "nas_tune.cloud.entrypoint"]  # -u: logs reach CloudWatch as they are written
VOLUME_GB = 30  # model, tokenised data and the checkpoint fit with room to spare
POLL_SECONDS = 30
FLAG = "true"

_ROLE = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")
_BUCKET = re.compile(r"(?!\d+\.\d+\.\d+\.\d+$)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class JobFailed(Exception):
    """A training job ended Failed or Stopped: not bad input, so launchers exit 1."""


@dataclass(frozen=True)
class JobSettings:
    """Where and how both jobs run; validated on creation so nothing is uploaded for a request AWS would refuse."""

    role: str | None
    bucket: str | None
    region: str | None
    image_uri: str | None
    prefix: str = "nas-tune"
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    max_run: int = 86400

    def __post_init__(self) -> None:
        if not self.role:
            raise UserError(
                "No IAM role given: pass --role with the ARN of a role SageMaker can assume, e.g. arn:aws:iam::123456789012:role/SageMakerRole."
            )
        if not _ROLE.fullmatch(self.role):
            raise UserError(
                f"--role {self.role!r} is not an IAM role ARN: pass one like arn:aws:iam::123456789012:role/SageMakerRole."
            )
        if not self.bucket:
            raise UserError(
                "No S3 bucket given: pass --bucket with the name of a bucket you can write to (data and results go there)."
            )
        if not _BUCKET.fullmatch(self.bucket):
            raise UserError(
                f"--bucket {self.bucket!r} is not a valid S3 bucket name: pass just the name (3-63 lowercase letters, digits, dots or hyphens), without s3:// or a path."
            )
        if not self.region:
            raise UserError(
                "No AWS region given: pass --region (e.g. us-east-1) or set AWS_REGION or AWS_DEFAULT_REGION."
            )
        if not self.image_uri:
            raise UserError("No container image given: pass --image-uri with an ECR image that has nas-tune installed.")

    def s3_uri(self, *parts: str) -> str:
        return "s3://" + "/".join(p for p in (self.bucket, self.prefix.strip("/"), *parts) if p)

    @property
    def data_uri(self) -> str:
        """The GLUE folder uploads go to; the trailing slash keeps the prefix from matching `data-old/`."""
        return self.s3_uri("data") + "/"

    def artifact_uri(self, job_name: str) -> str:
        """Where SageMaker puts a job's /opt/ml/model: <S3OutputPath>/<job-name>/output/model.tar.gz."""
        return self.s3_uri(job_name, "output", "model.tar.gz")


def to_hyperparameters(values: Mapping[str, object]) -> dict[str, str]:
    """Parsed option values, keyed by argparse destination (`search_space`), as SageMaker hyper-parameters."""
    return {
        dest.replace("_", "-"): FLAG if value is True else str(value)
        for dest, value in values.items()
        if value is not None and value is not False
    }


def to_argv(hyperparameters: Mapping[str, str]) -> list[str]:
    """The command-line options that `to_hyperparameters` encoded."""
    argv: list[str] = []
    for key, value in hyperparameters.items():
        argv += [f"--{key}"] if value == FLAG else [f"--{key}", value]
    return argv


def timestamp(now: datetime | None = None) -> str:
    """UTC to the millisecond, so two launches never share a job name."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S-%f")[:-3]


def job_name(task: TaskSpec, stage: str, stamp: str) -> str:
    """`nas-tune-rte-finetune-20261129-153012-123`: at most 44 characters of [a-z0-9-] (SageMaker allows 63)."""
    return f"nas-tune-{task.name}-{stage}-{stamp}"


def glue_uploads(data_dir: str | Path, task: TaskSpec, settings: JobSettings) -> list[dict[str, str]]:
    """`upload_file` requests for the task's own GLUE files only, keeping the GLUE layout under `data_uri`."""
    from nas_tune.data.loading import GLUE_LAYOUTS

    layout = GLUE_LAYOUTS[task.name]
    folder = Path(data_dir).expanduser() / layout.directory
    files = [folder / "train.tsv", folder / layout.dev_file]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(
            f"No {task.name} data to upload ({', '.join(missing)} missing): point --data-dir (or $GLUE_DIR) at a "
            f"GLUE folder holding {layout.directory}/train.tsv and {layout.dev_file}, or pass --s3-data."
        )
    key_prefix = settings.data_uri.removeprefix(f"s3://{settings.bucket}/")
    return [
        {"Filename": str(f.resolve()), "Bucket": settings.bucket, "Key": f"{key_prefix}{layout.directory}/{f.name}"}
        for f in files
    ]


def training_job_request(
    settings: JobSettings, name: str, stage: str, hyperparameters: Mapping[str, str], channels: Mapping[str, str]
) -> dict[str, Any]:
    """The CreateTrainingJob request of one stage; each channel (name -> S3 URI) appears at /opt/ml/input/data/<name>."""
    return {
        "TrainingJobName": name,
        "RoleArn": settings.role,
        "AlgorithmSpecification": {
            "TrainingImage": settings.image_uri,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ENTRYPOINT,
            "ContainerArguments": [stage],
        },
        "HyperParameters": dict(hyperparameters),
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel, uri in channels.items()
        ],
        "OutputDataConfig": {"S3OutputPath": settings.s3_uri()},
        "ResourceConfig": {
            "InstanceType": settings.instance_type,
            "InstanceCount": settings.instance_count,
            "VolumeSizeInGB": VOLUME_GB,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_run},
    }


# --- AWS calls -------------------------------------------------------------------------------------------------


def client(service: str, region: str):
    """A boto3 client, made only when a call needs one."""
    return boto3.client(service, region_name=region)


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """botocore's exceptions as one sentence each; what AWS said is kept, the traceback is not."""
    try:
        yield
    except NoCredentialsError:
        raise UserError(
            f"No AWS credentials found to {action}: configure the standard AWS chain "
            "(aws configure, AWS_PROFILE, SSO or an instance role)."
        ) from None
    except ClientError as error:
        detail = error.response.get("Error", {})
        raise UserError(
            f"AWS refused to {action} ({detail.get('Code')}: {detail.get('Message')}); "
            "check --role, --bucket, --region and your permissions."
        ) from None
    except (S3UploadFailedError, BotoCoreError) as error:
        raise UserError(f"Could not {action} ({error}); check the bucket, --region and your network.") from None


def upload_files(uploads: list[dict[str, str]], region: str) -> None:
    if not uploads:
        return
    s3 = client("s3", region)
    for upload in uploads:
        with aws_errors(f"upload {upload['Filename']} to s3://{upload['Bucket']}/{upload['Key']}"):
            s3.upload_file(**upload)


def submit(request: Mapping[str, Any], region: str) -> None:
    with aws_errors(f"create training job {request['TrainingJobName']}"):
        client("sagemaker", region).create_training_job(**request)


def wait_for_job(name: str, region: str) -> dict[str, Any]:
    """Poll until the job ends, logging each status change to stderr; return the final description."""
    sagemaker = client("sagemaker", region)
    shown = None
    while True:
        with aws_errors(f"describe training job {name}"):
            job = sagemaker.describe_training_job(TrainingJobName=name)
        status = job["TrainingJobStatus"]
        state = f"{status} ({job.get('SecondaryStatus', '?')})"
        if state != shown:
            print(f"{time.strftime('%H:%M:%S')} {name}: {state}", file=sys.stderr, flush=True)
            shown = state
        if status in ("Completed", "Failed", "Stopped"):
            break
        time.sleep(POLL_SECONDS)
    if status != "Completed":
        raise JobFailed(
            f"training job {name} ended {status}: {job.get('FailureReason', 'no reason given')} "
            "(see its CloudWatch log stream /aws/sagemaker/TrainingJobs)."
        )
    return job
