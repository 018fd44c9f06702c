"""Run the nas-tune stages as cloud jobs: SageMaker request builders, boto3 calls and the container entry."""
