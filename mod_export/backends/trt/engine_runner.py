"""Run a serialized engine on torch CUDA tensors: plugin library loaded first, shapes set per call, every output
(logits, and the routing selections where the engine was built with them) in torch CUDA buffers, optional
CUDA-graph capture per fixed shape. This is the zero-copy path for callers who already hold torch CUDA tensors;
numpy callers go through backends/trt/runner.py (Polygraphy's TrtRunner, no torch).

torch is never imported here: the caller passes the torch module it already uses (the runtime takes it from
sys.modules when it is handed a torch tensor), so this module belongs to the torch-free runtime's import graph.
Needs a GPU: it has never run on the CPU-only development machines; its host logic (I/O discovery, dtype
mapping, buffer shapes) is tested with a mock TensorRT."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mod_export.backends.trt.availability import import_tensorrt, require_gpu
from mod_export.contract import INPUT_NAMES, LOGITS
from mod_export.errors import ModExportError

TRT_TO_TORCH = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT32": "int32",
    "INT64": "int64",
    "INT8": "int8",
    "BOOL": "bool",
    "UINT8": "uint8",
}


def engine_outputs(trt, engine) -> list[tuple[str, str]]:
    """(name, torch dtype name) of every output tensor of the engine, in engine order."""
    outputs = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            dtype = engine.get_tensor_dtype(name)
            key = getattr(dtype, "name", str(dtype)).split(".")[-1]
            if key not in TRT_TO_TORCH:
                raise ModExportError(f"engine output {name} has a data type ({key}) the runner does not map")
            outputs.append((name, TRT_TO_TORCH[key]))
    return outputs


@dataclass
class LoadedEngine:
    """A deserialized engine with the TensorRT objects that must outlive it (logger, runtime)."""

    trt: object
    logger: object
    runtime: object
    engine: object


def load_engine(engine_path: Path, plugin_library: Path | None) -> LoadedEngine:
    """The plugin library is loaded first, then the engine deserialized (no torch, no CUDA buffers yet)."""
    trt = import_tensorrt()
    require_gpu()
    if plugin_library is not None and trt.get_plugin_registry().load_library(str(plugin_library)) is None:
        raise ModExportError(f"TensorRT could not load the plugin library {plugin_library}")
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise ModExportError(
            f"TensorRT could not deserialize {engine_path} (built with another TensorRT version or GPU?)"
        )
    return LoadedEngine(trt, logger, runtime, engine)


class TensorRTEngineRunner:
    def __init__(self, loaded: LoadedEngine, torch, cuda_graphs: bool = False):
        """loaded: from load_engine (shared with the numpy runner); torch: the caller's torch module (CUDA build)."""
        if not torch.cuda.is_available():
            raise ModExportError("torch CUDA tensors need a CUDA build of torch that sees the GPU")
        self.loaded, self.trt, self.engine, self.torch = loaded, loaded.trt, loaded.engine, torch
        self.context = self.engine.create_execution_context()
        self.outputs = engine_outputs(self.trt, self.engine)
        self.stream = torch.cuda.Stream()
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple, tuple] = {}

    def _allocate(self, device) -> dict:
        torch = self.torch
        return {
            name: torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=getattr(torch, dtype), device=device)
            for name, dtype in self.outputs
        }

    def _enqueue(self, inputs: dict, outputs: dict) -> None:
        for name, tensor in {**inputs, **outputs}.items():
            self.context.set_tensor_address(name, tensor.data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise ModExportError("TensorRT execution failed (see the TensorRT log)")

    def run_all(self, input_ids, attention_mask) -> dict:
        """input_ids/attention_mask: int64 CUDA tensors [B,T] -> {output name: CUDA tensor} (logits [B,T,V], ...)."""
        torch = self.torch
        shape = tuple(input_ids.shape)
        inputs = dict(zip(INPUT_NAMES, (input_ids.contiguous(), attention_mask.contiguous())))
        for name in INPUT_NAMES:
            self.context.set_input_shape(name, shape)
        if not self.cuda_graphs:
            outputs = self._allocate(input_ids.device)
            self.stream.wait_stream(torch.cuda.current_stream())
            self._enqueue(inputs, outputs)
            torch.cuda.current_stream().wait_stream(self.stream)
            return outputs
        if shape not in self._graphs:  # static buffers + one warm-up enqueue, then capture
            static_in = {k: v.clone() for k, v in inputs.items()}
            static_out = self._allocate(input_ids.device)
            with torch.cuda.stream(self.stream):
                self._enqueue(static_in, static_out)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=self.stream):
                    self._enqueue(static_in, static_out)
            self._graphs[shape] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[shape]
        for name, tensor in inputs.items():
            static_in[name].copy_(tensor)
        graph.replay()
        return {k: v.clone() for k, v in static_out.items()}

    def run(self, input_ids, attention_mask):
        """The logits only (CUDA tensor [B,T,V])."""
        return self.run_all(input_ids, attention_mask)[LOGITS]
