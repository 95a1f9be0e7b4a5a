"""`.pt2` archives of any model that calls mod_export.ops: torch.export with the dynamic batch and sequence
axes set the way the ops need them (seq min above the capacity denominator, see onnx_export._dynamic_shapes),
then torch.export.save. The archive loads back in any process that imports mod_export.ops."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import torch

from mod_export.errors import ExportError
from mod_export.exporter.onnx_export import dynamic_shapes
from mod_export.models.sources import as_source, from_module
from mod_export.output import Target, kinds

logger = logging.getLogger(__name__)


def save_archive(model: torch.nn.Module, path: str | os.PathLike, example_inputs=None) -> Path:
    """torch.export the module (forward(input_ids, attention_mask) -> logits) and save it atomically at path."""
    path = Path(path)
    if path.suffix != ".pt2":
        raise ExportError(f"{path}: a torch.export archive is named *.pt2")
    src = from_module(model, example_inputs) if example_inputs is not None else as_source(model)
    if src.routed_count() == 0:
        raise ExportError(f"no routing ops found in {src.source}: nothing MoD to archive")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.export.export(src.module, src.inputs(), dynamic_shapes=dynamic_shapes(src))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"torch.export failed: {first}") from exc
    with Target(path, kinds.PT2_ARCHIVE, force=True) as target:  # replaces an earlier archive, nothing else
        target.write_with(lambda tmp: torch.export.save(program, tmp))
    logger.info("saved %s (%d routing calls per forward)", path, src.routed_count())
    return path
