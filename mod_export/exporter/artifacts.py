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
from collections.abc import Iterable
from pathlib import Path

import onnx

from mod_export.output import OutputLock, StagedDir, check_target, kinds, resolve_output

EXTERNAL_DATA_THRESHOLD = 1_800_000_000  # protobuf cannot serialise a message over 2 GiB

__all__ = ["ArtifactDir", "OutputLock", "check_output_dir", "resolve_output", "why_not_ours"]


def why_not_ours(directory: Path) -> str | None:
    """None when `directory` is an earlier export of this tool (a mod-export manifest.json listing every file in
    it); otherwise the reason, naming the first foreign file."""
    return kinds.export_folder(Path(directory))


def check_output_dir(final: Path, force: bool, inputs: Iterable[Path] = ()) -> None:
    """Fail early, before any work, when `final` cannot be used."""
    check_target(final, kinds.EXPORT_FOLDER, force, inputs)


class ArtifactDir(StagedDir):
    """with ArtifactDir(out, force, inputs) as art: art.save_onnx(proto, 'model.onnx') ...; committed on a clean
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

    def save_onnx(self, model: onnx.ModelProto, name: str) -> Path:
        """Save; models too large for one protobuf use external data (NAME.data beside the file)."""
        size = sum(len(t.raw_data) for t in model.graph.initializer)
        if size > EXTERNAL_DATA_THRESHOLD:
            return self.write_with(
                name,
                lambda path: onnx.save_model(
                    model,
                    str(path),
                    save_as_external_data=True,
                    all_tensors_to_one_file=True,
                    location=f"{name}.data",
                    size_threshold=1024,
                ),
            )
        return self.write_with(name, lambda path: onnx.save_model(model, str(path)))
