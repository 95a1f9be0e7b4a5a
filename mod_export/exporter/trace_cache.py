"""Traced graphs kept on disk, so that exporting a model of the same architecture again skips the trace.

torch.onnx.export (torch.export, decompositions) is most of an export's time on a small model: about 20 s of CPU
per graph here, and an export traces four (the forward, the step graph, prefill and decode). torch.export traces with fake
tensors, so its graph depends on the code and the shapes, never on a weight's value. Every trace therefore goes
through the same steps (traced_graph): the graph, unoptimised, is made weightless (each of the module's tensors a
reference by name), kept in the cache folder when there is one (``MOD_EXPORT_TRACE_CACHE=DIR`` or
``--trace-cache DIR``), bound to the module's tensors and optimised. A cached entry is reused for any module with
the same key: the same code, structure, tensor names/dtypes/shapes, example inputs and export settings
(trace_key), whatever its weights. Only modules built from this package's classes (and torch.nn's) are cached.
An entry is written into a temporary folder and renamed into place; a damaged entry is traced again.
docs/trace-cache.md says more."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx
import onnx_ir as ir
import onnxscript
import torch
from onnx_ir.tensor_adapters import TorchTensor, from_torch_dtype
from torch import nn

from mod_export import output
from mod_export.errors import ExportError, OutputDirError
from mod_export.graph.weights import WeightStore, program_into_store

log = logging.getLogger(__name__)

ENV_VAR = "MOD_EXPORT_TRACE_CACHE"
GRAPH_FILE = "graph.onnx"
MODULE_TENSOR = "module-tensor"  # an entry's initializer that is one of the module's weights: bound, never stored
_PACKAGE = Path(__file__).resolve().parents[1]  # mod_export/
_CACHEABLE_MODULES = ("mod_export.", "torch.nn.")
_PLAIN = (bool, int, float, str, type(None))


_CHOSEN: contextvars.ContextVar[Path | None] = contextvars.ContextVar("trace_cache", default=None)


@contextlib.contextmanager
def using(folder: str | os.PathLike | None) -> Iterator[None]:
    """Within the block, traces use `folder` (an export job's --trace-cache); None keeps the default."""
    token = _CHOSEN.set(Path(folder).expanduser() if folder else None)
    try:
        yield
    finally:
        _CHOSEN.reset(token)


def cache_folder(explicit: str | os.PathLike | None = None) -> Path | None:
    """The cache folder: `explicit`, else the job's (using), else $MOD_EXPORT_TRACE_CACHE, else None."""
    if explicit:
        return Path(explicit).expanduser()
    if _CHOSEN.get() is not None:
        return _CHOSEN.get()
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value).expanduser() if value else None


CACHE_TAG = "CACHEDIR.TAG"  # https://bford.info/cachedir/: backup tools skip the folder; we recognise it by it
_TAG_TEXT = "Signature: 8a477f597d28d172789f06886806bc55\n# mod-export trace cache (docs/trace-cache.md)\n"


def check_cache_folder(folder: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Fail before any work when `folder` cannot be the trace cache: a file, a folder holding files of its own
    (the cache only ever adds to a new or empty folder, or to one it tagged), or a place inside the output."""
    folder = output.absolute(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputDirError(f"the trace cache {folder} (--trace-cache or ${ENV_VAR}) is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / CACHE_TAG).is_file():
        raise OutputDirError(
            f"the trace cache {folder} (--trace-cache or ${ENV_VAR}) holds other files and no {CACHE_TAG}: "
            "give a new or empty folder, or a cache"
        )
    if out_dir is not None and output.within(folder, output.absolute(out_dir)):
        raise OutputDirError(f"the trace cache {folder} is inside the output folder, which an export replaces")
    return folder


def traced_graph(
    module: nn.Module,
    args: tuple,
    settings: dict,
    store: WeightStore,
    trace: Callable[[], torch.onnx.ONNXProgram],
    names: tuple[list[str], list[str]],
    folder: Path | None = None,
) -> onnx.ModelProto:
    """The optimised graph of `module` with its (input, output) `names`, its weights in `store`. trace() runs
    torch.onnx.export without the optimiser and without names. Its graph is made weightless (each of the
    module's tensors a reference by name), kept in the cache when there is one, bound to this module's weights,
    and then optimised: a traced graph and a reused one take the same steps, so they give the same bytes."""
    if not isinstance(module, nn.Module):  # a .pt2 program: no module tensors to bind, never cached
        return _finished(trace().model, names, store)
    folder = cache_folder(folder)
    key = trace_key(module, args, settings) if folder is not None else None
    entry = folder / key[:2] / key if key is not None else None
    tensors = _module_tensors(module)
    model = _reused(entry, tensors) if entry is not None else None
    if model is None:
        weightless = _weightless(trace().model, tensors)
        if entry is not None:
            _keep(weightless, entry)
        model = _bound(weightless, tensors)
    return _finished(model, names, store)


def _finished(model: ir.Model, names: tuple[list[str], list[str]], store: WeightStore) -> onnx.ModelProto:
    """What torch.onnx.export(optimize=True, input_names=, output_names=) does last, in its order: optimise, then
    name the inputs and outputs (the optimiser gives an output that is an input its own Identity, under the
    name the output has then). Returns the weightless graph, its weights written into `store`."""
    program = torch.onnx.ONNXProgram(model, None)
    try:
        program.optimize()
    except Exception as exc:
        raise ExportError(f"the ONNX optimiser failed on the traced graph: {exc}") from exc
    finally:
        release_rewriter_state()
    for values, wanted in zip((program.model.graph.inputs, program.model.graph.outputs), names):
        for value, name in zip(values, wanted):
            value.metadata_props["pkg.torch.onnx.original_node_name"] = str(value.name)  # as torch does
            value.name = name
    return program_into_store(program, store)


def release_rewriter_state() -> None:
    """onnxscript's rewrite rules are module-level objects whose matchers keep the last node and graph they
    matched (`_current_node`, `_graph`, `_match`), and with that graph every tensor bound into it: an alias of each of the
    module's weights, alive after the program and the model are gone, so the weights' memory could never be
    released (measured: a full copy of the weights retained after an export). Drop those references."""
    from onnxscript import rewriter  # noqa: PLC0415 - torch.onnx's own dependency, loaded by the export already

    for rule in getattr(rewriter, "_DEFAULT_REWRITE_RULES", ()):
        for holder in (rule, getattr(rule, "_matcher", None)):
            for attr in ("_current_node", "_graph", "_match"):
                if holder is not None and getattr(holder, attr, None) is not None:
                    setattr(holder, attr, None)


def _module_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer under each of its names (tied weights have two): the names torch.export
    lifts them under, which become the graph's initializer names."""
    named = [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]
    return {name: tensor.detach() for name, tensor in named}


def _weightless(model: ir.Model, tensors: dict[str, torch.Tensor]) -> onnx.ModelProto:
    """The traced graph with each initializer that is one of the module's tensors replaced by a reference to it
    (location MODULE_TENSOR, no bytes); the trace's own constants stay. Consumes `model`."""
    for name, value in model.graph.initializers.items():
        held, tensor = value.const_value, tensors.get(name)
        if tensor is not None and held is not None and _fits(tensor, held):  # else the trace's own constant
            value.const_value = ir.ExternalTensor(
                MODULE_TENSOR, offset=0, length=0, dtype=held.dtype, shape=held.shape, name=name
            )
    return ir.serde.serialize_model(model)


def _bound(weightless: onnx.ModelProto, tensors: dict[str, torch.Tensor]) -> ir.Model:
    """The graph with the module's tensors bound by name (their own memory, not copies). ValueError when a
    reference has no tensor of that name, dtype and shape."""
    model = ir.serde.deserialize_model(weightless)
    for name, value in model.graph.initializers.items():
        held = value.const_value
        if not (isinstance(held, ir.ExternalTensor) and held.location == MODULE_TENSOR):
            continue
        tensor = tensors.get(name)
        if tensor is None or not _fits(tensor, held):
            raise ValueError(f"initializer {name!r} matches no tensor of the module")
        value.const_value = TorchTensor(tensor, name=name)
    return model


def _fits(tensor: torch.Tensor, held) -> bool:
    try:
        dtype = from_torch_dtype(tensor.dtype)
    except (TypeError, KeyError, ValueError):  # a dtype ONNX has no name for (complex): torch changed it
        return False
    return dtype == held.dtype and tuple(tensor.shape) == tuple(held.shape)


def _reused(entry: Path, tensors: dict[str, torch.Tensor]) -> ir.Model | None:
    """The entry's graph bound to the module's tensors; None when there is no entry, or it cannot be used (a
    damaged one is logged and traced again)."""
    if not (entry / GRAPH_FILE).is_file():
        return None
    try:
        model = _bound(onnx.load(str(entry / GRAPH_FILE), load_external_data=False), tensors)
    except Exception as exc:  # noqa: BLE001 - a damaged entry (any reason) costs a trace, nothing more
        log.warning("trace cache: entry %s is unreadable (%s); tracing again", entry, exc)
        with contextlib.suppress(OSError):
            output.remove_tree(entry)  # the new trace takes its place
        return None
    log.info("trace cache: reused %s", entry)
    return model


def _keep(weightless: onnx.ModelProto, entry: Path) -> None:
    """Write the weightless graph into a temporary sibling and rename it into place; a failure only costs the
    cache."""
    try:
        root = entry.parents[1]
        if not (root / CACHE_TAG).is_file():
            check_cache_folder(root)
            output.write_text(output.make_dirs(root) / CACHE_TAG, _TAG_TEXT)
        output.make_dirs(entry.parent)
        staging = output.temporary_sibling(entry, directory=True)
        try:
            output.write_with(staging / GRAPH_FILE, lambda path: onnx.save_model(weightless, str(path)))
            if not output.publish_dir(staging, entry):
                log.info("trace cache: %s was written by another run first", entry)
        finally:
            output.remove_tree(staging)
    except (OSError, ValueError, OutputDirError) as exc:
        log.warning("trace cache: could not keep %s (%s)", entry, exc)


def trace_key(module: nn.Module, args: tuple, settings: dict) -> str | None:
    """A digest of everything the trace depends on; None for a module the key cannot describe: a class from
    outside this package and torch.nn (its code is not in the key), a forward hook, or an attribute that is not a
    plain value, a config, a tensor or one of this package's functions. Weights enter by name, dtype and shape
    only: torch.export traces with fake tensors, so no weight value can shape the graph."""
    if not isinstance(module, nn.Module):  # a .pt2 program: its code is not ours to fingerprint
        return None
    classes = {type(m) for m in module.modules()}
    if not all(c.__module__.startswith(_CACHEABLE_MODULES) for c in classes):
        return None
    try:
        structure = _structure(module)
    except _Unkeyable as exc:
        log.info("trace cache: not used for this module (%s)", exc)
        return None
    digest = hashlib.sha256()
    for part in (_code_fingerprint(), _global_settings(), json.dumps(settings, sort_keys=True, default=repr)):
        _add_text(digest, part)
    _add_text(digest, json.dumps(structure, sort_keys=True))
    for name, tensor in _module_tensors(module).items():
        _add_text(digest, f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:{tensor.device.type}")
    for name, sub in module.named_modules():  # a plain tensor attribute becomes a constant of the graph
        for attr, value in sorted(vars(sub).items()):
            if isinstance(value, torch.Tensor):
                _add_tensor(digest, f"{name}.{attr}", value)
    for i, value in enumerate(_flat(args)):
        _add_tensor(digest, f"arg{i}", value) if isinstance(value, torch.Tensor) else _add_text(digest, repr(value))
    return digest.hexdigest()


class _Unkeyable(Exception):
    """Something the trace may depend on that the key cannot describe."""


def _structure(module: nn.Module) -> list:
    """Each submodule's class and attributes (capacity, flags, sizes, shapes, config, the routing functions it
    calls), and which parameter and buffer names are one tensor (tied weights)."""
    if _global_hooks():
        raise _Unkeyable("a global forward hook is registered")
    described = []
    for name, sub in module.named_modules():
        if sub._forward_hooks or sub._forward_pre_hooks:
            raise _Unkeyable(f"submodule {name or type(sub).__name__!r} has a forward hook")
        attributes = {
            k: _describe(v)
            for k, v in sorted(vars(sub).items())
            if not k.startswith("_") and not isinstance(v, (torch.Tensor, nn.Module))
        }
        described.append([name, type(sub).__qualname__, attributes])
    distinct = [n for n, _ in module.named_parameters()] + [n for n, _ in module.named_buffers()]
    return [described, distinct]  # names listed once per tensor: an untied copy differs from a tied one


def _describe(value):
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (tuple, list)):
        return [type(value).__name__, [_describe(v) for v in value]]
    if isinstance(value, (set, frozenset)):
        return ["set", sorted(json.dumps(_describe(v), sort_keys=True) for v in value)]
    if isinstance(value, torch.dtype):
        return ["dtype", str(value)]
    if hasattr(value, "to_dict") and type(value).__module__.startswith("mod_export."):
        return [type(value).__qualname__, value.to_dict()]
    if (
        dataclasses.is_dataclass(value)
        and not isinstance(value, type)
        and type(value).__module__.startswith("mod_export.")
    ):
        return [
            type(value).__qualname__,
            {f.name: _describe(getattr(value, f.name)) for f in dataclasses.fields(value)},
        ]
    if type(value).__name__ == "CustomOpDef" and repr(value).startswith("<CustomOpDef(mod_export::"):
        return ["custom_op", repr(value)]  # one of this package's torch custom ops (models/torch_ops.py)
    if callable(value) and getattr(value, "__module__", "").startswith(_CACHEABLE_MODULES):
        return ["function", value.__module__, getattr(value, "__qualname__", repr(value))]
    raise _Unkeyable(f"an attribute of type {type(value).__name__}")


def _global_hooks() -> bool:
    from torch.nn.modules import module as torch_module  # noqa: PLC0415 - torch's registry of global hooks

    return bool(torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks)


def _global_settings() -> str:
    """Process-wide settings a trace reads: the default dtype, and draft export (which traces real values)."""
    return json.dumps([str(torch.get_default_dtype()), os.environ.get("TORCH_ONNX_ENABLE_DRAFT_EXPORT", "")])


def _add_text(digest, text: str) -> None:
    data = text.encode()
    digest.update(len(data).to_bytes(8, "little") + data)  # length-prefixed: no two sequences digest alike


def _add_tensor(digest, name: str, tensor: torch.Tensor) -> None:
    data = tensor.detach().cpu().contiguous()
    digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
    if data.numel():
        digest.update(data.reshape(-1).view(torch.uint8).numpy())  # hashed in place, never copied


def _flat(value) -> list:
    if isinstance(value, (list, tuple)):
        return [item for part in value for item in _flat(part)]
    return [value]


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(_PACKAGE)).encode())
        digest.update(path.read_bytes())
    for version in (torch.__version__, onnx.__version__, onnxscript.__version__, ir.__version__):
        digest.update(version.encode())
    return digest.hexdigest()
