"""The one way mod-export writes a user's path (docs/errors.md, "What is refused, and what is kept").

Every command and function that writes (export, convert, example, validate --report, bench --out, build-plugins,
the calibration cache, save_archive, the TensorRT engines and the Triton repository inside an export) goes through
this package, and tests/unit/test_output_module.py fails when a module elsewhere in mod_export/ or calibration/
writes, renames or deletes a file by itself. It decides:

- what may be replaced: only an output of the same kind that this tool wrote, recognised by its content (kinds:
  our manifest for an export, the mod_export/1 tag of a checkpoint, config.json's model_type for a model folder,
  the format key of a JSON report, ...), and only with --force; never an input, never anything inside an input;
- how: a temporary sibling, fsync, one rename (a folder is exchanged with the old one in one step), so a failure
  or a kill at any point leaves the previous output as it was;
- one run per output: an flock on `.NAME.lock`; once it holds the lock, a run removes what a killed run left
  beside NAME (`.NAME.tmp-*`, `.NAME.old-*`, `.NAME.new`, a stale lock) with one INFO line.
"""

from mod_export.output import kinds
from mod_export.output.files import (
    append_stream,
    copy_file,
    handed_out,
    is_handed_out,
    lasting_scratch_dir,
    make_dirs,
    move_file,
    open_stream,
    publish_dir,
    remove_file,
    remove_tree,
    scratch_dir,
    scratch_file,
    temporary_sibling,
    write_bytes,
    write_json,
    write_text,
    write_with,
)
from mod_export.output.kinds import Kind
from mod_export.output.lock import OutputLock, cleanup_stale
from mod_export.output.paths import absolute, can_write_in, nearest_existing, resolve_output, within
from mod_export.output.staged import StagedDir
from mod_export.output.target import BuildFolder, Target, check_build_folder, check_target

__all__ = [
    "BuildFolder",
    "Kind",
    "OutputLock",
    "StagedDir",
    "Target",
    "absolute",
    "can_write_in",
    "check_build_folder",
    "check_target",
    "cleanup_stale",
    "copy_file",
    "handed_out",
    "is_handed_out",
    "kinds",
    "make_dirs",
    "nearest_existing",
    "open_stream",
    "remove_tree",
    "append_stream",
    "lasting_scratch_dir",
    "move_file",
    "publish_dir",
    "remove_file",
    "scratch_file",
    "temporary_sibling",
    "resolve_output",
    "scratch_dir",
    "within",
    "write_bytes",
    "write_json",
    "write_text",
    "write_with",
]
