"""Polygraphy runners for validation: the PyTorch reference (on the CPU, optionally forced to a candidate's
routing) and ONNX Runtime sessions that also return every routed layer's scores and selection."""
from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import onnx

from mod_export.contract import INPUT_NAMES, LOGITS
from mod_export.graph.queries import RoutingTensors, with_extra_outputs


def reference_runner(model, name: str = "pytorch"):
    """A Polygraphy BaseRunner around any torch module `model(input_ids, attention_mask) -> logits` whose routed
    blocks route through mod-export's ops. infer(feed, forced_idx=[idx per layer] or None) returns logits and,
    per routed layer l, `scores:l` (raw [B,T]) and `idx:l` (the applied selection [B,k])."""
    import torch
    from polygraphy.backend.base import BaseRunner
    from polygraphy.common import TensorMetadata

    from mod_export.models.capture import RoutingCapture

    class TorchReferenceRunner(BaseRunner):
        """Polygraphy's PytRunner moves inputs to CUDA; this one runs the reference on the CPU."""

        def __init__(self):
            super().__init__(name=name, prefix="pytorch-runner")
            self.last_capture: RoutingCapture | None = None

        def activate_impl(self):
            pass

        def get_input_metadata_impl(self):
            meta = TensorMetadata()
            for input_name in INPUT_NAMES:
                meta.add(input_name, np.int64, (-1, -1))
            return meta

        def infer_impl(self, feed_dict, forced_idx=None):
            start = time.perf_counter()
            with torch.no_grad(), RoutingCapture(forced=forced_idx) as capture:
                logits = model(torch.from_numpy(feed_dict[INPUT_NAMES[0]]), torch.from_numpy(feed_dict[INPUT_NAMES[1]]))
            self.inference_time = time.perf_counter() - start
            self.last_capture = capture
            out = OrderedDict([(LOGITS, logits.float().numpy())])
            for layer, record in enumerate(capture.records):
                out[f"scores:{layer}"] = record.scores
                out[f"idx:{layer}"] = record.idx
            return out

        def deactivate_impl(self):
            pass

    return TorchReferenceRunner()


def routing_output_names(routing: list[RoutingTensors]) -> list[str]:
    return [t for r in routing for t in (r.scores, r.idx)]


def onnx_runner(proto: onnx.ModelProto, routing: list[RoutingTensors], name: str, threads: int | None = None):
    """Polygraphy's OnnxrtRunner on a session of `proto` (either form) that also outputs, per routed layer,
    the scores and idx tensors, renamed `scores:l` / `idx:l` like the reference's outputs."""
    from polygraphy.backend.onnxrt import OnnxrtRunner

    from mod_export.backends.onnxrt.session import create_session

    rename = {}
    for layer, r in enumerate(routing):
        rename[r.scores], rename[r.idx] = f"scores:{layer}", f"idx:{layer}"

    class RoutingOnnxrtRunner(OnnxrtRunner):
        def infer(self, feed_dict, *args, **kwargs):
            got = super().infer(feed_dict, *args, **kwargs)
            return OrderedDict((rename.get(k, k), np.array(v)) for k, v in got.items())

    session = create_session(with_extra_outputs(proto, routing_output_names(routing)),
                             providers=["CPUExecutionProvider"], threads=threads)
    return RoutingOnnxrtRunner(session, name=name)
