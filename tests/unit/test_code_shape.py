"""The shape the code keeps (docs/architecture.md states these rules without counts; this test is what keeps them):
no function in mod_export/ or calibration/ longer than 60 lines, no module longer than 400, and the backend names
spelled in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("mod_export", "calibration")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def long_functions(source: str, limit: int) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append((node.name, length))
    return found


def test_no_function_is_longer_than_60_lines():
    offenders = [
        f"{path.relative_to(REPO)}: {name} ({length} lines)"
        for path in modules()
        for name, length in long_functions(path.read_text(), MAX_FUNCTION_LINES)
    ]
    assert not offenders, offenders


def test_no_module_is_longer_than_400_lines():
    offenders = [
        f"{p.relative_to(REPO)} ({n} lines)"
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not offenders, offenders


@pytest.mark.parametrize(
    "source, caught",
    [("def f():\n" + "    x = 1\n" * 60, True), ("def f():\n" + "    x = 1\n" * 59, False)],
    ids=["61 lines", "60 lines"],
)
def test_the_length_check_counts_a_function_from_def_to_last_line(source, caught):
    assert bool(long_functions(source, MAX_FUNCTION_LINES)) is caught


def test_the_old_backend_names_are_gone():
    """One name per backend (the registry's): the torch runner is "torch", never "pytorch"; no module keeps a list
    of backends of its own."""
    for path in modules():
        text = path.read_text()
        assert '"pytorch"' not in text, path
        if path.name != "registry.py":
            assert '("onnxruntime", "tensorrt")' not in text and '"auto", "onnxruntime"' not in text, path
