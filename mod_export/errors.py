"""Typed errors and the exit-code contract (docs/errors.md). Every error a user can cause derives from
ModExportError and carries its exit code; the CLI prints `error: <message>` on one line and exits with it
(no traceback unless --debug).

    0    success
    1    a user error: bad input file, output directory, option value, ...
    2    usage: the command line itself is wrong (argparse)
    3    parity or quality failed (the artifacts are written so they can be inspected)
    4    a missing component: TensorRT, a GPU, nvcc, TensorRT headers
    70   a bug in mod-export, and only that
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USER = 1
EXIT_USAGE = 2
EXIT_PARITY = 3
EXIT_MISSING = 4
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class ModExportError(Exception):
    """Base class: an error with a one-line message meant for the user. `report`: what the failed job measured
    and wrote, when it got that far (the CLI prints its tables before the error line)."""

    exit_code = EXIT_USER

    def __init__(self, message: str = "", report: dict | None = None):
        super().__init__(message)
        self.report = report


class UsageError(ModExportError):
    """The command line is wrong (unknown option, missing argument, invalid choice)."""

    exit_code = EXIT_USAGE


class ConfigError(ModExportError, ValueError):
    """A model configuration is invalid (bad capacity, heads that do not divide the width, too large, ...). A
    ValueError too: the public routing ops (mod_export.ops) raise it for a bad capacity, as torch functions would."""


class CheckpointError(ModExportError):
    """A checkpoint is missing, corrupt, unsafe, or does not match its config."""


class IntegrityError(ModExportError):
    """A file's content does not match the hash recorded for it (damaged or edited)."""


class CorpusError(ModExportError):
    """Training or calibration text is missing, unreadable or too short."""


class ExportError(ModExportError):
    """ONNX export failed or produced an invalid graph, or an exported file is unusable."""


class OutputDirError(ModExportError):
    """The output cannot be used (not writable, not ours to replace, overlaps the input, locked by another run)."""


class InputError(ModExportError):
    """Runtime input is invalid (token ids out of range, wrong dtype or shape)."""


class ParityError(ModExportError):
    """Validation found mismatches between backends; `mismatches` lists every one of them."""

    exit_code = EXIT_PARITY

    def __init__(self, message: str, mismatches: list[str] | None = None, report: dict | None = None):
        super().__init__(message, report)
        self.mismatches = list(mismatches or [])


class MissingDependencyError(ModExportError):
    """An optional dependency (TensorRT, a GPU, nvcc, ...) is not available here."""

    exit_code = EXIT_MISSING


class ModelError(ModExportError):
    """The model itself is broken or unusable: non-finite outputs on real text, routing that the graph and the
    module disagree about, a vocabulary that differs from the exported files, ..."""
