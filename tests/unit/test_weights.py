"""The weights live once, outside protobuf (mod_export/graph/weights.py, docs/weights.md): every graph of an export
references one data file, each tensor is stored once, graph work never carries the weights, and sessions read
them from the file. Real exports of a small random model, real ONNX Runtime sessions."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
import torch
from onnx.external_data_helper import uses_external_data

from mod_export.backends.onnxrt.session import create_session
from mod_export.contract import ATTENTION_MASK, INPUT_IDS, WEIGHTS_FILE
from mod_export.errors import ExportError
from mod_export.exporter.generation_graphs import export_decode_forms
from mod_export.exporter.onnx_export import check_model, export_forms
from mod_export.graph.weights import (
    MIN_EXTERNAL_BYTES,
    WeightStore,
    external_refs,
    graph_sha256,
    has_external_weights,
    load_graph,
    materialized,
    save_graphs,
    weights_dir,
)
from mod_export.models.config import MoDConfig
from mod_export.models.model import MoDTransformer


def _inline_bytes(proto: onnx.ModelProto) -> int:
    """Bytes of tensor values still inside the proto, in every graph and subgraph."""
    total = 0

    def walk(graph):
        nonlocal total
        for t in graph.initializer:
            total += 0 if uses_external_data(t) else len(t.raw_data)
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)

    walk(proto.graph)
    return total


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(3)
    model = MoDTransformer(MoDConfig(d_model=64, n_layers=4, d_mlp=256, predictor_hidden=32)).eval()
    store = WeightStore.at(tmp_path_factory.mktemp("store"))
    forms = export_forms(model, store=store)
    after_forms = store.size
    decode = export_decode_forms(model, store=store)
    return model, store, forms, decode, after_forms


def test_both_forms_and_the_generation_graphs_share_one_copy_of_the_weights(exported):
    model, store, forms, decode, after_forms = exported
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    for proto in (forms.plugin, forms.portable, decode.step, decode.prefill, decode.decode):
        assert has_external_weights(proto) and weights_dir(proto) == store.folder
        assert _inline_bytes(proto) < 64 * MIN_EXTERNAL_BYTES  # shapes and small vectors only
    # The forms hold each parameter once (alignment padding aside), and the generation graphs add next to nothing:
    # their tensors are the same bytes. (Small ones under MIN_EXTERNAL_BYTES stay inline.)
    assert 0.9 * params <= after_forms <= 1.1 * params, (after_forms, params)
    assert store.size <= after_forms * 1.05, (store.size, after_forms)


def test_sessions_read_the_weights_from_the_file_and_match_pytorch_at_an_unseen_length(exported):
    model, _, forms, _, _ = exported
    ids = torch.randint(0, 256, (2, 37))
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    with torch.no_grad():
        want = model(ids, mask).numpy()
    for proto in (forms.portable, forms.plugin):
        got = create_session(proto).run(None, {INPUT_IDS: ids.numpy(), ATTENTION_MASK: mask.numpy()})[0]
        np.testing.assert_allclose(got[0], want[0], atol=2e-4)
        np.testing.assert_allclose(got[1, :30], want[1, :30], atol=2e-4)


def _offset(tensor: onnx.TensorProto) -> int:
    return int(next(e.value for e in tensor.external_data if e.key == "offset"))


def _mapped_addresses(session) -> dict[str, int]:
    return {name: value.data_ptr() for name, value in session.mapped_weights.items()}


def test_sessions_with_shared_weights_read_one_map_of_the_file_and_give_the_same_logits(exported):
    """Every session of both forms and of both generation graphs reads each weight at one address: the same
    pages of one memory map of the data file, not a copy per session; and they compute what a session that
    loads its own copy computes."""
    from mod_export.backends.onnxrt.mapped_weights import DISABLE_PREPACKING

    _, store, forms, decode, _ = exported
    data = (store.folder / WEIGHTS_FILE).read_bytes()
    ids = torch.randint(0, 256, (2, 41))
    feed = {INPUT_IDS: ids.numpy(), ATTENTION_MASK: np.ones((2, 41), dtype=np.int64)}
    sessions = {
        name: create_session(proto, shared_weights=True)
        for name, proto in (("portable", forms.portable), ("plugin", forms.plugin), ("prefill", decode.prefill))
    }
    sessions["step"] = create_session(decode.step, shared_weights=True)
    addresses = {name: _mapped_addresses(s) for name, s in sessions.items()}
    external = {t.name for t in forms.portable.graph.initializer if uses_external_data(t)}
    assert set(addresses["portable"]) == external and len(external) >= 10  # every weight in the file is mapped
    protos = {"portable": forms.portable, "plugin": forms.plugin, "prefill": decode.prefill, "step": decode.step}
    bases = set()
    for name, found in addresses.items():
        assert found, name
        offsets = {t.name: _offset(t) for t, *_ in external_refs(protos[name])}
        bases |= {address - offsets[tensor] for tensor, address in found.items()}  # where the map starts
    assert len(bases) == 1, bases  # every tensor of every session sits in one map, at its offset in the file
    for tensor in forms.portable.graph.initializer:  # and that map holds the file's bytes
        if tensor.name in addresses["portable"]:
            value = sessions["portable"].mapped_weights[tensor.name].numpy()
            assert value.tobytes() == data[_offset(tensor) : _offset(tensor) + value.nbytes]
    assert sessions["portable"].get_session_options().get_session_config_entry(DISABLE_PREPACKING) == "1"
    for name in ("portable", "plugin"):
        want = create_session(getattr(forms, name)).run(None, feed)[0]  # its own copy, pre-packed
        got = sessions[name].run(None, feed)[0]
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_generation_with_shared_weights_streams_the_same_tokens(exported):
    """The step graph keeps routed blocks' weights in If branches: those come from the map too, and greedy
    tokens over 12 steps equal those of a session that loads its own copy, at batch 2 with different prompts."""
    from mod_export.backends.onnxrt.generation import OrtStepper
    from mod_export.generation.loop import generate

    _, _, _, decode, _ = exported
    prompts = [[5, 9, 77, 3, 1, 200, 13], [40, 41]]
    runs = []
    for shared in (False, True):
        stepper = OrtStepper(decode.step, shared_weights=shared)
        runs.append(generate(stepper, prompts, max_new_tokens=12).tokens)
    assert runs[0] == runs[1]
    branch_weights = [
        t.name
        for node in decode.step.graph.node
        for attr in node.attribute
        if attr.type == onnx.AttributeProto.GRAPH
        for t in attr.g.initializer
        if uses_external_data(t)
    ]
    if branch_weights:  # where the exporter left weights in the branches, they are mapped too
        assert set(branch_weights) <= set(stepper.decode_session.mapped_weights)


def test_the_checker_runs_beside_the_weights_without_loading_them(exported):
    _, _, forms, _, _ = exported
    inferred = check_model(forms.portable, "model.onnx")
    assert has_external_weights(inferred) and _inline_bytes(inferred) == _inline_bytes(forms.portable)


def test_saved_folder_has_one_data_file_with_exactly_the_used_tensors(exported, tmp_path):
    model, store, forms, decode, _ = exported
    graphs = {"model.onnx": forms.portable, "model.plugin.onnx": forms.plugin, "model.step.onnx": decode.step}
    data = save_graphs(graphs, tmp_path)
    assert data == tmp_path / WEIGHTS_FILE
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted([*graphs, WEIGHTS_FILE])
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()]
    assert len(set(digests)) == len(digests), "no two files of the folder are the same bytes"
    assert data.stat().st_size <= store.size * 1.02 + 8192  # the same bytes, laid out (padded) anew
    for name in graphs:
        assert (tmp_path / name).stat().st_size < data.stat().st_size / 4
    loaded = load_graph(tmp_path / "model.plugin.onnx")
    assert weights_dir(loaded) == tmp_path.resolve()
    ids = np.random.default_rng(0).integers(0, 256, (1, 11))
    feed = {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)}
    from_file = create_session(tmp_path / "model.onnx").run(None, feed)[0]
    from_memory = create_session(forms.portable).run(None, feed)[0]
    np.testing.assert_array_equal(from_file, from_memory)
    # The graphs given are untouched: they still point at the job's store.
    assert weights_dir(forms.portable) == store.folder


def test_saving_into_the_folder_the_weights_already_live_in_keeps_them(exported, tmp_path):
    _, _, forms, _, _ = exported
    save_graphs({"model.onnx": forms.portable}, tmp_path)
    again = load_graph(tmp_path / "model.onnx")
    save_graphs({"model.onnx": again}, tmp_path)  # reads the data file it rewrites
    ids = np.arange(9).reshape(1, 9)
    feed = {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)}
    np.testing.assert_array_equal(
        create_session(tmp_path / "model.onnx").run(None, feed)[0], create_session(forms.portable).run(None, feed)[0]
    )


def test_the_digest_follows_the_weights_bytes_not_where_they_sit(exported, tmp_path):
    _, _, forms, _, _ = exported
    digest = graph_sha256(forms.portable)
    save_graphs({"a.onnx": forms.portable}, tmp_path)  # other offsets, other folder, same bytes
    assert graph_sha256(load_graph(tmp_path / "a.onnx")) == digest
    data = tmp_path / WEIGHTS_FILE
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one flipped bit in one weight
    data.write_bytes(bytes(raw))
    assert graph_sha256(load_graph(tmp_path / "a.onnx")) != digest


def test_materialized_holds_the_values_and_forgets_the_folder(exported):
    _, _, forms, _, _ = exported
    full = materialized(forms.portable)
    assert not has_external_weights(full) and weights_dir(full) is None
    assert _inline_bytes(full) > _inline_bytes(forms.portable) * 10


def test_a_graph_cannot_be_moved_into_a_second_store(exported, tmp_path):
    from mod_export.graph.weights import externalize

    _, _, forms, _, _ = exported
    with pytest.raises(ExportError, match="already keeps its weights"):
        externalize(forms.portable, WeightStore.at(tmp_path))


def test_the_exporter_copies_the_structure_never_the_weights():
    """The module torch.onnx traces is a copy whose routing ops are the export ones, and the float16 copy keeps
    routers float32: both share the float32 tensors with the user's model (a deepcopy held all weights twice
    for the whole job), and neither changes the user's model."""
    from mod_export.exporter.onnx_export import half_model, sharing_copy

    model = MoDTransformer(MoDConfig(d_model=32, n_heads=2, n_layers=4, d_mlp=64, tie_embeddings=True)).eval()
    before = {k: (v.data_ptr(), v.dtype, v.clone()) for k, v in model.state_dict().items()}
    routing_ops = model.routing_ops
    copy = sharing_copy(model)
    copy.routing_ops = object()
    assert model.routing_ops is routing_ops
    assert all(a is b for a, b in zip(model.parameters(), copy.parameters()))

    half = half_model(model)
    routed = [i for i, block in enumerate(model.blocks) if hasattr(block, "router")]
    assert routed
    for i in routed:  # routers and predictors: the model's own float32 tensors
        for name, tensor in half.blocks[i].router.named_parameters():
            assert tensor is dict(model.blocks[i].router.named_parameters())[name]
        assert all(t.dtype == torch.float32 for t in half.blocks[i].predictor.parameters())
    assert half.embed.weight.dtype == torch.float16 and half.lm_head.weight is half.embed.weight  # still tied
    torch.testing.assert_close(half.blocks[0].mlp.up.weight, model.blocks[0].mlp.up.weight.half())
    after = model.state_dict()
    for name, (ptr, dtype, value) in before.items():  # the user's model: untouched
        assert after[name].data_ptr() == ptr and after[name].dtype == dtype and torch.equal(after[name], value)


def test_a_users_router_submodules_stay_float32_and_shared():
    from mod_export.exporter.onnx_export import half_model

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.token_router = torch.nn.Linear(8, 1)
            self.proj = torch.nn.Linear(8, 8)
            self.register_buffer("scale", torch.ones(8))

    user = Block()
    half = half_model(user)
    assert half.token_router.weight is user.token_router.weight
    assert half.proj.weight.dtype == torch.float16 and half.scale.dtype == torch.float16
    assert user.proj.weight.dtype == torch.float32 and user.scale.dtype == torch.float32


def test_no_alias_of_a_weight_outlives_the_export():
    """onnxscript's rewrite rules kept the last graph they matched, and with it an alias of every weight: the
    model's memory could never be released after an export (exporter/trace_cache.release_rewriter_state)."""
    import gc

    model = MoDTransformer(MoDConfig(d_model=64, n_layers=2, d_mlp=128)).eval()
    weight = model.blocks[0].mlp.up.weight
    export_forms(model)
    gc.collect()

    def shares_the_weight(t) -> bool:
        try:  # fake and meta tensors from tracing have no data
            return t is not weight and t.untyped_storage().data_ptr() == weight.data_ptr()
        except (RuntimeError, NotImplementedError):
            return False

    assert not [t for t in gc.get_objects() if isinstance(t, torch.Tensor) and shares_the_weight(t)]
