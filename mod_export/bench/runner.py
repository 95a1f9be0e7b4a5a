"""`mod-export bench`: MoD versus its dense twin (same weights, routing off), side by side and interleaved, per
backend, against the analytic FLOP ideal (docs/benchmarks.md). Every backend is a runner of the one contract
(mod_export.backends): PyTorch eager, ONNX Runtime portable and plugin forms, and TensorRT engines where
TensorRT and a GPU are present (built here from the plugin form and the dense twin's portable form)."""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from mod_export import output
from mod_export.backends import registry
from mod_export.backends.onnxrt.runner import routing_outputs
from mod_export.backends.torch.runner import TorchRunner
from mod_export.backends.trt.builder import EngineSettings, ShapeRange, build_engine
from mod_export.backends.trt.runner import EngineRunner
from mod_export.bench.device_info import device_info
from mod_export.bench.models import load_model
from mod_export.bench.profile import routing_time_share
from mod_export.bench.timing import measure_interleaved
from mod_export.contract import ATTENTION_MASK, INPUT_IDS, WINDOW_BYTES
from mod_export.data.corpus import fixed_windows
from mod_export.errors import ModExportError
from mod_export.exporter.onnx_export import ExportedForms, export_forms
from mod_export.graph.weights import save_graphs
from mod_export.models.flops import forward_flops
from mod_export.plugin_build import library_path
from mod_export.progress import progress
from mod_export.validate.artifacts import evaluation_text
from mod_export.validate.cases import Case
from mod_export.validate.forms import reference_health
from mod_export.validate.judge import Candidate, judge

logger = logging.getLogger(__name__)

PLUGIN_FORM = "-plugin"  # a candidate that runs the plugin form: "<backend>-plugin"


def candidates() -> tuple[str, ...]:
    """What `bench --backends` may name: each backend of the registry, and "<backend>-plugin" for one that runs
    either ONNX form (torch, onnxruntime, onnxruntime-plugin, tensorrt)."""
    names: list[str] = []
    for name, spec in registry.BACKENDS.items():
        names += [name, name + PLUGIN_FORM] if spec.runs == "onnx" else [name]
    return tuple(names)


def backend_of(candidate: str) -> registry.BackendSpec:
    return registry.get(candidate.removesuffix(PLUGIN_FORM))


@dataclass
class BenchSettings:
    backends: tuple[str, ...] = ("torch", "onnxruntime", "onnxruntime-plugin")
    batch: tuple[int, ...] = (1,)
    seq_lens: tuple[int, ...] = (256, 512, 1024, 2048)
    capacities: tuple[str, ...] = ("1/8",)
    repeats: int = 10
    warmup: int = 2
    threads: int = 2
    profile: bool = True
    spinning: bool = False  # True: idle threads may spin after a run (mod_export.bench.threads says why not)


def _form_of(candidate: str, forms: ExportedForms) -> onnx.ModelProto:
    return forms.plugin if candidate.endswith(PLUGIN_FORM) else forms.portable


def check_backends(backends: tuple[str, ...]) -> dict[str, str]:
    """Unknown names are an error; backends that cannot run here map to the reason (reported as not run)."""
    known = candidates()
    unknown = [b for b in backends if b not in known]
    if unknown:
        raise ModExportError(f"unknown backend(s) {unknown}; choose from {', '.join(known)}")
    reasons = {b: backend_of(b).unavailable() for b in backends}
    return {b: reason for b, reason in reasons.items() if reason is not None}


def bench_router_health(model, forms: ExportedForms) -> dict:
    """Router health of the benchmarked model on held-out text (16 windows of 256 bytes)."""
    windows = fixed_windows(evaluation_text(), 16, WINDOW_BYTES) % model.config.vocab_size
    return reference_health(model, windows, [r.capacity for r in forms.routing])


def bench_parity(model, forms: ExportedForms, feed: dict, backends: tuple[str, ...]) -> dict:
    """Two-part parity of the timed ONNX forms against PyTorch on the benchmark's own input."""
    routing = forms.routing
    candidates = [
        Candidate(b, backend_of(b).api().runner(_form_of(b, forms), b, routing_outputs(routing)))
        for b in backends
        if backend_of(b).runs == "onnx"
    ]
    case = Case("bench input", feed[INPUT_IDS], feed[ATTENTION_MASK])
    reference = TorchRunner(model)
    with reference:
        for c in candidates:
            c.runner.activate()
        report = judge(reference, candidates, [case], [r.capacity for r in routing])
        for c in candidates:
            c.runner.deactivate()
    return {
        name: {key: entry["cases"][0][key] for key in ("forced_max_abs_err", "near_tie_flips", "routing_errors")}
        for name, entry in report["forms"].items()
    } | {"passed": report["passed"]}


def tensorrt_runners(forms: ExportedForms, dense_forms: ExportedForms, settings: BenchSettings, workdir: Path) -> tuple:
    """(MoD, dense) EngineRunners: engines built from the plugin form and the dense portable form, one profile
    covering every benchmarked batch and length. Runs only where TensorRT and a GPU are."""
    library = library_path()
    batch = ShapeRange(1, max(settings.batch), max(settings.batch))
    seq = ShapeRange(1, max(settings.seq_lens), max(settings.seq_lens))
    runners = []
    for name, proto, plugins in (("mod", forms.plugin, library), ("dense", dense_forms.portable, None)):
        onnx_path, engine = workdir / name / "model.onnx", workdir / f"{name}.engine"
        save_graphs({onnx_path.name: proto}, output.make_dirs(onnx_path.parent))  # its own data file
        logger.info("building the %s TensorRT engine ...", name)
        build_engine(onnx_path, engine, EngineSettings(batch=batch, seq=seq, plugin_library=plugins))
        runners.append(EngineRunner(engine, plugins, name=f"tensorrt/{name}"))
    return tuple(runners)


def _prepare(spec: str, capacity: str, settings: BenchSettings, not_run: dict, workdir: Path) -> dict:
    """The model, its dense twin, their exported forms and one (MoD, dense) runner pair per backend."""
    model = load_model(spec, capacity)
    dense = model.dense_twin()
    entry: dict = {"model": model, "runners": {}}
    wanted = [b for b in settings.backends if b not in not_run]
    if "torch" in wanted:
        entry["runners"]["torch"] = (TorchRunner(model, "torch/mod"), TorchRunner(dense, "torch/dense"))
    if any(backend_of(b).runs != "module" for b in wanted):
        forms = export_forms(model)
        dense_forms = export_forms(dense, allow_dense=True)
        entry["forms"] = forms
        entry["router_health"] = bench_router_health(model, forms)
        options = {"threads": settings.threads, "stop_spinning_after_run": not settings.spinning}
        dense: dict = {}  # one dense runner per backend, shared by both of its forms
        for candidate in wanted:
            spec = backend_of(candidate)
            if spec.runs == "onnx":
                if spec.name not in dense:
                    dense[spec.name] = spec.api().runner(dense_forms.portable, f"{spec.name}/dense", **options)
                mod = spec.api().runner(_form_of(candidate, forms), f"{candidate}/mod", **options)
                entry["runners"][candidate] = (mod, dense[spec.name])
            elif spec.runs == "engine":
                entry["runners"][candidate] = tensorrt_runners(forms, dense_forms, settings, workdir)
    for pair in entry["runners"].values():
        for runner in pair:
            if not runner.is_active:
                runner.activate()
    return entry


def _release(entry: dict) -> None:
    for pair in entry.get("runners", {}).values():
        for runner in pair:
            if runner.is_active:
                runner.deactivate()


def _call(runner, feed: dict):
    if isinstance(runner, TorchRunner):
        return lambda: runner.infer(feed, check_inputs=False, capture=False)
    return lambda: runner.infer(feed, check_inputs=False)


def run_bench(spec: str, settings: BenchSettings, show_progress: bool = True) -> dict:
    torch.set_num_threads(settings.threads)
    not_run = check_backends(settings.backends)
    results = []
    settings_list = [(c, b, t) for c in settings.capacities for b in settings.batch for t in settings.seq_lens]
    entry: dict = {}
    with output.scratch_dir(prefix="mod_export_bench_") as tmp:
        try:
            for capacity, batch, seq in progress(settings_list, desc="bench", enabled=show_progress):
                if entry.get("capacity") != capacity:  # keep one capacity's sessions and engines alive at a time
                    _release(entry)
                    entry = {"capacity": capacity, **_prepare(spec, capacity, settings, not_run, Path(tmp))}
                results.append(_measure(entry, capacity, batch, seq, settings))
        finally:
            _release(entry)
    return {"model": spec, "settings": vars(settings), "device": device_info(), "not_run": not_run, "results": results}


def _measure(entry: dict, capacity: str, batch: int, seq: int, settings: BenchSettings) -> dict:
    cfg = entry["model"].config
    ids = np.random.default_rng(seq).integers(0, cfg.vocab_size, (batch, seq)).astype(np.int64)
    feed = {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)}
    candidates = {}
    for backend, (mod_runner, dense_runner) in entry["runners"].items():
        candidates[f"{backend}/mod"], candidates[f"{backend}/dense"] = (
            _call(mod_runner, feed),
            _call(dense_runner, feed),
        )
    stats = measure_interleaved(candidates, repeats=settings.repeats, warmup=settings.warmup)
    flops_mod = forward_flops(cfg, batch, seq)["total"]
    flops_dense = forward_flops(cfg, batch, seq, False)["total"]
    row = {
        "capacity": capacity,
        "batch": batch,
        "seq": seq,
        "flops_mod": flops_mod,
        "flops_dense": flops_dense,
        "ideal_speedup": flops_dense / flops_mod,
        "backends": {},
        "peak_rss_mb_so_far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    for backend in entry["runners"]:
        mod, dense = stats[f"{backend}/mod"], stats[f"{backend}/dense"]
        achieved = dense.median / mod.median
        # the same round's dense/MoD pair: slow drifts of the machine cancel within a round
        paired = float(np.median(np.array(dense.samples_ms) / np.array(mod.samples_ms)))
        row["backends"][backend] = {
            "mod": mod.as_dict(),
            "dense": dense.as_dict(),
            "achieved_speedup": achieved,
            "achieved_over_ideal": achieved / row["ideal_speedup"],
            "paired_speedup": paired,
            "paired_over_ideal": paired / row["ideal_speedup"],
            "mod_tokens_per_s": batch * seq / (mod.median / 1000),
            "dense_tokens_per_s": batch * seq / (dense.median / 1000),
        }
    if "torch" in row["backends"] and "onnxruntime" in row["backends"]:
        row["onnxruntime_over_torch_mod"] = (
            row["backends"]["torch"]["mod"]["median_ms"] / row["backends"]["onnxruntime"]["mod"]["median_ms"]
        )
    if "forms" in entry:  # the timed graphs compute the right thing on this very input (docs/parity.md)
        row["parity"] = bench_parity(entry["model"], entry["forms"], feed, settings.backends)
        row["router_health"] = entry["router_health"]
    if settings.profile and "forms" in entry:
        row["ort_profile"] = routing_time_share(entry["forms"].portable, entry["forms"].plugin, feed, settings.threads)
    logger.info(
        "capacity %s B=%d T=%d: %s",
        capacity,
        batch,
        seq,
        ", ".join(
            f"{b} {v['achieved_speedup']:.2f}x (ideal {row['ideal_speedup']:.2f}x)" for b, v in row["backends"].items()
        ),
    )
    return row
