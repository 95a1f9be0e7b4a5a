"""Typed errors. Every error a user can cause derives from ModExportError and carries an exit code.

The CLI prints `error: <message>` on one line and exits with `exit_code`; no traceback unless --debug.
"""
from __future__ import annotations


class ModExportError(Exception):
    """Base class: an error with a one-line message meant for the user."""

    exit_code = 1


class ConfigError(ModExportError):
    """A model configuration is invalid (bad capacity, heads that do not divide the width, ...)."""


class CheckpointError(ModExportError):
    """A checkpoint is missing, corrupt, unsafe, or does not match its config."""


class CorpusError(ModExportError):
    """Training or calibration text is missing or too short."""


class ExportError(ModExportError):
    """ONNX export failed or produced an invalid graph."""


class OutputDirError(ModExportError):
    """The output directory cannot be used (not writable, not empty without --force)."""


class ParityError(ModExportError):
    """Validation found mismatches between backends; `mismatches` lists every one of them."""

    exit_code = 3

    def __init__(self, message: str, mismatches: list[str] | None = None):
        super().__init__(message)
        self.mismatches = list(mismatches or [])


class MissingDependencyError(ModExportError):
    """An optional dependency (TensorRT, a GPU, nvcc, ...) is not available here."""

    exit_code = 4


class ModelError(ModExportError):
    """The model itself is broken or unusable: non-finite outputs on real text, routing that the graph and the
    module disagree about, ..."""
