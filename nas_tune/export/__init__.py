"""Export: a sub-network becomes a smaller model folder that plain `transformers` loads."""

from nas_tune.export.export import PROVENANCE_FILE, ExportResult, export_subnetwork, prepare_output_dir, set_label_names

__all__ = ["PROVENANCE_FILE", "ExportResult", "export_subnetwork", "prepare_output_dir", "set_label_names"]
