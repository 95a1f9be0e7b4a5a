"""mod-export: export Mixture-of-Depths transformers to ONNX and TensorRT with validated parity (docs/).

The package root stays light (no torch import): `mod_export.runtime` must load in a deployment environment
without PyTorch, so the torch-side entry points below load on first use."""

from __future__ import annotations

from mod_export.contract import VERSION as __version__
from mod_export.errors import MissingDependencyError

__all__ = ["__version__", "export", "load_checkpoint", "save_archive"]


def load_checkpoint(path, unsafe: bool = False):
    """Load a mod_export/1 checkpoint as an eval-mode torch.nn.Module: forward(input_ids, attention_mask=None) -> logits."""
    try:
        from mod_export.models.checkpoint import load_checkpoint as _load  # noqa: PLC0415 - torch, on first use only
    except ModuleNotFoundError as exc:  # mod-export-runtime: no models/ package, or no torch
        raise MissingDependencyError(
            f"load_checkpoint needs the exporter (`pip install mod-export`, with PyTorch); this environment has the "
            f"deployment runtime only ({exc})"
        ) from None
    return _load(path, unsafe=unsafe)


def export(model, example_inputs=None, out_dir="export", **options):
    """The whole export job for a live nn.Module (any class that calls mod_export.ops) or a model path:
    see mod_export.api.export for the options; returns an ExportResult."""
    from mod_export.api import export as _export  # noqa: PLC0415 - torch, on first use only

    return _export(model, example_inputs, out_dir, **options)


def save_archive(model, path, example_inputs=None):
    """torch.export a model that calls mod_export.ops into a .pt2 archive with the right dynamic axes."""
    from mod_export.exporter.archive import save_archive as _save  # noqa: PLC0415 - torch, on first use only

    return _save(model, path, example_inputs)
