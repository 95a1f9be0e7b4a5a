"""The bad-input matrix for every command that writes (docs/errors.md, issue 26): validate --report, convert (both
directions), example, bench --out, build-plugins --build-dir, the export's output, and what `validate` must refuse
before it vouches for a directory. Each row: the exit code, the message fragment, exactly one `error:` line printed
last, no traceback, the file system exactly as before; and run a second time, the same answer with nothing left
behind (no temporary, lock or moved-aside file). Rows run in-process through `mod_export.cli.main.main`, with the
Row type and the builders of tests/unit/test_bad_input_matrix.py."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from mod_export.cli.main import main
from tests.helpers import snapshot
from tests.unit.test_bad_input_matrix import Row, existing_file, export_copy, placeholders, user_dir

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WriterRow(Row):
    locked: str | None = None  # an output whose lock another run holds (its name in the row's folder)


# ---------------------------------------------------------------- builders


def copy_ckpt(name: str = "model.pt", where: str = ""):
    def setup(tmp: Path, ctx: dict) -> None:
        (tmp / where).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ctx["ckpt"], tmp / where / name)

    return setup


def model_folder(name: str = "folder", extra: dict | None = None):
    """A model folder as `mod-export convert model.pt FOLDER` writes it, plus `extra` files."""

    def setup(tmp: Path, ctx: dict) -> None:
        from mod_export.models.checkpoint import load_checkpoint
        from mod_export.models.safetensors_folder import save_folder

        save_folder(load_checkpoint(ctx["ckpt"]), tmp / name)
        for rel, text in (extra or {}).items():
            (tmp / name / rel).write_text(text)

    return setup


def both(*setups):
    def setup(tmp: Path, ctx: dict) -> None:
        for one in setups:
            one(tmp, ctx)

    return setup


def symlink(name: str, target: str):
    def setup(tmp: Path, ctx: dict) -> None:
        os.symlink(tmp / target, tmp / name)

    return setup


def folder_with(name: str, files: dict):
    def setup(tmp: Path, ctx: dict) -> None:
        (tmp / name).mkdir()
        for rel, text in files.items():
            (tmp / name / rel).write_text(text)

    return setup


def manifest_edit(**changes):
    def mutate(d: Path) -> None:
        manifest = json.loads((d / "manifest.json").read_text())
        manifest.update(changes)
        (d / "manifest.json").write_text(json.dumps(manifest))

    return export_copy(mutate)


def truncate(name: str):
    return export_copy(lambda d: (d / name).write_bytes((d / name).read_bytes()[:1000]))


def zip_of_someone_else(tmp: Path, ctx: dict) -> None:
    shutil.make_archive(str(tmp / "data"), "zip", tmp / "folder")
    os.rename(tmp / "data.zip", tmp / "data.pt")


def swap_step_graph(d: Path) -> None:
    shutil.copyfile(d / "model.plugin.decode.onnx", d / "model.step.onnx")  # a graph of another kind in its place


OUR_REPORT = json.dumps({"format": "mod_export.validation/1", "passed": True, "mismatches": []})
BENCH_TAG = json.dumps({"format": "mod_export.bench/1", "model": "synthetic:64x2", "results": []})
CMAKE_CACHE = (
    "# This is the CMakeCache file.\nCMAKE_PROJECT_NAME:STATIC={project}\nCMAKE_HOME_DIRECTORY:INTERNAL={home}\n"
)


def cmake_cache(project: str, home: str):
    def setup(tmp: Path, ctx: dict) -> None:
        (tmp / "b").mkdir()
        (tmp / "b" / "CMakeCache.txt").write_text(CMAKE_CACHE.format(project=project, home=home.format(tmp=tmp)))

    return setup


VALIDATE = ["validate", "{ckpt}", "{dir}"]
CONVERT_BACK = ["convert", "{tmp}/folder"]  # a model folder -> a checkpoint
BENCH = ["bench", "synthetic:64x2", "--seq-lens", "16", "--repeats", "1", "--backends", "torch", "--no-profile"]
KERNELS = ["build-plugins", "--kernels-only", "--no-tests", "--archs", "80"]

ROWS = [
    # ---- validate --report: never the input, never inside DIR, never a file of another kind
    WriterRow(
        "report is the model",
        [*VALIDATE[:1], "{tmp}/model.pt", "{dir}", "--report", "{tmp}/model.pt"],
        1,
        "is the input itself",
        copy_ckpt(),
    ),
    WriterRow(
        "report is a symlink to the model",
        [*VALIDATE[:1], "{tmp}/model.pt", "{dir}", "--report", "{tmp}/r.json"],
        1,
        "is the input itself",
        both(copy_ckpt(), symlink("r.json", "model.pt")),
    ),
    WriterRow(
        "report over DIR's manifest",
        ["validate", "{ckpt}", "{tmp}/dir", "--report", "{tmp}/dir/manifest.json"],
        1,
        "is inside the input",
        export_copy(),
    ),
    WriterRow(
        "report over DIR's model",
        ["validate", "{ckpt}", "{tmp}/dir", "--report", "{tmp}/dir/model.onnx", "--force"],
        1,
        "is inside the input",
        export_copy(),
    ),
    WriterRow(
        "report as a new file in DIR",
        ["validate", "{ckpt}", "{tmp}/dir", "--report", "{tmp}/dir/r.json"],
        1,
        "is inside the input",
        export_copy(),
    ),
    WriterRow(
        "report over a user file",
        [*VALIDATE, "--report", "{tmp}/notes.txt"],
        1,
        "already exists",
        existing_file("notes.txt"),
    ),
    WriterRow(
        "report over a user file, forced",
        [*VALIDATE, "--report", "{tmp}/notes.txt", "--force"],
        1,
        "not a validation report mod-export wrote",
        existing_file("notes.txt"),
    ),
    WriterRow(
        "report over a JSON of someone else, forced",
        [*VALIDATE, "--report", "{tmp}/r.json", "--force"],
        1,
        "not a validation report",
        existing_file("r.json", '{"format": "other/1"}'),
    ),
    WriterRow(
        "report over our earlier report",
        [*VALIDATE, "--report", "{tmp}/r.json"],
        1,
        "pass --force",
        existing_file("r.json", OUR_REPORT),
    ),
    WriterRow("report is a directory", [*VALIDATE, "--report", "{tmp}"], 1, "is a directory"),
    WriterRow(
        "report locked by another run",
        [*VALIDATE, "--report", "{tmp}/r.json"],
        1,
        "another mod-export run",
        locked="r.json",
    ),
    # ---- validate vouches only for what it checked
    WriterRow(
        "validate truncated step graph",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "model.step.onnx does not match the sha256",
        truncate("model.step.onnx"),
    ),
    WriterRow(
        "validate truncated report.json",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "report.json does not match the sha256",
        truncate("report.json"),
    ),
    WriterRow(
        "integrity message names both ways to skip",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "--skip-integrity / skip_integrity=True",
        truncate("model.plugin.prefill.onnx"),
    ),
    WriterRow(
        "manifest files is a number",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "'files' must be an object",
        manifest_edit(files=5),
    ),
    WriterRow(
        "manifest files entry without bytes",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "'files' entry 'model.onnx'",
        manifest_edit(files={"model.onnx": {"sha256": "0"}}),
    ),
    WriterRow(
        "manifest names a file outside",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "not a path inside the folder",
        manifest_edit(files={"../model.pt": {"sha256": "0", "bytes": 1}}),
    ),
    WriterRow(
        "manifest idx tensors a string",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "'routing_idx_tensors' must be a list",
        manifest_edit(routing_idx_tensors="x"),
    ),
    WriterRow(
        "manifest generation a list",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "'generation' must be an object",
        manifest_edit(generation=[]),
    ),
    WriterRow(
        "manifest generation without layers",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "'generation.layers'",
        manifest_edit(generation={"step": "model.step.onnx"}),
    ),
    WriterRow(
        "manifest precision a number",
        ["validate", "{ckpt}", "{tmp}/dir"],
        1,
        "'precision' must be a string",
        manifest_edit(precision=16),
    ),
    WriterRow(
        "step graph swapped, integrity skipped",
        ["validate", "{ckpt}", "{tmp}/dir", "--skip-integrity"],
        1,
        "generation graphs",
        export_copy(swap_step_graph),
    ),
    # ---- convert, a model folder -> a checkpoint
    WriterRow(
        "convert over a user file",
        [*CONVERT_BACK, "{tmp}/notes.tex"],
        1,
        "already exists",
        both(model_folder(), existing_file("notes.tex")),
    ),
    WriterRow(
        "convert over a user file, forced",
        [*CONVERT_BACK, "{tmp}/notes.tex", "--force"],
        1,
        "not a mod-export checkpoint",
        both(model_folder(), existing_file("notes.tex")),
    ),
    WriterRow(
        "convert over a zip of someone else, forced",
        [*CONVERT_BACK, "{tmp}/data.pt", "--force"],
        1,
        "not a mod-export checkpoint",
        both(model_folder(), zip_of_someone_else),
    ),
    WriterRow(
        "convert into its own folder",
        [*CONVERT_BACK, "{tmp}/folder/model.pt"],
        1,
        "is inside the input",
        model_folder(),
    ),
    WriterRow(
        "convert onto its own folder", [*CONVERT_BACK, "{tmp}/folder", "--force"], 1, "same path", model_folder()
    ),
    WriterRow(
        "convert to a directory",
        [*CONVERT_BACK, "{tmp}/sub"],
        1,
        "is a directory",
        both(model_folder(), folder_with("sub", {})),
    ),
    WriterRow(
        "convert checkpoint locked by another run",
        [*CONVERT_BACK, "{tmp}/m.pt"],
        1,
        "another mod-export run",
        model_folder(),
        locked="m.pt",
    ),
    # ---- convert, a checkpoint -> a model folder
    WriterRow("convert over user files", ["convert", "{ckpt}", "{out}"], 1, "already exists", user_dir),
    WriterRow(
        "convert over user files, forced",
        ["convert", "{ckpt}", "{out}", "--force"],
        1,
        "not a model folder mod-export wrote",
        user_dir,
    ),
    WriterRow(
        "convert over our folder plus a user file",
        ["convert", "{ckpt}", "{tmp}/folder", "--force"],
        1,
        "notes.txt, which is not part of a model folder",
        model_folder(extra={"notes.txt": "mine"}),
    ),
    WriterRow(
        "convert over a folder that holds its source",
        ["convert", "{tmp}/folder/small.pt", "{tmp}/folder", "--force"],
        1,
        "contains the input",
        both(model_folder(), copy_ckpt("small.pt", "folder")),
    ),
    WriterRow(
        "convert over an export, forced",
        ["convert", "{ckpt}", "{tmp}/dir", "--force"],
        1,
        "not a model folder mod-export wrote",
        export_copy(),
    ),
    WriterRow(
        "convert over a folder of another model type",
        ["convert", "{ckpt}", "{tmp}/hf", "--force"],
        1,
        "not a model folder",
        folder_with("hf", {"config.json": '{"model_type": "llama"}', "model.safetensors": "x"}),
    ),
    WriterRow(
        "convert onto a file", ["convert", "{ckpt}", "{tmp}/f.txt"], 1, "not a directory", existing_file("f.txt")
    ),
    WriterRow(
        "convert folder locked by another run",
        ["convert", "{ckpt}", "{out}"],
        1,
        "another mod-export run",
        locked="out",
    ),
    # ---- example --out / --metrics-json, all checked before training
    WriterRow(
        "example over a user file, forced",
        ["example", "--steps", "1", "--out", "{tmp}/notes.tex", "--force"],
        1,
        "not a mod-export checkpoint",
        existing_file("notes.tex"),
    ),
    WriterRow(
        "example over a file that is not a checkpoint, forced",
        ["example", "--steps", "1", "--out", "{tmp}/m.pt", "--force"],
        1,
        "not a mod-export checkpoint",
        existing_file("m.pt", "PK not really a zip"),
    ),
    WriterRow(
        "example metrics over a user file",
        ["example", "--steps", "1", "--out", "{tmp}/m.pt", "--metrics-json", "{tmp}/notes.json"],
        1,
        "already exists",
        existing_file("notes.json"),
    ),
    WriterRow(
        "example metrics over a user file, forced",
        ["example", "--steps", "1", "--out", "{tmp}/m.pt", "--metrics-json", "{tmp}/notes.json", "--force"],
        1,
        "not a metrics file mod-export wrote",
        existing_file("notes.json", "{}"),
    ),
    WriterRow(
        "example metrics and checkpoint the same file",
        ["example", "--steps", "1", "--out", "{tmp}/m.pt", "--metrics-json", "{tmp}/m.pt"],
        1,
        "same file",
    ),
    WriterRow(
        "example metrics into a directory",
        ["example", "--steps", "1", "--out", "{tmp}/m.pt", "--metrics-json", "{tmp}"],
        1,
        "is a directory",
    ),
    WriterRow(
        "example failing leaves no new folders",
        ["example", "--out", "{tmp}/a/b/m.pt", "--capacity", "0.5", "--steps", "1"],
        1,
        "capacity",
    ),
    WriterRow(
        "example locked by another run",
        ["example", "--out", "{tmp}/m.pt", "--steps", "1"],
        1,
        "another mod-export run",
        locked="m.pt",
    ),
    # ---- bench --out, checked before the benchmark runs
    WriterRow(
        "bench over earlier results, no force",
        [*BENCH, "--out", "{tmp}/res"],
        1,
        "already exists and is not empty",
        folder_with("res", {"results.json": BENCH_TAG, "results.md": "| old |"}),
    ),
    WriterRow(
        "bench over a user's results.md",
        [*BENCH, "--out", "{tmp}/res"],
        1,
        "pass --force",
        folder_with("res", {"results.md": "my notes"}),
    ),
    WriterRow(
        "bench over user files, forced",
        [*BENCH, "--out", "{tmp}/res", "--force"],
        1,
        "no mod-export bench results",
        folder_with("res", {"results.md": "my notes"}),
    ),
    WriterRow(
        "bench over our results plus a user file, forced",
        [*BENCH, "--out", "{tmp}/res", "--force"],
        1,
        "notes.txt, which mod-export bench does not write",
        folder_with("res", {"results.json": BENCH_TAG, "notes.txt": "mine"}),
    ),
    WriterRow(
        "bench decode over user files",
        [*BENCH, "--decode", "--batch", "1", "--prompt-lens", "8", "--new-tokens", "2", "--out", "{tmp}/res"],
        1,
        "already exists",
        folder_with("res", {"decode.md": "mine"}),
    ),
    WriterRow(
        "bench out holds the model",
        ["bench", "{tmp}/res/model.pt", *BENCH[2:], "--out", "{tmp}/res", "--force"],
        1,
        "contains the input",
        copy_ckpt("model.pt", "res"),
    ),
    WriterRow(
        "bench out locked by another run", [*BENCH, "--out", "{tmp}/res"], 1, "another mod-export run", locked="res"
    ),
    # ---- build-plugins --build-dir: never a folder it did not create
    WriterRow(
        "build dir of user files",
        [*KERNELS, "--build-dir", "{tmp}/b"],
        1,
        "not a mod-export plugin build folder",
        folder_with("b", {"Makefile": "all:\n"}),
    ),
    WriterRow(
        "build dir is a file", [*KERNELS, "--build-dir", "{tmp}/f.txt"], 1, "not a directory", existing_file("f.txt")
    ),
    WriterRow("build dir is the source tree", [*KERNELS, "--build-dir", "{plugins}"], 1, "overlaps the source tree"),
    WriterRow("build dir holds the source tree", [*KERNELS, "--build-dir", "{repo}"], 1, "overlaps the source tree"),
    WriterRow(
        "build dir of another CMake project",
        [*KERNELS, "--build-dir", "{tmp}/b"],
        1,
        "not a mod-export plugin build folder",
        cmake_cache("other", "{tmp}"),
    ),
    WriterRow(
        "build dir of another checkout",
        [*KERNELS, "--build-dir", "{tmp}/b"],
        1,
        "another source tree",
        cmake_cache("mod_export_plugins", "{tmp}/elsewhere"),
    ),
    # ---- the export's output
    WriterRow(
        "export over a model folder, forced",
        ["{ckpt}", "--target", "onnx", "--out", "{tmp}/folder", "--force"],
        1,
        "no mod-export manifest.json",
        model_folder(),
    ),
    WriterRow(
        "export over bench results, forced",
        ["{ckpt}", "--target", "onnx", "--out", "{tmp}/res", "--force"],
        1,
        "no mod-export manifest.json",
        folder_with("res", {"results.json": BENCH_TAG}),
    ),
]


def check_row(row: WriterRow, context: dict, tmp_path: Path, capsys) -> None:
    values = placeholders(context, tmp_path, plugins=str(REPO / "plugins"), repo=str(REPO))
    if row.setup is not None:
        row.setup(tmp_path, context)
    argv = [a.format(**values) for a in row.argv]
    lock = None
    if row.locked is not None:
        lock = os.open(tmp_path / f".{row.locked}.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(lock, fcntl.LOCK_EX)
    before, export_before = snapshot(tmp_path), snapshot(Path(context["dir"]))
    try:
        for attempt in ("first run", "second run"):  # the same answer again, and still nothing left behind
            code = main(argv)
            err = capsys.readouterr().err
            assert code == row.code, (attempt, code, err[-2000:])
            assert "Traceback" not in err and "internal error" not in err, err[-2000:]
            errors = [line for line in err.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and row.fragment in errors[0], (attempt, err[-2000:])
            assert err.rstrip().endswith(errors[0]), "the error line is the last thing printed"
            assert snapshot(tmp_path) == before, f"{attempt}: nothing may be written, moved or deleted"
            assert snapshot(Path(context["dir"])) == export_before
    finally:
        if lock is not None:
            os.close(lock)


def test_the_writer_matrix_covers_every_writer():
    commands = {row.argv[0] if not row.argv[0].startswith("{") else "export" for row in ROWS}
    assert commands == {"validate", "convert", "example", "bench", "build-plugins", "export"}
    assert len(ROWS) >= 55


@pytest.fixture(scope="module")
def context(trained, exported):
    return {"ckpt": str(trained[2]), "dir": str(exported[1])}


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_writer_refuses(row: WriterRow, context, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MOD_EXPORT_PLUGIN_LIBRARY", str(tmp_path / "no-plugin-library.so"))
    check_row(row, context, tmp_path, capsys)
