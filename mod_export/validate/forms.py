"""Validate exported ONNX forms against the PyTorch module they came from (any class whose routed blocks use
mod-export's ops), with the two-part verdict of mod_export.validate.judge and the router health report."""

from __future__ import annotations

import contextlib

import numpy as np
import onnx
import torch

from mod_export.backends.onnxrt.runner import onnxrt_runner, routing_outputs
from mod_export.backends.torch.runner import TorchRunner
from mod_export.contract import Tolerance, tolerance_for
from mod_export.errors import ModelError
from mod_export.graph.queries import graph_vocab, routing_tensors
from mod_export.models.capture import RoutingCapture
from mod_export.parity.health import LayerScores, router_health
from mod_export.validate.cases import validation_cases
from mod_export.validate.judge import Candidate, judge

HEALTH_WINDOWS = 32  # windows of 256 bytes of held-out text for the router health report


def reference_health(model, windows: np.ndarray, capacities: list[tuple[int, int]], batch: int = 16) -> dict:
    """Router health of the reference on windows[N,T] of real text (no padding)."""
    layers = [LayerScores([], [], cap, []) for cap in capacities]
    for start in range(0, len(windows), batch):
        ids = torch.from_numpy(np.ascontiguousarray(windows[start : start + batch]))
        traces: list = []
        with torch.no_grad(), RoutingCapture() as capture:
            if hasattr(model, "forward_trace"):
                model.forward_trace(ids, None, traces)
            else:
                model(ids, torch.ones_like(ids))
        for layer, record in zip(layers, capture.records):
            layer.scores.append(record.scores)
            layer.masks.append(None)
        predictors = [t.predictor_logits for t in traces]  # built-in models only: their causal predictors
        for layer_index, layer in enumerate(layers):
            logits = predictors[layer_index] if layer_index < len(predictors) else None
            if logits is None or layer.predictor_logits is None:
                layer.predictor_logits = None  # no decision logits for this layer
            else:
                layer.predictor_logits.append(logits.float().numpy())
    return router_health(layers)


def validate_runners(
    model,
    runners: list,
    plugin: onnx.ModelProto,
    text: np.ndarray,
    precision: str = "fp32",
    tolerance: Tolerance | None = None,
    health_windows: np.ndarray | None = None,
    routing: list | None = None,
) -> dict:
    """PyTorch `model` vs every candidate runner (Polygraphy runners returning logits and idx:l, ideally scores:l);
    `plugin` is the plugin-form graph (where the routing tensors and the vocabulary are read). text: held-out
    evaluation bytes; routing: plugin's routing tensors where the caller has read them. Returns the report; never
    raises on a mismatch."""
    routing = routing if routing is not None else routing_tensors(plugin)
    capacities = [r.capacity for r in routing]
    den = min((d for _, d in capacities), default=1)
    vocab = graph_vocab(plugin) or 256  # a graph that does not state it: the byte-level default
    model_vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if model_vocab is not None and model_vocab != vocab:
        raise ModelError(
            f"the exported graphs have a vocabulary of {vocab}, the model {model_vocab}: they come from different models"
        )
    cases = validation_cases(vocab, den, text)
    reference = TorchRunner(model)
    candidates = [Candidate(runner.name, runner) for runner in runners]
    with contextlib.ExitStack() as active:
        for runner in [reference, *runners]:
            active.enter_context(runner)
        report = judge(reference, candidates, cases, capacities, precision, tolerance or tolerance_for(precision))
    if health_windows is not None and capacities:
        report["router_health"] = reference_health(model, health_windows, capacities)
    return report


def validate_onnx_forms(
    model, forms: dict[str, onnx.ModelProto], plugin: onnx.ModelProto, text: np.ndarray, **options
) -> dict:
    """validate_runners with an ONNX Runtime runner per form (name -> proto); options as validate_runners'
    (precision, tolerance, health_windows)."""
    routing = routing_tensors(plugin)
    runners = [
        onnxrt_runner(proto, name, routing_outputs(routing), shared_weights=True) for name, proto in forms.items()
    ]
    return validate_runners(model, runners, plugin, text, routing=routing, **options)
