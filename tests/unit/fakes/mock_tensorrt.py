"""A MOCK of the `tensorrt` Python module: only what mod_export's builder calls, with TensorRT 10.3's
names and flag values. TensorRT cannot run on these CPU-only machines; this lets the builder code run up
to the point where a GPU is needed. Its ONNX "parser" mimics the fallback plugin importer: a node whose
op_type is not a standard ONNX op needs a creator from a loaded plugin library. Its engines (Runtime,
execution context) run the parsed ONNX file with ONNX Runtime and the reference functions, reading inputs from and
writing outputs to the raw addresses bound with set_tensor_address (CPU tensors here), so a host-side driver such as
the generation stepper runs end to end; an output bound to an input's address is written in place, as TensorRT does
for an aliased plugin output."""

from __future__ import annotations

import base64
import ctypes
import json

import numpy as np
import onnx

__version__ = "10.3.0-mock"


class Logger:
    WARNING = 2

    def __init__(self, severity=WARNING):
        self.severity = severity


class NetworkDefinitionCreationFlag:
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class MemoryPoolType:
    WORKSPACE = 0


class IProgressMonitor:
    def __init__(self):
        pass


class _Registry:
    def __init__(self):
        self.libraries: list[str] = []

    def load_library(self, path):
        self.libraries.append(path)
        return object()


REGISTRY = _Registry()
PLUGIN_CREATORS = {
    ("MoDTopKGather", "1", "mod_export"),
    ("MoDScatter", "1", "mod_export"),
    ("MoDTakeCount", "1", "mod_export"),
    ("MoDCacheAppend", "1", "mod_export"),
}


class PreviewFeature:
    ALIASED_PLUGIN_IO_10_03 = 1


def get_plugin_registry():
    return REGISTRY


class _ParserError:
    def __init__(self, index, node):
        self._index, self._node = index, node

    def desc(self):
        return f"no importer or plugin creator for op {self._node.op_type}"

    def node(self):
        return self._index

    def node_name(self):
        return self._node.name

    def node_operator(self):
        return self._node.op_type


class OnnxParser:
    def __init__(self, network, logger):
        self.network = network
        self.errors: list[_ParserError] = []

    def parse_from_file(self, path):
        model = onnx.load(path)
        plugins_loaded = bool(REGISTRY.libraries)
        for i, node in enumerate(model.graph.node):
            if node.domain in ("", "ai.onnx"):
                continue
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            key = (
                node.op_type,
                attrs.get("plugin_version", b"1").decode(),
                attrs.get("plugin_namespace", b"").decode(),
            )
            if not (plugins_loaded and key in PLUGIN_CREATORS):
                self.errors.append(_ParserError(i, node))
        self.network.inputs = [i.name for i in model.graph.input]
        self.network.onnx_model = base64.b64encode(model.SerializeToString()).decode()  # the engine holds the network
        self.network.layers = [_Layer(list(node.output)) for node in model.graph.node]
        return not self.errors

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]


class _Tensor:
    def __init__(self, name):
        self.name = name


class _Layer:
    def __init__(self, outputs):
        self._outputs = [_Tensor(o) for o in outputs]

    @property
    def num_outputs(self):
        return len(self._outputs)

    def get_output(self, j):
        return self._outputs[j]


class _Network:
    def __init__(self):
        self.inputs, self.layers, self.marked = [], [], []
        self.onnx_model = None

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, i):
        return self.layers[i]

    def mark_output(self, tensor):
        self.marked.append(tensor.name)


class _Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's parameter names
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class _TimingCache:
    def __init__(self, data: bytes):
        self.data = data or b"mock-timing-cache"

    def serialize(self):
        return self.data + b"+1"


class _Config:
    def __init__(self):
        self.profiles = []
        self.pools = {}
        self.timing_cache = None
        self.plugins_to_serialize = []
        self.progress_monitor = None
        self.preview = {}

    def set_preview_feature(self, feature, enable):
        self.preview[feature] = enable

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data):
        return _TimingCache(bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.timing_cache = cache
        return True

    def get_timing_cache(self):
        return self.timing_cache


class Builder:
    last = None

    def __init__(self, logger):
        Builder.last = self
        self.network_flags = None

    def create_network(self, flags=0):
        self.network_flags = flags
        return _Network()

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        monitor = config.progress_monitor
        if monitor is not None:
            monitor.phase_start("Building engine", None, 2)
            monitor.step_complete("Building engine", 1)
            monitor.step_complete("Building engine", 2)
            monitor.phase_finish("Building engine")
        payload = {
            "inputs": network.inputs,
            "profiles": [p.shapes for p in config.profiles],
            "plugins": list(config.plugins_to_serialize),
            "flags": self.network_flags,
            "marked": network.marked,
            "onnx": network.onnx_model,
            "preview": {str(k): v for k, v in config.preview.items()},
        }
        return json.dumps(payload).encode()


# ---------------------------------------------------------------- runtime: engines that run the ONNX on ORT


class _DataType:
    def __init__(self, name):
        self.name = name


class DataType:
    FLOAT, HALF, INT32, INT64, BOOL = (_DataType(n) for n in ("FLOAT", "HALF", "INT32", "INT64", "BOOL"))


ONNX_TO_TRT = {1: DataType.FLOAT, 10: DataType.HALF, 6: DataType.INT32, 7: DataType.INT64, 9: DataType.BOOL}


class TensorIOMode:
    INPUT, OUTPUT = "INPUT", "OUTPUT"


class Runtime:
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, data):
        payload = json.loads(bytes(data))
        return _Engine(payload["onnx"]) if payload.get("onnx") else None


class _Engine:
    def __init__(self, onnx_model: str):
        self.model = onnx.load_from_string(base64.b64decode(onnx_model))
        graph = self.model.graph
        self.io = [(v, TensorIOMode.INPUT) for v in graph.input] + [(v, TensorIOMode.OUTPUT) for v in graph.output]
        self.by_name = {v.name: (v, mode) for v, mode in self.io}
        self.session = None

    @property
    def num_io_tensors(self):
        return len(self.io)

    def get_tensor_name(self, i):
        return self.io[i][0].name

    def get_tensor_mode(self, name):
        return self.by_name[name][1]

    def get_tensor_dtype(self, name):
        return ONNX_TO_TRT[self.by_name[name][0].type.tensor_type.elem_type]

    def create_execution_context(self):
        return _Context(self)


def _view(address, shape, elem_type):
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    count = int(np.prod(shape)) if len(shape) else 1
    raw = (ctypes.c_char * max(count * dtype.itemsize, 1)).from_address(address)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


class _Context:
    def __init__(self, engine):
        self.engine = engine
        self.shapes, self.addresses = {}, {}
        self.executions = 0

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(int(d) for d in shape)
        return True

    def _symbols(self):
        symbols = {}
        for value in self.engine.model.graph.input:
            for dim, size in zip(value.type.tensor_type.shape.dim, self.shapes.get(value.name, ())):
                if dim.dim_param:
                    symbols[dim.dim_param] = size
        return symbols

    def get_tensor_shape(self, name):
        value, mode = self.engine.by_name[name]
        if mode == TensorIOMode.INPUT:
            return self.shapes[name]
        symbols = self._symbols()
        return tuple(symbols[d.dim_param] if d.dim_param else d.dim_value for d in value.type.tensor_type.shape.dim)

    def set_tensor_address(self, name, address):
        self.addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream_handle):
        from mod_export.backends.onnxrt.session import create_session

        engine = self.engine
        if engine.session is None:
            engine.session = create_session(engine.model)  # reference functions attached: the plugins' semantics
        feed = {}
        for value in engine.model.graph.input:
            shape = self.shapes[value.name]
            feed[value.name] = _view(self.addresses[value.name], shape, value.type.tensor_type.elem_type).copy()
        results = engine.session.run(None, feed)
        for value, result in zip(engine.model.graph.output, results):
            out = _view(self.addresses[value.name], self.get_tensor_shape(value.name), value.type.tensor_type.elem_type)
            out[...] = result  # an output bound to an input's buffer is updated in place
        self.executions += 1
        return True
