"""The export folder (docs/errors.md), written through mod_export.output:

- everything is written into a temporary sibling folder, then put in place of DIR in one step, so a failed or
  interrupted run leaves no half-written artifact (and the next run removes what a killed one left);
- an existing directory is replaced only with --force, and only when this tool wrote it: it carries our
  manifest.json and holds nothing that the manifest does not list;
- the output can never contain, or be contained in, an input (the model being exported);
- one run at a time per output: a lock file beside it makes a second concurrent run refuse.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import onnx

from mod_export.graph.weights import save_graphs
from mod_export.output import OutputLock, StagedDir, check_target, kinds, resolve_output

__all__ = ["ArtifactDir", "OutputLock", "check_output_dir", "resolve_output", "why_not_ours"]


def why_not_ours(directory: Path) -> str | None:
    """None when `directory` is an earlier export of this tool (a mod-export manifest.json listing every file in
    it); otherwise the reason, naming the first foreign file."""
    return kinds.export_folder(Path(directory))


def check_output_dir(final: Path, force: bool, inputs: Iterable[Path] = ()) -> None:
    """Fail early, before any work, when `final` cannot be used."""
    check_target(final, kinds.EXPORT_FOLDER, force, inputs)


class ArtifactDir(StagedDir):
    """with ArtifactDir(out, force, inputs) as art: art.save_onnx({'model.onnx': proto}) ...; committed on a clean
    exit. The caller holds an OutputLock on `out` for the whole run."""

    def __init__(self, final: str | os.PathLike, force: bool = False, inputs: Iterable[Path] = ()):
        self.force = force
        self.inputs = list(inputs)
        super().__init__(resolve_output(final), before_commit=self._check)

    def _check(self) -> None:
        check_output_dir(self.final, self.force, self.inputs)

    def __enter__(self) -> ArtifactDir:
        self._check()
        super().__enter__()
        return self

    def save_onnx(self, graphs: Mapping[str, onnx.ModelProto]) -> Path | None:
        """Save every graph and one data file with the tensors they use, each once (graph/weights.py); returns the
        data file (None when no graph has external weights)."""
        return save_graphs(graphs, self.tmp)
