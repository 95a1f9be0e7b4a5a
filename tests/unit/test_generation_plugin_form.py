"""The decode-step ops (MoDTakeCount, MoDCacheAppend) and the plugin form of the generation graphs
(docs/generation.md): three implementations of each op agree (numpy here, the ONNX reference function on ONNX
Runtime, the C++ host reference through ctypes), n = 0 included; the plugin-form pair keeps the portable I/O names,
uses only ops the TensorRT ONNX parser lists plus the two plugins, and validates on ONNX Runtime with the same
verdict as the portable pair."""

from __future__ import annotations

import ctypes

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mod_export.backends.onnxrt.generation import OrtStepper
from mod_export.backends.onnxrt.session import create_session
from mod_export.contract import CACHE_APPEND, DOMAIN, OPSET_VERSION, TAKE_COUNT
from mod_export.data.corpus import held_out_split
from mod_export.exporter.generation_graphs import export_decode_forms
from mod_export.exporter.onnx_export import check_model
from mod_export.generation.loop import left_pad
from mod_export.graph.generation_plugin_form import (
    TRT_PARSER_OPS,
    graph_op_types,
    is_plugin_decode,
    plugin_decode_graph,
    plugin_prefill_graph,
)
from mod_export.graph.schemas import plugin_attributes, register_onnx_schemas
from mod_export.plugin_build import build_reference_library
from mod_export.validate.generation import generation_cases, judge_generation

F32 = ctypes.POINTER(ctypes.c_float)
I32 = ctypes.POINTER(ctypes.c_int32)
I64P = ctypes.POINTER(ctypes.c_int64)
U8 = ctypes.POINTER(ctypes.c_uint8)
I64 = ctypes.c_int64


def _op_model(length_type: int) -> onnx.ModelProto:
    """take[B] -> MoDTakeCount -> rows, count; MoDCacheAppend(cache, entry, length, rows) -> out."""
    register_onnx_schemas()
    nodes = [
        helper.make_node(TAKE_COUNT, ["take"], ["rows", "count"], domain=DOMAIN, **plugin_attributes()),
        helper.make_node(
            CACHE_APPEND, ["cache", "entry", "length", "rows"], ["out"], domain=DOMAIN, **plugin_attributes()
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "decode_ops",
        [
            helper.make_tensor_value_info("take", TensorProto.BOOL, ["B"]),
            helper.make_tensor_value_info("cache", TensorProto.FLOAT, ["B", "H", "S", "Dh"]),
            helper.make_tensor_value_info("entry", TensorProto.FLOAT, ["B", "H", 1, "Dh"]),
            helper.make_tensor_value_info("length", length_type, ["B"]),
        ],
        [
            helper.make_tensor_value_info("rows", TensorProto.INT32, ["n"]),
            helper.make_tensor_value_info("count", TensorProto.INT32, []),
            helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", "H", "S", "Dh"]),
        ],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, OPSET_VERSION)]
    )


def _numpy_ops(take, cache, entry, length):
    rows = np.flatnonzero(take).astype(np.int32)
    out = cache.copy()
    for r in rows:
        if 0 <= length[r] < cache.shape[2]:
            out[r, :, length[r]] = entry[r, :, 0]
    return rows, out


@pytest.fixture(scope="module")
def reference_lib(tmp_path_factory):
    lib = ctypes.CDLL(str(build_reference_library(tmp_path_factory.mktemp("decode-ref-build"))))
    lib.mod_reference_take_count.restype = I64
    lib.mod_reference_take_count.argtypes = [U8, I64, I32]
    lib.mod_reference_cache_append.argtypes = [F32, F32, I64P, I32, I64, I64, I64, I64, I64]
    return lib


def _cases():
    rng = np.random.default_rng(18)
    for B, p in ((1, 0.0), (1, 1.0), (3, 0.5), (7, 0.0), (8, 1.0), (33, 0.3)):
        H, S, Dh = 2, 5, 3
        take = rng.random(B) < p
        cache = rng.standard_normal((B, H, S, Dh)).astype(np.float32)
        entry = rng.standard_normal((B, H, 1, Dh)).astype(np.float32)
        length = rng.integers(0, S + 2, B).astype(np.int64)  # some at or beyond S: those writes are skipped
        yield take, cache, entry, length


@pytest.mark.parametrize("length_type", [TensorProto.INT64, TensorProto.INT32])
def test_decode_op_reference_functions_match_numpy_and_the_cpp_reference(reference_lib, length_type):
    session = create_session(_op_model(length_type))
    np_type = np.int64 if length_type == TensorProto.INT64 else np.int32
    for take, cache, entry, length in _cases():
        rows, count, out = session.run(
            None, {"take": take, "cache": cache, "entry": entry, "length": length.astype(np_type)}
        )
        want_rows, want_out = _numpy_ops(take, cache, entry, length)
        assert rows.dtype == np.int32 and count.dtype == np.int32 and count.shape == ()
        np.testing.assert_array_equal(rows, want_rows)
        assert int(count) == len(want_rows)
        np.testing.assert_array_equal(out, want_out)
        # the C++ host reference, the one the CUDA kernels' index helpers are tested against
        B, H, S, Dh = cache.shape
        take_u8 = np.ascontiguousarray(take.astype(np.uint8))
        ref_rows = np.full(B, -1, np.int32)
        n = reference_lib.mod_reference_take_count(take_u8.ctypes.data_as(U8), B, ref_rows.ctypes.data_as(I32))
        np.testing.assert_array_equal(ref_rows[:n], want_rows)
        ref_cache = cache.copy()
        reference_lib.mod_reference_cache_append(
            ref_cache.ctypes.data_as(F32),
            entry.ctypes.data_as(F32),
            length.ctypes.data_as(I64P),
            ref_rows.ctypes.data_as(I32),
            n,
            B,
            H,
            S,
            Dh,
        )
        np.testing.assert_array_equal(ref_cache, want_out)


@pytest.fixture(scope="module")
def forms(routing_model):
    decode = export_decode_forms(routing_model)
    return decode, plugin_prefill_graph(decode.prefill), plugin_decode_graph(decode.decode)


def test_plugin_form_keeps_the_io_names_and_only_uses_parser_ops_and_the_plugins(forms):
    decode, plugin_prefill, plugin_decode = forms
    for portable, plugin in ((decode.prefill, plugin_prefill), (decode.decode, plugin_decode)):
        assert [i.name for i in plugin.graph.input] == [i.name for i in portable.graph.input]
        assert [o.name for o in plugin.graph.output] == [o.name for o in portable.graph.output]
        assert not plugin.functions, "no local functions: TensorRT 10.3 would prefer them over the plugins"
        ops = graph_op_types(plugin.graph)
        assert ops - {TAKE_COUNT, CACHE_APPEND} <= TRT_PARSER_OPS, ops - TRT_PARSER_OPS
    assert is_plugin_decode(plugin_decode) and not is_plugin_decode(decode.decode)
    customs = [n for n in plugin_decode.graph.node if n.domain == DOMAIN]
    assert sorted({n.op_type for n in customs}) == [CACHE_APPEND, TAKE_COUNT]
    assert len(customs) == 3 * decode.layers  # one count and two appends per block
    for node in customs:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"plugin_version": b"1", "plugin_namespace": b"mod_export"}
    inputs = {i.name: i for i in plugin_decode.graph.input}
    for o in plugin_decode.graph.output:
        if o.name.startswith(("key.", "value.")):
            layer, kind = o.name.split(".")[1], o.name.split(".")[0]
            assert o.type == inputs[f"past_key_values.{layer}.{kind}"].type  # the cache [B,H,S,Dh]
    branches = [n for n in plugin_decode.graph.node if n.op_type == "If"]
    assert len(branches) == len(decode.routed_layers)
    assert all(n.input[0].startswith("take_any.") for n in branches), "routed blocks run on count > 0"
    check_model(plugin_decode, "model.plugin.decode.onnx")  # beside its weights (graph/weights.py)


def test_plugin_form_validates_with_the_same_verdict_as_the_portable_form(routing_model, forms, corpus):
    decode, plugin_prefill, plugin_decode = forms
    text = held_out_split(corpus.held_out).evaluation
    cases = generation_cases(text, routing_model.config.vocab_size, steps=24)
    portable = judge_generation(routing_model, OrtStepper(decode.step), cases)
    plugin = judge_generation(routing_model, OrtStepper(plugin_decode, plugin_prefill), cases)
    assert plugin["passed"] == portable["passed"] and plugin["passed"], plugin["mismatches"]
    for a, b in zip(portable["cases"], plugin["cases"]):
        assert b["forced_max_abs_err"] <= 1e-4 and b["routing_errors"] == 0
        assert a["take_rate"] == b["take_rate"]


def test_plugin_form_steps_equal_the_portable_form_with_rows_stopping_and_no_row_taking(forms):
    """Step by step: equal logits, caches and lengths; a stopped row (active False) takes nothing and writes
    nothing, so a step where no row takes a routed block runs MoDTakeCount with n = 0."""
    decode, plugin_prefill, plugin_decode = forms
    portable, plugin = OrtStepper(decode.step), OrtStepper(plugin_decode, plugin_prefill)
    rng = np.random.default_rng(3)
    ids, mask = left_pad([list(rng.integers(0, 256, 9)), list(rng.integers(0, 256, 4))])
    for stepper in (portable, plugin):
        stepper.prefill(ids, mask, ids.shape[1] + 16)
    saw_empty = False
    for t in range(12):
        active = np.array([t < 8, t < 4])
        tokens = rng.integers(0, 256, 2)
        a, b = portable.step(tokens, active), plugin.step(tokens, active)
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
        saw_empty |= any(not b.take[layer].any() for layer in b.take)
        for layer in range(portable.layers):
            np.testing.assert_array_equal(portable.lengths[layer], plugin.lengths[layer])
            np.testing.assert_allclose(portable.keys[layer], plugin.keys[layer], atol=1e-6)
            np.testing.assert_allclose(portable.values[layer], plugin.values[layer], atol=1e-6)
    assert saw_empty, "some step had no row taking a routed block (n = 0)"


def test_plugin_decode_graph_refuses_what_is_not_a_decode_graph(forms):
    decode, _, _ = forms
    with pytest.raises(ValueError, match="not a decode graph"):
        plugin_decode_graph(decode.prefill)
