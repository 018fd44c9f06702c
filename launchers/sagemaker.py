"""Run the nas-tune pipeline as two SageMaker training jobs: super-network fine-tuning, then the search.

    python launchers/sagemaker.py --dataset rte --role ARN --bucket B --region us-east-1 --image-uri URI --quick --dry-run
    python launchers/sagemaker.py --dataset rte --role ARN --bucket B --region us-east-1 --image-uri URI --wait

Job 2 needs job 1's model artifact: with --wait both run one after the other; without it only job 1 is
submitted and the command that starts job 2 (--search-only --checkpoint-s3 ...) is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import TYPE_CHECKING

from nas_tune.cli.finetune import add_finetune_options
from nas_tune.cli.options import add_data_options, add_latency_options, add_model_options, add_search_space_option
from nas_tune.cli.pipeline_options import parse_pipeline_args, pipeline_parser
from nas_tune.cli.search import add_search_options
from nas_tune.cloud.sagemaker import (
    CHECKPOINT_CHANNEL,
    TRAINING_CHANNEL,
    JobFailed,
    JobSettings,
    glue_uploads,
    job_name,
    submit,
    timestamp,
    to_argv,
    to_hyperparameters,
    training_job_request,
    upload_files,
    wait_for_job,
)
from nas_tune.errors import UserError
from nas_tune.settings import positive_int

if TYPE_CHECKING:
    from nas_tune.data import TaskSpec

PROG = "python launchers/sagemaker.py"
# Set by the container itself (nas_tune.cloud.entrypoint) or local-only (custom data files are not uploaded).
NOT_SENT = {"data_dir", "train_file", "validation_file", "text_columns", "label_column"}


def option_dests(*add_options) -> list[str]:
    """The destinations an option helper defines, so each job receives exactly the options its command accepts."""
    parser = argparse.ArgumentParser(add_help=False)
    for add in add_options:
        add(parser)
    return [dest for dest in vars(parser.parse_args([])) if dest not in NOT_SENT]


JOB_OPTIONS = {
    "finetune": option_dests(add_model_options, add_data_options, add_search_space_option, add_finetune_options),
    "search": option_dests(add_search_space_option, add_search_options, add_latency_options),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = pipeline_parser(__doc__)
    aws = parser.add_argument_group("SageMaker (credentials come from the standard AWS chain)")
    aws.add_argument("--role", help="ARN of the IAM role the jobs run as")
    aws.add_argument("--bucket", help="S3 bucket for data and results")
    aws.add_argument("--prefix", default="nas-tune", help="key prefix in the bucket (default: nas-tune)")
    aws.add_argument("--region", help="AWS region (default: $AWS_REGION, then $AWS_DEFAULT_REGION)")
    aws.add_argument("--image-uri", help="container image with nas-tune installed (ECR)")
    aws.add_argument("--instance-type", default="ml.m5.xlarge", help="(default: ml.m5.xlarge)")
    aws.add_argument("--instance-count", type=positive_int, default=1, help="(default: 1; nas-tune uses one instance)")
    aws.add_argument(
        "--max-run", type=positive_int, default=86400, help="seconds after which a job is stopped (default: 86400)"
    )
    aws.add_argument(
        "--s3-data",
        help="GLUE folder already in S3 (holding <TASK>/train.tsv, dev.tsv), used instead of uploading --data-dir",
    )
    aws.add_argument("--search-only", action="store_true", help="submit only job 2 (the search), on --checkpoint-s3")
    aws.add_argument("--checkpoint-s3", help="job 1's model artifact (s3://.../output/model.tar.gz), for --search-only")
    aws.add_argument(
        "--dry-run",
        action="store_true",
        help="print the S3 uploads and CreateTrainingJob requests as JSON; send nothing",
    )
    aws.add_argument("--wait", action="store_true", help="follow the jobs until they end and run job 2 after job 1")
    return parse_pipeline_args(parser, argv)


def hyperparameters(args: argparse.Namespace, stage: str) -> dict[str, str]:
    return to_hyperparameters({dest: getattr(args, dest) for dest in JOB_OPTIONS[stage]})


def data_source(args: argparse.Namespace, task: TaskSpec, settings: JobSettings) -> tuple[str, list[dict[str, str]]]:
    """The training channel's S3 URI and the uploads that put the data there."""
    if args.train_file or args.validation_file:
        raise UserError(
            "Custom data files (--train-file, --validation-file) are not supported on SageMaker: use a GLUE task with --data-dir or --s3-data."
        )
    if args.s3_data:
        if args.data_dir:
            raise UserError(
                "Both --data-dir and --s3-data given: pass one, the local GLUE folder to upload or the S3 one to use."
            )
        if not args.s3_data.startswith("s3://"):
            raise UserError(
                f"--s3-data {args.s3_data!r} is not an S3 URI: pass one like s3://bucket/glue/ (holding {task.name} data in the GLUE layout)."
            )
        return args.s3_data.rstrip("/") + "/", []
    data_dir = args.data_dir or os.environ.get("GLUE_DIR")
    if not data_dir:
        raise UserError(
            "No data given: pass --data-dir (a local GLUE folder to upload), --s3-data (a GLUE folder in S3), or set GLUE_DIR."
        )
    return settings.data_uri, glue_uploads(data_dir, task, settings)


def follow_up(args: argparse.Namespace, settings: JobSettings, data_uri: str, checkpoint_uri: str) -> str:
    """The command that submits job 2 on job 1's artifact, with the values job 2 needs spelled out."""
    argv = [
        "--dataset",
        args.dataset,
        "--role",
        settings.role,
        "--bucket",
        settings.bucket,
        "--prefix",
        settings.prefix,
        "--region",
        settings.region,
        "--image-uri",
        settings.image_uri,
        "--instance-type",
        settings.instance_type,
        "--instance-count",
        str(settings.instance_count),
        "--max-run",
        str(settings.max_run),
        "--s3-data",
        data_uri,
        *to_argv(hyperparameters(args, "search")),
        "--search-only",
        "--checkpoint-s3",
        checkpoint_uri,
    ]
    return f"{PROG} {shlex.join(argv)}"


def run(args: argparse.Namespace) -> int:
    from nas_tune.data import get_task  # not at the top: loads torch, which --help and a bad option do not need

    task = get_task(args.dataset)
    if args.search_only != bool(args.checkpoint_s3):
        raise UserError(
            "--search-only and --checkpoint-s3 go together: pass both to submit only the search on job 1's model artifact."
        )
    settings = JobSettings(
        role=args.role,
        bucket=args.bucket,
        region=args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        image_uri=args.image_uri,
        prefix=args.prefix,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        max_run=args.max_run,
    )
    data_uri, uploads = data_source(args, task, settings)
    stamp = timestamp()
    finetune = training_job_request(
        settings,
        job_name(task, "finetune", stamp),
        "finetune",
        hyperparameters(args, "finetune"),
        {TRAINING_CHANNEL: data_uri},
    )

    def search(checkpoint_uri: str) -> dict:
        return training_job_request(
            settings,
            job_name(task, "search", stamp),
            "search",
            hyperparameters(args, "search"),
            {TRAINING_CHANNEL: data_uri, CHECKPOINT_CHANNEL: checkpoint_uri},
        )

    first = search(args.checkpoint_s3) if args.search_only else finetune
    if args.dry_run:
        jobs = [first] if args.search_only else [finetune, search(settings.artifact_uri(finetune["TrainingJobName"]))]
        print(json.dumps({"s3_upload_file": uploads, "create_training_job": jobs}, indent=2))
        return 0
    upload_files(uploads, settings.region)
    submit(first, settings.region)
    name = first["TrainingJobName"]
    print(f"submitted training job {name} (results: {settings.artifact_uri(name)})")
    if not args.wait:
        if not args.search_only:
            print(
                f"job 2 (the search) needs this job's model artifact; when it has completed "
                f"(aws sagemaker wait training-job-completed-or-stopped --training-job-name {name}), run:\n"
                f"  {follow_up(args, settings, data_uri, settings.artifact_uri(name))}"
            )
        return 0
    artifact = wait_for_job(name, settings.region)["ModelArtifacts"]["S3ModelArtifacts"]
    if not args.search_only:
        print(f"super-network checkpoint: {artifact}")
        second = search(artifact)
        submit(second, settings.region)
        print(f"submitted training job {second['TrainingJobName']}")
        artifact = wait_for_job(second["TrainingJobName"], settings.region)["ModelArtifacts"]["S3ModelArtifacts"]
    print(f"search results: {artifact}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except UserError as error:
        print(f"sagemaker.py: error: {error}", file=sys.stderr)
        return 2
    except JobFailed as error:
        print(f"sagemaker.py: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "sagemaker.py: interrupted; submitted jobs keep running (aws sagemaker stop-training-job stops one)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
