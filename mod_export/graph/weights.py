"""The weights of every graph live outside protobuf, once (docs/weights.md).

A graph's large initializers are references (`location`, `offset`, `length`) into one external-data file, and
the graph carries, in its metadata, the folder that file is in. Graph work (inlining, checks, graph surgery, the
precision passes) then never serialises a weight, so no 2 GB protobuf limit applies and no pass copies the
weights; ONNX Runtime sessions read them from that folder.

- WeightStore: an append-only data file that keeps each distinct tensor once (by content), so the portable and
  plugin forms, prefill and decode all point at the same bytes.
- externalize(proto, store): move a proto's initializers into a store (in place).
- load_graph(path): a graph without its weights, pointing at its own folder.
- save_graphs(graphs, folder): write graphs and one data file holding exactly the tensors they use, each once.
- materialized(proto): a copy with the weights loaded, for the few tools that need the values (int8 quantisation).
"""

from __future__ import annotations

import hashlib
import logging
import os
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import numpy as np
import onnx
from onnx import TensorProto
from onnx.external_data_helper import load_external_data_for_model, uses_external_data

from mod_export import output
from mod_export.contract import WEIGHTS_FILE
from mod_export.errors import ExportError

logger = logging.getLogger(__name__)

WEIGHTS_DIR_KEY = "mod_export.weights_dir"  # metadata of an in-memory graph: the folder of its data file
MIN_EXTERNAL_BYTES = 1024  # smaller tensors (shapes, scalars, small constants) stay in the graph
ALIGNMENT = 4096  # large tensors start on a page, so a runtime can map them rather than copy


class WeightStore:
    """An external-data file being written: add(tensor) appends the tensor's bytes unless identical bytes are
    already there, and turns the tensor into a reference to them."""

    _open: dict[Path, WeightStore] = {}  # one instance per folder, so every writer shares the content index

    @classmethod
    def at(cls, folder: str | os.PathLike) -> WeightStore:
        """The store whose data file is folder/WEIGHTS_FILE (created empty when new)."""
        folder = Path(folder).resolve()
        store = cls._open.get(folder)
        if store is None:
            store = cls._open[folder] = cls(folder)
        return store

    def __init__(self, folder: str | os.PathLike, name: str = WEIGHTS_FILE):
        self.folder = Path(folder).resolve()
        output.make_dirs(self.folder)
        self.name = name
        self.path = self.folder / name
        self._offsets: dict[tuple[str, int], int] = {}  # (sha256, length) -> offset
        self._size = self.path.stat().st_size if self.path.exists() else 0

    @classmethod
    def temporary(cls) -> WeightStore:
        """A store in a scratch folder removed when the process exits (the API and the tests; an export job
        keeps its store beside its output instead)."""
        return cls.at(output.lasting_scratch_dir(prefix="mod_export_weights_"))

    def close(self) -> None:
        """Forget this store (its folder is about to be removed)."""
        WeightStore._open.pop(self.folder, None)

    @property
    def size(self) -> int:
        return self._size

    def add(self, tensor: TensorProto, data: bytes | None = None) -> None:
        """Store `data` (default: the tensor's raw_data) and make the tensor a reference to it."""
        data = tensor.raw_data if data is None else data
        key = (hashlib.sha256(data).hexdigest(), len(data))
        offset = self._offsets.get(key)
        if offset is None:
            offset = _aligned(self._size, len(data))
            with output.append_stream(self.path) as f:
                f.write(b"\0" * (offset - self._size))
                f.write(data)
            self._offsets[key] = offset
            self._size = offset + len(data)
        _point(tensor, self.name, offset, key[1])


# One map per data file (and version of it) while anything uses it; closed when the last view goes.
_maps: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def mapped_file(path: str | os.PathLike) -> np.memmap:
    """The process's one memory map of a data file: every ONNX Runtime session built with shared weights
    (backends/onnxrt/mapped_weights.py) reads the same pages through it, so the weights are in memory once. Private
    copy-on-write pages: nothing writes to them, and a stray write could not reach the file."""
    path = Path(path).resolve()
    stat = os.stat(path)
    key = (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    mapped = _maps.get(key)
    if mapped is None:
        mapped = np.memmap(path, dtype=np.uint8, mode="c")
        _maps[key] = mapped
    return mapped


def _point(tensor: TensorProto, location: str, offset: int, length: int) -> None:
    """Make `tensor` a reference to `length` bytes at `offset` of `location` (its values leave the proto)."""
    tensor.ClearField("raw_data")
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        tensor.external_data.add(key=key, value=value)
    tensor.data_location = TensorProto.EXTERNAL


def _aligned(offset: int, length: int) -> int:
    step = ALIGNMENT if length >= ALIGNMENT else 64
    return -(-offset // step) * step


def _as_raw(tensor: TensorProto) -> bool:
    """Bring a tensor's values into raw_data (typed fields such as float_data are moved); False for tensors that
    cannot be external (strings)."""
    if tensor.data_type == TensorProto.STRING:
        return False
    if not tensor.HasField("raw_data"):
        values = onnx.numpy_helper.to_array(tensor)
        name = tensor.name
        tensor.CopyFrom(onnx.numpy_helper.from_array(values, name))
    return True


def _initializers(proto: onnx.ModelProto) -> Iterator[TensorProto]:
    """Every initializer, in the main graph and in control-flow subgraphs (a decode step's If branches hold
    the routed blocks' weights): where exporters put weights. Constant values stay in the graph."""
    yield from _graph_initializers(proto.graph)


def _graph_initializers(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graph_initializers(attr.g)
            for sub in attr.graphs:
                yield from _graph_initializers(sub)


def externalize(proto: onnx.ModelProto, store: WeightStore) -> onnx.ModelProto:
    """Move every initializer of at least MIN_EXTERNAL_BYTES into `store`, in place; the
    proto then names the store's folder. A proto already pointing at another folder is refused."""
    where = weights_dir(proto)
    if where is not None and where != store.folder and any(uses_external_data(t) for t in _initializers(proto)):
        raise ExportError(f"graph {proto.graph.name!r} already keeps its weights in {where}")
    for tensor in _initializers(proto):
        if uses_external_data(tensor):
            continue
        nbytes = len(tensor.raw_data) if tensor.HasField("raw_data") else _typed_bytes(tensor)
        if nbytes >= MIN_EXTERNAL_BYTES and _as_raw(tensor):
            store.add(tensor)
    set_weights_dir(proto, store.folder)
    return proto


def external_refs(
    proto: onnx.ModelProto, located: onnx.ModelProto | None = None
) -> Iterator[tuple[TensorProto, Path, int, int]]:
    """(tensor, data file, offset, length) for each external tensor of `proto` (control-flow subgraphs included),
    whose data file is in the weights folder of `located` (default: `proto` itself)."""
    folder = weights_dir(proto if located is None else located)
    if folder is None:
        return
    for tensor in _initializers(proto):
        if uses_external_data(tensor):
            info = {e.key: e.value for e in tensor.external_data}
            yield tensor, Path(folder) / info["location"], int(info.get("offset", 0)), int(info["length"])


def _external_ranges(proto: onnx.ModelProto, located: onnx.ModelProto) -> Iterator[tuple[TensorProto, IO, int]]:
    """(tensor, data file positioned at its bytes, length) for each external tensor of `proto`, whose data file
    is in the weights folder of `located`."""
    for tensor, path, offset, length in external_refs(proto, located):
        with open(path, "rb") as f:
            f.seek(offset)
            yield tensor, f, length


def adopt(proto: onnx.ModelProto, store: WeightStore) -> onnx.ModelProto:
    """Move a graph whose weights are in another folder's data file into `store`, one tensor in memory at a
    time (content already in the store is not written again); in place."""
    for tensor, f, length in _external_ranges(proto, proto):
        store.add(tensor, f.read(length))
    set_weights_dir(proto, store.folder)
    return externalize(proto, store)  # what the writer left inline


def program_into_store(program, store: WeightStore) -> onnx.ModelProto:
    """A torch.onnx ONNXProgram's graph, weightless, its weights in `store`. The program writes its weights
    straight to a scratch data file (no ModelProto ever holds them), which is then adopted and removed."""
    scratch = output.scratch_file(store.folder, ".program-", ".onnx")
    try:
        program.save(scratch, external_data=True)
        return adopt(load_graph(scratch), store)
    finally:
        for leftover in scratch.parent.glob(scratch.name + "*"):
            output.remove_file(leftover)


def _typed_bytes(tensor: TensorProto) -> int:
    count = 1
    for d in tensor.dims:
        count *= d
    return count * 4  # an estimate: only whether it reaches MIN_EXTERNAL_BYTES matters


def weights_dir(proto: onnx.ModelProto) -> Path | None:
    for prop in proto.metadata_props:
        if prop.key == WEIGHTS_DIR_KEY:
            return Path(prop.value)
    return None


def set_weights_dir(proto: onnx.ModelProto, folder: Path | None) -> None:
    kept = [p for p in proto.metadata_props if p.key != WEIGHTS_DIR_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    if folder is not None:
        proto.metadata_props.add(key=WEIGHTS_DIR_KEY, value=str(Path(folder).resolve()))


def has_external_weights(proto: onnx.ModelProto) -> bool:
    return any(uses_external_data(t) for t in _initializers(proto))


ORT_WEIGHTS_FOLDER = "session.model_external_initializers_file_folder_path"  # ONNX Runtime session config key


def session_config(proto: onnx.ModelProto) -> dict[str, str]:
    """ONNX Runtime session config entries for a graph given as bytes: where its data file is."""
    folder = weights_dir(proto) if has_external_weights(proto) else None
    return {} if folder is None else {ORT_WEIGHTS_FOLDER: str(folder)}


def store_of(proto: onnx.ModelProto) -> WeightStore:
    """The store a graph's weights are in (a new temporary one for a graph without external weights)."""
    folder = weights_dir(proto)
    return WeightStore.at(folder) if folder is not None else WeightStore.temporary()


def graph_sha256(proto: onnx.ModelProto) -> str:
    """A digest of the graph and of its weights' bytes (streamed from the data file, never loaded whole)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    set_weights_dir(copy, None)
    digest = hashlib.sha256()
    for tensor, f, length in _external_ranges(copy, proto):
        _copy_range(f, _Sink(digest), length)
        del tensor.external_data[:]  # where the bytes sit in the file does not matter, only what they are
    digest.update(copy.SerializeToString(deterministic=True))
    return digest.hexdigest()


class _Sink:
    def __init__(self, digest):
        self.write = digest.update


def load_graph(path: str | os.PathLike) -> onnx.ModelProto:
    """The graph at `path` without its weights; it points at its own folder for them. Works for files with
    their weights inline too (older exports, users' files)."""
    proto = onnx.load(str(path), load_external_data=False)
    if has_external_weights(proto):
        folder = Path(path).resolve().parent
        for location in sorted({_location(t) for t in _initializers(proto) if uses_external_data(t)}):
            if not (folder / location).is_file():
                raise ExportError(f"{path}: its weights file {location} is missing (keep it beside the graph)")
        set_weights_dir(proto, folder)
    return proto


def _location(tensor: TensorProto) -> str:
    return next(e.value for e in tensor.external_data if e.key == "location")


def materialized(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy holding its weights (for tools that need the values, such as ONNX Runtime's quantiser); protobuf's
    2 GB limit applies to it, so use it only where the values are needed."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    where = weights_dir(proto)
    if where is not None and has_external_weights(copy):
        load_external_data_for_model(copy, str(where))
    set_weights_dir(copy, None)
    return copy


def save_graphs(graphs: Mapping[str, onnx.ModelProto], folder: str | os.PathLike) -> Path | None:
    """Write each graph as folder/NAME and one data file, folder/WEIGHTS_FILE, holding exactly the tensors they
    use, each once; the protos given are not changed. The folder is a staging folder (mod_export.output) or a
    scratch one: files are written in place. Returns the data file (None when no graph has external weights)."""
    folder = Path(folder)
    store_path = folder / WEIGHTS_FILE
    copies: dict[str, onnx.ModelProto] = {}
    in_place = any(weights_dir(p) is not None and weights_dir(p) == folder.resolve() for p in graphs.values())
    packing = folder / f".{WEIGHTS_FILE}.packing" if in_place else store_path  # never truncate what we read
    with _Packer(packing) as packer:
        for name, proto in graphs.items():
            copy = onnx.ModelProto()
            copy.CopyFrom(proto)
            set_weights_dir(copy, None)
            source = weights_dir(proto)
            for tensor in _initializers(copy):
                if uses_external_data(tensor):
                    if source is None:
                        raise ExportError(f"graph {name} has external weights but no folder for them")
                    packer.repack(tensor, source)
            copies[name] = copy
    if not packer.used:
        output.remove_file(packing)
    elif packing != store_path:
        output.move_file(packing, store_path)
    for name, copy in copies.items():
        output.write_with(folder / name, lambda p, copy=copy: onnx.save_model(copy, str(p)))
    return store_path if packer.used else None


class _Packer:
    """Copies referenced byte ranges from source data files into one new data file, each range once."""

    def __init__(self, path: Path):
        self.path, self.used, self._size = path, False, 0
        self.packed: dict[tuple[Path, int, int], int] = {}  # (source file, offset, length) -> new offset
        self._out = None

    def __enter__(self) -> _Packer:
        output.make_dirs(self.path.parent)
        self._out = output.open_stream(self.path)
        return self

    def __exit__(self, *exc) -> None:
        self._out.close()

    def repack(self, tensor: TensorProto, source: Path) -> None:
        info = {e.key: e.value for e in tensor.external_data}
        src_file = (source / info["location"]).resolve()
        offset, length = int(info.get("offset", 0)), int(info["length"])
        key = (src_file, offset, length)
        new_offset = self.packed.get(key)
        if new_offset is None:
            new_offset = _aligned(self._size, length)
            self._out.write(b"\0" * (new_offset - self._size))
            with open(src_file, "rb") as src:
                src.seek(offset)
                _copy_range(src, self._out, length)
            self.packed[key] = new_offset
            self._size = new_offset + length
        _point(tensor, WEIGHTS_FILE, new_offset, length)
        self.used = True


def _copy_range(src, dst, length: int, chunk: int = 64 << 20) -> None:
    while length > 0:
        block = src.read(min(chunk, length))
        if not block:
            raise ExportError(f"external data file {src.name} ends early")
        dst.write(block)
        length -= len(block)
