"""The plugins' *_PluginConfig.yaml files against the ONNX schemas of the ops (docs/design.md (custom ONNX ops)) and the
creators' field lists in the C++ sources. Together with plugins/tests/test_plugin_config.cpp (YAML against
the compiled creators and their declared formats, where TensorRT headers exist) this keeps the three
descriptions of each op (schema, plugin, YAML) in agreement; the mask type is int32 in all three."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mod_export import contract
from mod_export.graph import schemas as custom_ops  # the ONNX schemas of the custom ops

yaml = pytest.importorskip("yaml", reason="PyYAML is in the dev extra: pip install -e '.[dev]'")

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
CONFIGS = {
    contract.TOPK_GATHER: ("topkGatherPlugin", "modTopKGatherPlugin.cpp", "MoDTopKGatherCreator"),
    contract.SCATTER: ("scatterPlugin", "modScatterPlugin.cpp", "MoDScatterCreator"),
    contract.TAKE_COUNT: ("takeCountPlugin", "modTakeCountPlugin.cpp", "MoDTakeCountCreator"),
    contract.CACHE_APPEND: ("cacheAppendPlugin", "modCacheAppendPlugin.cpp", "MoDCacheAppendCreator"),
}
ONNX_TO_YAML = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(bfloat16)": "bfloat16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}
PLUGIN_ATTRIBUTES = {"plugin_version", "plugin_namespace"}  # for the parser's creator lookup, not fields


def load(op: str) -> dict:
    folder = CONFIGS[op][0]
    return yaml.safe_load((PLUGINS / folder / f"{op}_PluginConfig.yaml").read_text())


def schema(op: str):
    from onnx import defs

    custom_ops.register_onnx_schemas()
    return defs.get_schema(op, contract.OPSET_VERSION, contract.DOMAIN)


def allowed_types(op_schema, param) -> set[str]:
    """The YAML type names an ONNX formal parameter allows (through its type variable if it has one)."""
    for constraint in op_schema.type_constraints:
        if constraint.type_param_str == param.type_str:
            return {ONNX_TO_YAML[t] for t in constraint.allowed_type_strs}
    return {ONNX_TO_YAML[param.type_str]}


@pytest.mark.parametrize("op", sorted(CONFIGS))
def test_yaml_names_the_op_as_the_onnx_schema_and_the_parser_lookup_do(op):
    config = load(op)
    assert config["name"] == op
    assert config["namespace"] == custom_ops.PLUGIN_NAMESPACE
    assert config["interface"] == "IPluginV3"
    assert list(config["versions"]) == [contract.PLUGIN_VERSION]


@pytest.mark.parametrize("op", sorted(CONFIGS))
def test_yaml_io_and_types_match_the_onnx_schema(op):
    version = load(op)["versions"][contract.PLUGIN_VERSION]
    op_schema = schema(op)
    from onnx.defs import OpSchema

    assert version["inputs"] == [p.name for p in op_schema.inputs]
    assert version["outputs"] == [p.name for p in op_schema.outputs]
    optional = [p.name for p in op_schema.inputs if p.option == OpSchema.FormalParameterOption.Optional]
    assert (version["optional_inputs"] or []) == optional

    combos = [next(iter(item.values())) for item in version["supported_input_types"]]
    configs = list(version["configs"].values())
    assert sorted(map(str, combos)) == sorted(str(c["input_types"]) for c in configs), "one config per combination"
    for param in op_schema.inputs:
        listed = {combo[param.name] for combo in combos}
        assert listed == allowed_types(op_schema, param), f"{op} input {param.name}"
    for param in op_schema.outputs:
        listed = {c["output_types"][param.name] for c in configs}
        assert listed == allowed_types(op_schema, param), f"{op} output {param.name}"
    # Parameters sharing a type variable (T) have one type per configuration, as the schema requires.
    for c in configs:
        types = {**c["input_types"], **c["output_types"]}
        for var in {p.type_str for p in [*op_schema.inputs, *op_schema.outputs]}:
            same = {types[p.name] for p in [*op_schema.inputs, *op_schema.outputs] if p.type_str == var}
            assert len(same) == 1, f"{op}: {var} takes {same} in one config"


def test_the_mask_is_int32_in_the_schema_and_the_yaml():
    assert custom_ops.MASK_TYPES == ["tensor(int32)"]
    version = load(contract.TOPK_GATHER)["versions"][contract.PLUGIN_VERSION]
    assert {next(iter(item.values()))["mask"] for item in version["supported_input_types"]} == {"int32"}


@pytest.mark.parametrize("op", sorted(CONFIGS))
def test_yaml_attributes_match_the_schema_and_the_creators_field_list(op):
    version = load(op)["versions"][contract.PLUGIN_VERSION]
    op_schema = schema(op)
    from onnx.defs import OpSchema

    onnx_attributes = {name: a for name, a in op_schema.attributes.items() if name not in PLUGIN_ATTRIBUTES}
    assert set(version["attributes"]) == set(onnx_attributes)
    for name, attribute in onnx_attributes.items():
        assert attribute.type == OpSchema.AttrType.INT
        assert version["attribute_types"][name] == "int32"
        assert version["attribute_length"][name] == 1
    assert version["attributes_required"] == version["attributes"]
    for config in version["configs"].values():
        assert set(config["attribute_options"]) == set(version["attributes"])

    folder, source, creator = CONFIGS[op]
    text = (PLUGINS / folder / source).read_text()
    body = re.search(rf"{creator}::{creator}\(\)\s*\{{(.*?)\}}", text, re.S)
    assert body, f"constructor of {creator} not found in {source}"
    assert re.findall(r'declareIntField\("(\w+)"\)', body.group(1)) == version["attributes"]


def test_yaml_attribute_ranges_match_the_python_contract():
    topk = load(contract.TOPK_GATHER)["versions"][contract.PLUGIN_VERSION]["attribute_options"]
    assert {k: (int(v["min"]), int(v["max"])) for k, v in topk.items()} == {
        "capacity_num": (1, 65536),
        "capacity_den": (1, 65536),
    }
    from mod_export.models.routing import GATE_IDS

    scatter = load(contract.SCATTER)["versions"][contract.PLUGIN_VERSION]["attribute_options"]
    assert sorted(int(g) for g in scatter["gate"]) == sorted(GATE_IDS.values())


def test_the_exporter_feeds_the_plugins_an_int32_mask():
    """The plugin-form graph passes onnx.checker's strict check against the int32-only schema, and every
    MoDTopKGather's mask is int32 after shape inference (the model casts attention_mask; no cast to add)."""
    import onnx
    import torch

    from mod_export.bench.models import synthetic_config
    from mod_export.exporter.onnx_export import check_model, export_forms
    from mod_export.models.model import MoDTransformer

    torch.manual_seed(0)
    forms = export_forms(MoDTransformer(synthetic_config("synthetic:64x2")).eval())
    inferred = check_model(forms.plugin, "plugin")
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    gathers = [n for n in inferred.graph.node if n.op_type == contract.TOPK_GATHER]
    assert gathers and all(types[n.input[2]] == onnx.TensorProto.INT32 for n in gathers)
