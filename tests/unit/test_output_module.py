"""mod_export.output is the only writer (docs/errors.md): an AST check over mod_export/ and calibration/ that no
other module writes, renames or deletes a file by itself; and the module's own rules: kinds recognised by content,
a killed run's leftovers cleaned up with one note, the lock, the atomic folder exchange and its fallback."""

from __future__ import annotations

import ast
import logging
import os
import zipfile
from pathlib import Path

import pytest
import torch

from mod_export import output
from mod_export.errors import OutputDirError
from mod_export.output import kinds, staged
from tests.helpers import snapshot

ROOT = Path(__file__).resolve().parents[2]
OUTPUT_PACKAGE = ROOT / "mod_export" / "output"

# calls that write, rename, delete or create something on the file system
MODULE_CALLS = {
    "shutil": {"rmtree", "copyfile", "copy", "copy2", "copytree", "move", "copyfileobj"},
    "os": {"replace", "rename", "renames", "remove", "unlink", "rmdir", "removedirs", "makedirs", "mkdir", "truncate"}
    | {"symlink", "link", "open"},
    "onnx": {"save", "save_model", "save_tensor", "save_external_data"},
    "torch": {"save"},
    "torch.export": {"save"},
    "tempfile": {"mkdtemp", "mkstemp", "TemporaryDirectory", "NamedTemporaryFile", "TemporaryFile"},
    "np": {"save", "savez", "savez_compressed", "savetxt"},
    "numpy": {"save", "savez", "savez_compressed", "savetxt"},
}
METHOD_CALLS = {"write_text", "write_bytes", "unlink", "rmdir", "rename", "touch", "mkdir", "symlink_to"} | {
    "hardlink_to",
    "savefig",
    "tofile",
}
NAME_CALLS = {"save_file"}  # safetensors
# the only writes outside mod_export/output, each with its reason (a stale entry fails the test too)
ALLOWED: dict[tuple[str, str], str] = {}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _writing_mode(call: ast.Call, position: int) -> bool:
    """open()'s mode (positional at `position`, or mode=) asks for writing; a mode that is not a literal counts."""
    mode = call.args[position] if len(call.args) > position else None
    mode = next((k.value for k in call.keywords if k.arg == "mode"), mode)
    if mode is None:
        return False
    if not (isinstance(mode, ast.Constant) and isinstance(mode.value, str)):
        return True
    return bool(set(mode.value) & set("wax+"))


def _writes(call: ast.Call) -> str | None:
    """The name of the write this call makes, or None."""
    func = call.func
    name = _dotted(func)
    if isinstance(func, ast.Name):
        if func.id == "open":
            return "open(w)" if _writing_mode(call, 1) else None
        return func.id if func.id in NAME_CALLS else None
    if isinstance(func, ast.Attribute) and func.attr == "open" and _dotted(func.value) not in ("os", "output"):
        return ".open(w)" if _writing_mode(call, 0) else None  # Path.open(mode), io.open(path, mode)
    if isinstance(func, ast.Attribute):
        module = _dotted(func.value)
        if module == "output" or module.startswith("output."):
            return None  # mod_export.output's own API (`from mod_export import output`)
        if func.attr in MODULE_CALLS.get(module, ()):
            return name
        if func.attr in METHOD_CALLS:
            return f".{func.attr}"
    return None


def _inside_write_with(node: ast.AST, parents: dict) -> bool:
    """Lexically inside a lambda handed to a `write_with(...)` of mod_export.output."""
    child, node = node, parents.get(node)
    while node is not None:
        if isinstance(node, ast.Call) and isinstance(child, ast.Lambda):
            if _dotted(node.func).split(".")[-1] == "write_with":
                return True
        child, node = node, parents.get(node)
    return False


def writes_in(source: str) -> list[tuple[str, int]]:
    """(write, line) of every call in `source` that writes by itself, not through mod_export.output."""
    tree = ast.parse(source)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    return [
        (what, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and (what := _writes(node)) and not _inside_write_with(node, parents)
    ]


def writes_outside_the_output_module() -> list[tuple[str, str, int]]:
    found = []
    for package in ("mod_export", "calibration"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if OUTPUT_PACKAGE not in path.parents:
                found += [(path.relative_to(ROOT).as_posix(), w, line) for w, line in writes_in(path.read_text())]
    return found


def test_nothing_writes_a_file_outside_the_output_module():
    found = writes_outside_the_output_module()
    unexplained = [f"{p}:{line}: {what}" for p, what, line in found if (p, what) not in ALLOWED]
    assert not unexplained, "write through mod_export.output instead:\n" + "\n".join(unexplained)
    stale = set(ALLOWED) - {(p, what) for p, what, _ in found}
    assert not stale, f"allow-list entries that no longer match anything: {sorted(stale)}"


@pytest.mark.parametrize(
    "code",
    [
        "open(p, 'w')",
        "open(p, mode='ab')",
        "open(p, m)",
        "p.open('w')",
        "p.write_text('x')",
        "p.write_bytes(b'')",
        "p.unlink()",
        "p.mkdir()",
        "p.rename(q)",
        "shutil.rmtree(p)",
        "shutil.copyfile(a, b)",
        "os.replace(a, b)",
        "os.remove(p)",
        "os.open(p, os.O_CREAT)",
        "onnx.save_model(m, p)",
        "onnx.save(m, p)",
        "torch.save(x, p)",
        "torch.export.save(x, p)",
        "save_file(t, p)",
        "fig.savefig(p)",
        "tempfile.mkdtemp()",
        "tempfile.TemporaryDirectory()",
        "np.save(p, a)",
        "stage.write_with(n, save_it(lambda p: torch.save(x, p)))",
        "output.write_with(p, lambda q: torch.save(x, p)) or torch.save(x, p)",
    ],
)
def test_the_check_sees_every_kind_of_write(code):
    assert len(writes_in(code)) == 1, code


@pytest.mark.parametrize(
    "code",
    [
        "open(p)",
        "open(p, 'rb')",
        "p.read_text()",
        "output.write_text(p, 'x')",
        "output.copy_file(a, b)",
        "stage.write_with('m.onnx', lambda p: onnx.save_model(m, str(p)))",
        "target.write_with(lambda tmp: torch.save(payload, tmp))",
        "config.replace(capacity='1/8')",
    ],
)
def test_the_check_lets_the_output_module_api_through(code):
    assert writes_in(code) == [], code


# ---------------------------------------------------------------- what is ours, by content


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mod_export_output_sniff_ran",))


def test_a_checkpoint_is_recognised_by_its_format_tag_without_unpickling(tmp_path):
    ours, theirs, planted, text = (tmp_path / n for n in ("ours.pt", "theirs.pt", "planted.pt", "notes.pt"))
    torch.save({"format": "mod_export/1", "config": {}, "state_dict": {"w": torch.zeros(2)}}, ours)
    torch.save({"format": "someone_else/3", "state_dict": {}}, theirs)
    torch.save({"format": "mod_export/1", "x": RunsCode()}, planted)
    text.write_text("format mod_export/1")
    assert kinds.checkpoint(ours) is None and kinds.checkpoint(planted) is None
    assert not Path("/tmp/mod_export_output_sniff_ran").exists(), "recognising a checkpoint ran its pickle"
    for other in (theirs, text, tmp_path / "missing.pt"):
        assert "not a mod-export checkpoint" in kinds.checkpoint(other)
    with zipfile.ZipFile(tmp_path / "z.pt", "w") as z:
        z.writestr("a/data.pkl", b"\x80\x02garbage")
    assert kinds.checkpoint(tmp_path / "z.pt") is not None


def test_folders_are_ours_only_when_nothing_foreign_is_in_them(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "mod_export"}')
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"")
    assert kinds.model_folder(folder) is None
    (folder / "README.md").write_text("mine")
    assert "README.md" in kinds.model_folder(folder)
    bench = tmp_path / "b"
    bench.mkdir()
    (bench / "results.md").write_text("|")
    assert "no mod-export bench results" in kinds.bench_folder(bench)
    (bench / "results.json").write_text('{"format": "mod_export.bench/1"}')
    assert kinds.bench_folder(bench) is None
    os.symlink(tmp_path / "m" / "README.md", bench / "decode.md")
    assert "not a plain file" in kinds.bench_folder(bench)


# ---------------------------------------------------------------- cleanup, lock, exchange


def test_the_next_run_cleans_up_and_puts_a_moved_aside_output_back(tmp_path, caplog):
    out = tmp_path / "out"
    aside = tmp_path / ".out.old-abc123" / "previous"
    aside.mkdir(parents=True)
    (aside / "manifest.json").write_text("{}")
    (tmp_path / ".out.tmp-def456").mkdir()
    (tmp_path / ".out.tmp-ghi789.pt").write_text("half")
    (tmp_path / ".outer.tmp-keep").mkdir()  # another output's: not touched
    (tmp_path / ".out.lock").write_text("1\n")
    with caplog.at_level(logging.INFO, logger="mod_export"), output.OutputLock(out):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".outer.tmp-keep", "out"]
    assert (out / "manifest.json").is_file()
    notes = [r.getMessage() for r in caplog.records]
    assert (
        len(notes) == 1 and "back into place" in notes[0] and ".out.tmp-def456" in notes[0] and ".out.lock" in notes[0]
    )


def test_a_held_lock_refuses_and_changes_nothing(tmp_path):
    with output.OutputLock(tmp_path / "out"):
        before = snapshot(tmp_path)
        with pytest.raises(OutputDirError, match="another mod-export run"), output.OutputLock(tmp_path / "out"):
            pass
        assert snapshot(tmp_path) == before
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_removes_the_folders_it_made_for_its_output(tmp_path):
    with pytest.raises(RuntimeError), output.Target(tmp_path / "a" / "b" / "m.pt", kinds.CHECKPOINT):
        raise RuntimeError("the model did not load")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exchange", [True, False])
def test_a_folder_is_replaced_in_one_piece(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(staged, "exchange", lambda a, b: False)
    out = tmp_path / "res"
    for n in (1, 2):
        with output.Target(out, kinds.BENCH_FOLDER, force=True) as target, target.staged() as stage:
            stage.put_json("results.json", {"format": "mod_export.bench/1", "n": n})
            stage.put_text("results.md", "|")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]
    assert '"n": 2' in (out / "results.json").read_text() and oct((out / "results.md").stat().st_mode)[-3:] != "600"


def test_writes_outside_a_staging_folder_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    output.write_text(path, "old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        output.write_text(path, "new")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
