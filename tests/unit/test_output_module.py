"""mod_export.output is the only writer (docs/errors.md): an AST check over mod_export/ and calibration/ that no
other module writes, renames or deletes a file by itself; and the module's own rules: kinds recognised by content,
a killed run's leftovers cleaned up with one note, the lock, the atomic folder exchange and its fallback."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
