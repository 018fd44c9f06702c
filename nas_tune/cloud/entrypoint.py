"""Container entry of the SageMaker jobs: `python -m nas_tune.cloud.entrypoint finetune|search`.

SageMaker starts the image with this command (the request's ContainerEntrypoint and ContainerArguments), so any
image with Python and nas-tune installed works. It turns /opt/ml/input/config/hyperparameters.json back into
`nas-tune` options, points data, checkpoint and output at SageMaker's folders, unpacks job 1's model.tar.gz for
job 2 (SageMaker delivers it as one file), and runs the `nas-tune` command, whose exit code it returns:

    finetune: nas-tune finetune <options> --data-dir /opt/ml/input/data/training --output /opt/ml/model
    search:   nas-tune search <options> --checkpoint /opt/ml/input/data/checkpoint
                              --data-dir /opt/ml/input/data/training --output /opt/ml/model
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

from nas_tune import cli
from nas_tune.cloud.sagemaker import CHECKPOINT_CHANNEL, STAGES, TRAINING_CHANNEL, to_argv
from nas_tune.errors import UserError
from nas_tune.supernet import SUPERNET_FILE

ROOT = Path("/opt/ml")
ARTIFACT = "model.tar.gz"


def unpack_checkpoint(folder: Path) -> Path:
    """Extract job 1's model.tar.gz in place (once), so the channel folder is a super-network checkpoint."""
    tarball = folder / ARTIFACT
    if not (folder / SUPERNET_FILE).is_file():
        if not tarball.is_file():
            raise UserError(
                f"The checkpoint channel {folder} holds neither {ARTIFACT} nor {SUPERNET_FILE}: pass job 1's model artifact as --checkpoint-s3."
            )
        with tarfile.open(tarball) as archive:
            archive.extractall(folder, filter="data")
        tarball.unlink()
    return folder


def command_argv(stage: str, root: Path = ROOT) -> list[str]:
    """The `nas-tune` argv of a stage from the job's hyper-parameters and SageMaker's folder layout."""
    config = root / "input" / "config" / "hyperparameters.json"
    hyperparameters = json.loads(config.read_text()) if config.is_file() else {}
    data = root / "input" / "data"
    argv = [stage, *to_argv(hyperparameters)]
    if stage == "search":
        argv += ["--checkpoint", str(unpack_checkpoint(data / CHECKPOINT_CHANNEL))]
    return argv + ["--data-dir", str(data / TRAINING_CHANNEL), "--output", str(root / "model")]


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in STAGES:
        print(f"usage: python -m nas_tune.cloud.entrypoint {{{','.join(STAGES)}}}", file=sys.stderr)
        return 2
    try:
        command = command_argv(argv[0], root)
    except UserError as error:
        print(f"nas_tune.cloud.entrypoint: error: {error}", file=sys.stderr)
        return 2
    print("running: nas-tune " + " ".join(command), file=sys.stderr, flush=True)
    return cli.main(command)


if __name__ == "__main__":
    sys.exit(main())
