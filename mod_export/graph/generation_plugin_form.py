"""The plugin form of the generation graphs (docs/generation.md): the portable prefill/decode pair rewritten for
TensorRT with the decode-step ops MoDTakeCount and MoDCacheAppend, same input and output names.

Decode, per block l (the portable graph's I/O, docs/generation.md):
- rows.l [n] int32, count.l [] int32 = MoDTakeCount(take.l): the rows that take the block, n a size tensor;
- a routed block's `If` runs on count.l > 0 (the portable form reduces take.l);
- key.l / value.l = MoDCacheAppend(past_key_values.l.key / .value, new entry [B,H,1,Dh], past_length.l, rows.l):
  the outputs are the caches [B,H,S,Dh] with the step's entries appended. TensorRT aliases each to its past input
  (the runtime binds one device buffer to both, so the write is in place); ONNX Runtime runs the reference
  function (out of place) and the stepper takes the new cache. The runtime still advances past_length.l.
Prefill needs no decode-step op: its plugin form is the portable prefill (the same file content under the plugin
name, so the pair is complete and TensorRT parses both).

Standard ONNX ops only besides the two custom nodes; no local functions (TensorRT 10.3 would prefer them over the
plugins): reference bodies are attached at load time for ONNX Runtime (mod_export.graph.reference_functions)."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from mod_export.contract import CACHE_APPEND, DOMAIN, OPSET_VERSION, TAKE_COUNT
from mod_export.graph.schemas import plugin_attributes

# The ONNX ops of the generation graphs that the TensorRT ONNX parser's supported-operator list marks "Y"
# (onnx-tensorrt docs/operators.md, 10.1-GA: the newest list stored here; docs/trt-parser-ops.md has the check
# and the restrictions that apply). A graph using anything else fails test_generation_plugin_form.
TRT_PARSER_OPS = frozenset(
    "Add And Cast Concat Constant ConstantOfShape Cos Div Equal Erf Expand Gather Greater GreaterOrEqual Identity If "
    "LayerNormalization Less MatMul Mul Not Or Range ReduceMax ReduceSum Reshape Shape Sigmoid Sin Slice Softmax "
    "Split Squeeze Sub Transpose Unsqueeze Where".split()
)
PLUGIN_FORM_KEY = "mod_export.generation_form"  # metadata: "plugin" marks a plugin-form decode graph


def is_plugin_decode(decode: onnx.ModelProto) -> bool:
    """True for a decode graph whose key.l/value.l outputs are whole caches (this module's form)."""
    meta = {p.key: p.value for p in decode.metadata_props}
    return meta.get(PLUGIN_FORM_KEY) == "plugin" or any(n.op_type == CACHE_APPEND for n in decode.graph.node)


def graph_op_types(graph: onnx.GraphProto) -> set[str]:
    """Every op type in `graph` and its subgraphs."""
    ops = set()
    for node in graph.node:
        ops.add(node.op_type)
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                ops |= graph_op_types(sub)
    return ops


def _rename_everywhere(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename tensor `old` in every node's inputs/outputs of `graph` and of its subgraphs (outer-scope reads)."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_everywhere(attr.g, old, new)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _rename_everywhere(sub, old, new)


def _reads(node: onnx.NodeProto) -> set[str]:
    """Every tensor a node reads: its inputs and what its subgraphs read from the outer scope (a superset)."""
    names = set(node.input)
    for attr in node.attribute:
        subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for sub in subs:
            for inner in sub.node:
                names |= _reads(inner)
            names |= {o.name for o in sub.output}
    return names


def _drop_dead_nodes(graph: onnx.GraphProto) -> None:
    """Remove nodes none of whose outputs is read (the portable `If` conditions the rewrite replaced)."""
    live = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(o in live for o in node.output):
            kept.append(node)
            live |= _reads(node)
    kept = [_copy(n) for n in reversed(kept)]
    del graph.node[:]
    graph.node.extend(kept)


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    out = onnx.NodeProto()
    out.CopyFrom(node)
    return out


def _custom(op: str, inputs: list[str], outputs: list[str], name: str) -> onnx.NodeProto:
    return helper.make_node(op, inputs, outputs, name=name, domain=DOMAIN, **plugin_attributes())


def plugin_decode_graph(decode: onnx.ModelProto) -> onnx.ModelProto:
    """The plugin form of a portable decode graph (mod_export.exporter.generation_graphs). Raises ValueError for a graph
    that is not one (missing I/O names)."""
    out = onnx.ModelProto()
    out.CopyFrom(decode)
    graph = out.graph
    inputs = {i.name: i for i in graph.input}
    outputs = {o.name: o for o in graph.output}
    layers = sum(1 for name in inputs if name.startswith("past_length."))
    if layers == 0 or "take.0" not in outputs:
        raise ValueError("not a decode graph: no past_length.l inputs / take.l outputs")
    producers = {o: index for index, n in enumerate(graph.node) for o in n.output}
    zero = "plugin_form.zero_i32"
    head = [helper.make_node("Constant", [], [zero], value=helper.make_tensor(zero, TensorProto.INT32, [], [0]))]
    tail: list[onnx.NodeProto] = []
    before_if: dict[int, list[onnx.NodeProto]] = {}  # node index -> nodes that must precede it
    for layer in range(layers):
        take, rows, count = f"take.{layer}", f"rows.{layer}", f"count.{layer}"
        if take not in producers or f"key.{layer}" not in outputs:
            raise ValueError(f"not a decode graph: layer {layer} has no take/key outputs")
        count_nodes = [_custom(TAKE_COUNT, [take], [rows, count], f"take_count.{layer}")]
        index = producers.get(f"key.{layer}")
        if index is not None and graph.node[index].op_type == "If":  # routed: run the block iff count > 0
            cond = f"take_any.{layer}"
            count_nodes.append(helper.make_node("Greater", [count, zero], [cond], name=f"take_any.{layer}"))
            graph.node[index].input[0] = cond
            before_if[index] = count_nodes
        else:
            tail.extend(count_nodes)
        for kind, past in (("key", f"past_key_values.{layer}.key"), ("value", f"past_key_values.{layer}.value")):
            name, entry = f"{kind}.{layer}", f"{kind}.{layer}.entry"
            _rename_everywhere(graph, name, entry)
            tail.append(_custom(CACHE_APPEND, [past, entry, f"past_length.{layer}", rows], [name], f"append.{name}"))
            outputs[name].type.CopyFrom(inputs[past].type)  # [B,H,S,Dh]: the cache itself
    nodes = list(head)
    for index, node in enumerate(graph.node):
        nodes.extend(before_if.get(index, []))
        nodes.append(_copy(node))  # a detached copy: the repeated field is cleared below
    nodes.extend(tail)
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_dead_nodes(graph)
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, OPSET_VERSION))
    meta = out.metadata_props.add()
    meta.key, meta.value = PLUGIN_FORM_KEY, "plugin"
    return out


def plugin_prefill_graph(prefill: onnx.ModelProto) -> onnx.ModelProto:
    """The plugin form of the prefill graph: the portable one (no decode-step op applies to a prompt pass)."""
    out = onnx.ModelProto()
    out.CopyFrom(prefill)
    return out
