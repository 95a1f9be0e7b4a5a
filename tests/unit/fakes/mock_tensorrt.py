"""A MOCK of the `tensorrt` Python module: only what mod_export's builder calls, with TensorRT 10.3's
names and flag values. TensorRT cannot run on these CPU-only machines; this lets the builder code run up
to the point where a GPU is needed. Its ONNX "parser" mimics the fallback plugin importer: a node whose
op_type is not a standard ONNX op needs a creator from a loaded plugin library."""

from __future__ import annotations

import json

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
PLUGIN_CREATORS = {("MoDTopKGather", "1", "mod_export"), ("MoDScatter", "1", "mod_export")}


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
        }
        return json.dumps(payload).encode()
