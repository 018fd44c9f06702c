"""Pruning tools the pipeline uses on a super-network: importance reordering before training (`reorder`), and
the least-squares layer reconstruction (`mask_tuning`) that rfp applies to its masks and `--repair` to the
sub-networks a search picked (`repair`). Family knowledge stays behind the model adapters."""
