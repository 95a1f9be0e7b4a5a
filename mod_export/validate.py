"""Parity validation: PyTorch versus ONNX Runtime for both ONNX forms, with Polygraphy's Comparator.

Per case and form: max absolute / relative logits error (Polygraphy SimpleCompareFunc) and, per routed
layer, routing agreement = fraction of rows whose selected index set equals PyTorch's. Every mismatch is
collected first; the caller raises one ParityError after writing the report.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import onnx
import torch

from mod_export.export.custom_ops import DOMAIN, TOPK_GATHER
from mod_export.export.onnx_export import INPUT_NAMES, OUTPUT_NAME, with_extra_outputs
from mod_export.models.model import MoDTransformer

DEFAULT_ATOL = 1e-4


@dataclass
class Case:
    name: str
    input_ids: np.ndarray  # [B,T] int64
    attention_mask: np.ndarray  # [B,T] int64

    @property
    def feed(self) -> dict[str, np.ndarray]:
        return {INPUT_NAMES[0]: self.input_ids, INPUT_NAMES[1]: self.attention_mask}


def validation_cases(model: MoDTransformer, held_out: np.ndarray, seed: int = 0) -> list[Case]:
    """Shapes the exporter never saw (it traces T=48): real text, random tokens, k*T not an integer,
    T shorter than the capacity denominator, T=1, and batch 3 with left and right padding."""
    rng = np.random.default_rng(seed)
    vocab = model.config.vocab_size
    _, den = model.config.capacity_fraction

    def text(batch: int, T: int) -> np.ndarray:
        starts = rng.integers(0, len(held_out) - T - 1, size=batch)
        return np.stack([held_out[s : s + T] for s in starts]).astype(np.int64) % vocab

    def ones(ids: np.ndarray) -> np.ndarray:
        return np.ones_like(ids, dtype=np.int64)

    short_T = max(1, den - 3) if den > 1 else 1
    cases = [
        Case("held-out text B=2 T=256", ids := text(2, 256), ones(ids)),
        Case("held-out text B=1 T=1000", ids := text(1, 1000), ones(ids)),
        Case("random tokens B=2 T=97 (k*T not integral)", ids := rng.integers(0, vocab, (2, 97)).astype(np.int64), ones(ids)),
        Case(f"random tokens B=2 T={short_T} (< capacity den {den})", ids := rng.integers(0, vocab, (2, short_T)).astype(np.int64), ones(ids)),
        Case("held-out text B=1 T=1", ids := text(1, 1), ones(ids)),
    ]
    padded = text(3, 64)
    mask = np.ones_like(padded)
    mask[1, :10] = 0  # left padding
    mask[2, 24:] = 0  # right padding
    padded = np.where(mask == 1, padded, 0)
    cases.append(Case("held-out text B=3 T=64 with left/right padding", padded, mask))
    return cases


def idx_tensor_names(plugin_model: onnx.ModelProto) -> list[str]:
    """Per routed layer (graph order), the name of its idx tensor (output 1 of MoDTopKGather)."""
    return [n.output[1] for n in plugin_model.graph.node if n.domain == DOMAIN and n.op_type == TOPK_GATHER]


def _torch_runner(model: MoDTransformer, idx_names: list[str]):
    from polygraphy.backend.base import BaseRunner
    from polygraphy.common import TensorMetadata

    class TorchCpuRunner(BaseRunner):
        """Polygraphy's PytRunner moves inputs to CUDA; this one runs the PyTorch reference on the CPU."""

        def __init__(self):
            super().__init__(name="pytorch", prefix="pytorch-runner")

        def activate_impl(self):
            pass

        def get_input_metadata_impl(self):
            meta = TensorMetadata()
            for name in INPUT_NAMES:
                meta.add(name, np.int64, (-1, -1))
            return meta

        def infer_impl(self, feed_dict):
            traces: list = []
            start = time.perf_counter()
            with torch.no_grad():
                logits = model.forward_trace(torch.from_numpy(feed_dict[INPUT_NAMES[0]]),
                                             torch.from_numpy(feed_dict[INPUT_NAMES[1]]), traces)
            self.inference_time = time.perf_counter() - start
            out = OrderedDict([(OUTPUT_NAME, logits.numpy())])
            for name, trace in zip(idx_names, traces):
                out[name] = trace.idx.numpy()
            return out

        def deactivate_impl(self):
            pass

    return TorchCpuRunner()


def routing_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Fraction of rows whose selected index sets are identical. [B,k] each."""
    if reference.shape != candidate.shape:
        return 0.0
    same = [np.array_equal(np.sort(r), np.sort(c)) for r, c in zip(reference, candidate)]
    return float(np.mean(same)) if same else 1.0


def _simple_compare_func(**kwargs):
    try:  # Polygraphy >= 0.53
        from polygraphy.comparator import SimpleCompareFunc

        return SimpleCompareFunc(**kwargs)
    except ImportError:
        from polygraphy.comparator import CompareFunc

        return CompareFunc.simple(**kwargs)


def validate_forms(model: MoDTransformer, forms: dict[str, onnx.ModelProto], cases: list[Case],
                   idx_names: list[str], atol: float = DEFAULT_ATOL) -> dict:
    """Run PyTorch and every ONNX form on every case; returns the report dict (never raises on mismatch)."""
    from polygraphy.backend.onnxrt import OnnxrtRunner
    from polygraphy.comparator import Comparator
    from polygraphy.logger import G_LOGGER

    from mod_export.backends.onnxrt.session import create_session

    data = [c.feed for c in cases]
    torch_runner = _torch_runner(model, idx_names)
    runners = [torch_runner]
    for form, proto in forms.items():
        runners.append(OnnxrtRunner(create_session(with_extra_outputs(proto, idx_names), providers=["CPUExecutionProvider"]), name=form))
    compare = _simple_compare_func(atol=atol, rtol=0.0, check_error_stat="max",
                                 find_output_func=lambda name, index, result: [name] if name == OUTPUT_NAME else [])
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        results = Comparator.run(runners, data_loader=data)
        accuracy = Comparator.compare_accuracy(results, comparisons=[(0, i) for i in range(1, len(runners))], compare_func=compare)
    if type(accuracy).__name__ == "AccuracyResults":  # Polygraphy >= 0.50: one result per compare function
        accuracy = accuracy[0]
    ref_iters = results[0][1]
    report: dict = {"atol": atol, "forms": {}, "mismatches": []}
    for i, form in enumerate(forms, start=1):
        pair = (runners[0].name, runners[i].name)
        form_iters = results[i][1]
        rows = []
        for case, ref, got, cmp in zip(cases, ref_iters, form_iters, accuracy[pair]):
            res = cmp[OUTPUT_NAME]
            agreement = {str(layer): routing_agreement(ref[n], got[n]) for layer, n in enumerate(idx_names)}
            row = {
                "case": case.name, "shape": list(case.input_ids.shape),
                "max_abs_err": float(res.max_absdiff), "max_rel_err": float(res.max_reldiff),
                "routing_agreement": agreement,
                "passed": bool(res.max_absdiff <= atol) and all(v == 1.0 for v in agreement.values()),
            }
            if row["max_abs_err"] > atol:
                report["mismatches"].append(f"{form} / {case.name}: logits max abs error {row['max_abs_err']:.3g} > {atol:g}")
            for layer, v in agreement.items():
                if v != 1.0:
                    report["mismatches"].append(f"{form} / {case.name}: routed layer #{layer} routing agreement {100 * v:.1f}%")
            rows.append(row)
        report["forms"][form] = {"cases": rows, "passed": all(r["passed"] for r in rows)}
    report["passed"] = not report["mismatches"]
    return report


def format_table(report: dict) -> str:
    lines = [f"{'form':9} {'case':52} {'max abs err':>11} {'max rel err':>11} {'routing':>8}  ok"]
    for form, entry in report["forms"].items():
        for row in entry["cases"]:
            agree = min(row["routing_agreement"].values(), default=1.0)
            lines.append(f"{form:9} {row['case'][:52]:52} {row['max_abs_err']:11.2e} {row['max_rel_err']:11.2e} "
                         f"{100 * agree:7.1f}%  {'yes' if row['passed'] else 'NO'}")
    return "\n".join(lines)
