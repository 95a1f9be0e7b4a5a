"""ONNX Runtime as a Polygraphy runner for either ONNX form (the plugin form through its reference functions),
that can also return every routed layer's scores and selection, renamed `scores:l` / `idx:l`."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import onnx
from polygraphy.backend.onnxrt import OnnxrtRunner

from mod_export.backends.onnxrt.session import create_session
from mod_export.graph.queries import RoutingTensors, with_extra_outputs

ROUTING_OUTPUTS = ("scores", "idx")


class RoutingOnnxrtRunner(OnnxrtRunner):
    """Polygraphy's OnnxrtRunner whose outputs carry the shared routing names."""

    def __init__(self, session, rename: dict[str, str], name: str):
        super().__init__(session, name=name)
        self.rename = rename

    def infer(self, feed_dict, *args, **kwargs):
        got = super().infer(feed_dict, *args, **kwargs)
        return OrderedDict((self.rename.get(k, k), np.asarray(v)) for k, v in got.items())


def routing_outputs(routing: list[RoutingTensors], kinds: tuple[str, ...] = ROUTING_OUTPUTS) -> dict[str, str]:
    """{graph tensor: shared output name} for the given kinds ("scores", "idx") of every routed layer."""
    return {getattr(r, kind): f"{kind}:{layer}" for layer, r in enumerate(routing) for kind in kinds}


def idx_outputs(names: list[str]) -> dict[str, str]:
    """{idx tensor: "idx:l"} from the per-layer idx tensor names alone (what a manifest records)."""
    return {name: f"idx:{layer}" for layer, name in enumerate(names)}


def onnxrt_runner(
    proto: onnx.ModelProto, name: str, extra_outputs: dict[str, str] | None = None, **session_options
) -> RoutingOnnxrtRunner:
    """A runner of `proto` that also outputs the graph tensors in extra_outputs, under their shared names (see
    routing_outputs; None: logits only, as a benchmark times it). session_options go to create_session
    (providers, threads, stop_spinning_after_run)."""
    rename = dict(extra_outputs or {})
    session_options.setdefault("providers", ["CPUExecutionProvider"])
    session = create_session(with_extra_outputs(proto, list(rename)), **session_options)
    return RoutingOnnxrtRunner(session, rename, name)
