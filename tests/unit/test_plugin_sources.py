"""Static checks of the TensorRT glue sources, for machines without TensorRT headers (CI): every noexcept
entry point TensorRT calls catches everything (TensorRT OSS style: try + caughtError), except getters whose
whole body returns a constant; the glue includes only NvInferRuntime.h; no plugin source is over 800 lines.
The behaviour behind it (errors reported, failure values returned) is tested by plugins/tests/ where the
headers exist."""

from __future__ import annotations

import re
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
GLUE = [
    PLUGINS / "common" / "modPluginBase.h",
    PLUGINS / "common" / "modPluginUtils.h",
    PLUGINS / "topkGatherPlugin" / "modTopKGatherPlugin.cpp",
    PLUGINS / "scatterPlugin" / "modScatterPlugin.cpp",
    PLUGINS / "entry" / "modPluginEntry.cpp",
]
# IPluginV3 / IPluginV3OneCore / OneBuild / OneRuntime / IPluginCreatorV3One methods, and the library entry points.
ENTRY_POINTS = {
    "getCapabilityInterface",
    "clone",
    "getPluginName",
    "getPluginVersion",
    "getPluginNamespace",
    "configurePlugin",
    "getNbOutputs",
    "getOutputDataTypes",
    "getOutputShapes",
    "supportsFormatCombination",
    "getWorkspaceSize",
    "getValidTactics",
    "getNbTactics",
    "getTimingCacheID",
    "getFormatCombinationLimit",
    "getMetadataString",
    "setTactic",
    "onShapeChange",
    "enqueue",
    "attachToContext",
    "getFieldsToSerialize",
    "getFieldNames",
    "createPlugin",
    "getCreators",
}
CONSTANT_BODY = re.compile(r"^\s*return\s+&?[\w:]+\s*;\s*$")


def definitions(text: str):
    """(name, body) of every function definition whose head names an entry point."""
    for match in re.finditer(r"\b(?:\w+::)?(\w+)\s*\(", text):
        name = match.group(1)
        if name not in ENTRY_POINTS:
            continue
        depth, i = 0, match.end() - 1
        while i < len(text):  # the parameter list
            depth += text[i] == "("
            depth -= text[i] == ")"
            i += 1
            if depth == 0:
                break
        head_end = i
        while i < len(text) and text[i] not in "{;":
            i += 1
        if i >= len(text) or text[i] == ";" or "noexcept" not in text[head_end:i] and name != "getCreators":
            continue  # a declaration or a call, not a definition
        start, depth = i, 0
        while i < len(text):
            depth += text[i] == "{"
            depth -= text[i] == "}"
            i += 1
            if depth == 0:
                break
        yield name, text[start + 1 : i - 1]


def test_every_entry_point_catches_everything():
    found, unguarded = set(), []
    for path in GLUE:
        for name, body in definitions(path.read_text()):
            found.add(name)
            if CONSTANT_BODY.match(body.strip()):
                continue
            if not re.search(r"\btry\b", body) or "MOD_CATCH_AND_REPORT" not in body:
                unguarded.append(f"{path.name}: {name}")
    assert not unguarded, unguarded
    assert {
        "createPlugin",
        "enqueue",
        "getOutputShapes",
        "supportsFormatCombination",
        "getOutputDataTypes",
        "configurePlugin",
        "onShapeChange",
        "clone",
        "attachToContext",
        "getFieldsToSerialize",
        "getCapabilityInterface",
        "getCreators",
    } <= found, found


def test_the_checker_sees_an_unguarded_entry_point():
    bad = "int32_t P::enqueue(int a) noexcept\n{\n    launch(a);\n    return 0;\n}\n"
    good = "int32_t P::enqueue(int a) noexcept\n{\n    try\n    {\n        return 0;\n    }\n    MOD_CATCH_AND_REPORT(k, r)\n    return -1;\n}\n"
    assert [n for n, b in definitions(bad) if not re.search(r"\btry\b", b)] == ["enqueue"]
    assert [n for n, b in definitions(good) if not re.search(r"\btry\b", b)] == []
    assert list(definitions("x = plugin.enqueue(a, b);")) == []


def test_glue_includes_only_nvinferruntime_and_files_stay_small():
    for path in sorted(PLUGINS.rglob("*")):
        if path.suffix not in {".h", ".cpp", ".cu"}:
            continue
        text = path.read_text()
        assert len(text.splitlines()) <= 800, path
        for header in re.findall(r"#include\s*<(NvInfer\w*\.h)>", text):
            assert header in {"NvInferRuntime.h", "NvInferImpl.h"}, (path, header)
            assert header == "NvInferRuntime.h" or path.parent.name == "tests", (path, header)
    api = (PLUGINS / "kernelApi" / "modKernelApi.h").read_text() + (
        PLUGINS / "kernelApi" / "modKernelApi.cpp"
    ).read_text()
    assert "NvInfer" not in api, "the kernels' C ABI needs no TensorRT"


def test_the_preload_library_registers_every_creator_the_entry_point_lists():
    """libmod_export_plugins_preload.so (LD_PRELOAD into Triton) must register the same creators as getCreators,
    the generation ops included: an engine with a plugin nobody registered fails to deserialize."""
    entry = (PLUGINS / "entry" / "modPluginEntry.cpp").read_text()
    preload = (PLUGINS / "entry" / "modPluginPreload.cpp").read_text()
    listed = set(re.findall(r"static mod_export::(MoD\w+Creator) ", entry))
    registered = set(re.findall(r"REGISTER_TENSORRT_PLUGIN\((MoD\w+Creator)\)", preload))
    assert len(listed) == 4 and registered == listed, (listed, registered)
