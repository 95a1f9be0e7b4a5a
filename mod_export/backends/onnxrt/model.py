"""ONNX Runtime as a runtime backend (mod_export.backends.model.RuntimeModel): either ONNX form of an export
folder, or one .onnx file. Runs are concurrent (InferenceSession.Run is thread-safe); generation steps the folder's
step graph, each call with a cache of its own over the shared session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from mod_export.backends.model import RuntimeModel, caller_torch
from mod_export.backends.onnxrt.generation import OrtStepper
from mod_export.backends.onnxrt.runner import idx_outputs, onnxrt_runner
from mod_export.backends.onnxrt.session import available_providers
from mod_export.contract import ATTENTION_MASK, INPUT_IDS, LOGITS, PLUGIN_FILE, PORTABLE_FILE
from mod_export.errors import ExportError, InputError
from mod_export.graph.queries import graph_vocab, idx_tensor_names
from mod_export.graph.weights import load_graph
from mod_export.integrity import check_files

FORMS = {"portable": PORTABLE_FILE, "plugin": PLUGIN_FILE}  # form -> the file of an export folder


def read_onnx(path: Path, what: str = "") -> onnx.ModelProto:
    """The graph at path, without its weights (graph/weights.py); one clear error for a damaged file."""
    try:
        return load_graph(path)
    except ExportError:  # a graph whose weights file is missing says so
        raise
    except Exception as exc:  # protobuf's DecodeError and friends for a damaged file
        raise ExportError(f"{what or path} is not a readable ONNX file ({type(exc).__name__})") from None


class OrtModel(RuntimeModel):
    name = "onnxruntime"

    def __init__(
        self,
        path: Path,
        form: str = "portable",
        providers: list[str] | None = None,
        threads: int | None = None,
        skip_integrity: bool = False,
        **_,
    ):
        onnx_file = path if path.suffix == ".onnx" else path / FORMS[form]
        if not onnx_file.is_file():
            raise InputError(f"no ONNX file at {onnx_file}")
        manifest = check_files(path, [onnx_file.name], skip_integrity)
        proto = read_onnx(onnx_file)
        # Every routed layer's selection idx[B,k] is also an output: small, computed anyway, and it lets
        # run_with_routing() report what this very session decided (the logits are unaffected).
        names = idx_tensor_names(proto) or list((manifest or {}).get("routing_idx_tensors") or [])
        produced = {o for n in proto.graph.node for o in n.output}
        super().__init__(manifest, graph_vocab(proto), [n for n in names if n in produced])
        self.providers = list(providers or available_providers())
        self.threads = threads
        self.runner = onnxrt_runner(
            proto, self.name, idx_outputs(self.idx_names), providers=self.providers, threads=threads
        )
        self.runner.activate()

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.runner.infer(feed, check_inputs=False)[LOGITS]

    def run_with_routing(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        if not self.idx_names:
            raise InputError(
                "this ONNX file does not say where its routing decisions are (open the export directory, "
                "whose manifest.json names them)"
            )
        out = self.runner.infer(feed, check_inputs=False)
        return out[LOGITS], [out[f"idx:{layer}"] for layer in range(len(self.idx_names))]

    def run_torch(self, ids, mask):
        """CUDA tensors stay on the device where the CUDA execution provider runs; others go through numpy."""
        torch = caller_torch()
        if ids.is_cuda and "CUDAExecutionProvider" in self.providers:
            return self._run_on_device(ids.contiguous(), mask.contiguous())
        feed = {INPUT_IDS: ids.cpu().numpy(), ATTENTION_MASK: mask.cpu().numpy()}
        return torch.from_numpy(self.run(feed)).to(ids.device)

    def _run_on_device(self, ids, mask):
        """IO binding: inputs and logits stay in CUDA memory (onnxruntime-gpu only; never run on the CPU-only
        development machines)."""
        torch = caller_torch()
        sess = self.runner.sess
        device = ids.device.index or 0
        logits = torch.empty((*ids.shape, sess.get_outputs()[0].shape[-1]), dtype=torch.float32, device=ids.device)
        binding = sess.io_binding()
        for name, tensor in ((INPUT_IDS, ids), (ATTENTION_MASK, mask)):
            binding.bind_input(name, "cuda", device, np.int64, tuple(tensor.shape), tensor.data_ptr())
        binding.bind_output(LOGITS, "cuda", device, np.float32, tuple(logits.shape), logits.data_ptr())
        for name in self.idx_names:  # the routing outputs stay on the device, allocated by ONNX Runtime
            binding.bind_output(name, "cuda", device)
        sess.run_with_iobinding(binding)
        return logits

    def stepper(self, directory: Path, info: dict, max_context: int | None, skip_integrity: bool) -> OrtStepper:
        """The step graph, in one session (docs/generation.md)."""
        if "step" not in info:
            raise InputError(
                f"{directory} was exported by an older mod-export (model.prefill.onnx and model.decode.onnx): "
                "re-export it, and generation runs on its step graph"
            )
        check_files(directory, [info["step"]], skip_integrity)
        step = read_onnx(directory / info["step"], f"the generation graph {info['step']} in {directory}")
        return OrtStepper(step, providers=["CPUExecutionProvider"], threads=self.threads)

    def close(self) -> None:
        if self.runner.is_active:
            self.runner.deactivate()
