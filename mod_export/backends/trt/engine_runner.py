"""Run a serialized engine: plugin library loaded first, shapes set per call, buffers on the device
(torch CUDA tensors), optional CUDA-graph capture per fixed shape. Needs a GPU: never executed on the
CPU-only development machines."""
from __future__ import annotations

from pathlib import Path

from mod_export.backends.trt.availability import import_tensorrt, require_gpu
from mod_export.contract import ATTENTION_MASK, INPUT_IDS, LOGITS
from mod_export.errors import ModExportError



class TensorRTEngineRunner:
    def __init__(self, engine_path: Path, plugin_library: Path | None, cuda_graphs: bool = False):
        import torch

        self.trt = trt = import_tensorrt()
        require_gpu()
        if not torch.cuda.is_available():
            raise ModExportError("the TensorRT backend keeps buffers in torch CUDA tensors: install a CUDA build of torch")
        self.torch = torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        if plugin_library is not None and trt.get_plugin_registry().load_library(str(plugin_library)) is None:
            raise ModExportError(f"TensorRT could not load the plugin library {plugin_library}")
        runtime = trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ModExportError(f"TensorRT could not deserialize {engine_path} (built with another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple, tuple] = {}

    def _enqueue(self, input_ids, attention_mask, logits) -> None:
        for name, tensor in ((INPUT_IDS, input_ids), (ATTENTION_MASK, attention_mask), (LOGITS, logits)):
            self.context.set_tensor_address(name, tensor.data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise ModExportError("TensorRT execution failed (see the TensorRT log)")

    def run(self, input_ids, attention_mask):
        """input_ids/attention_mask: int64 CUDA tensors [B,T] -> float32 CUDA logits [B,T,V] (same device)."""
        torch = self.torch
        shape = tuple(input_ids.shape)
        self.context.set_input_shape(INPUT_IDS, shape)
        self.context.set_input_shape(ATTENTION_MASK, shape)
        out_shape = tuple(self.context.get_tensor_shape(LOGITS))
        if not self.cuda_graphs:
            logits = torch.empty(out_shape, dtype=torch.float32, device=input_ids.device)
            self.stream.wait_stream(torch.cuda.current_stream())
            self._enqueue(input_ids.contiguous(), attention_mask.contiguous(), logits)
            torch.cuda.current_stream().wait_stream(self.stream)
            return logits
        if shape not in self._graphs:  # static buffers + one warm-up enqueue, then capture
            static_ids, static_mask = input_ids.clone(), attention_mask.clone()
            static_out = torch.empty(out_shape, dtype=torch.float32, device=input_ids.device)
            with torch.cuda.stream(self.stream):
                self._enqueue(static_ids, static_mask, static_out)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=self.stream):
                    self._enqueue(static_ids, static_mask, static_out)
            self._graphs[shape] = (graph, static_ids, static_mask, static_out)
        graph, static_ids, static_mask, static_out = self._graphs[shape]
        static_ids.copy_(input_ids)
        static_mask.copy_(attention_mask)
        graph.replay()
        return static_out.clone()
