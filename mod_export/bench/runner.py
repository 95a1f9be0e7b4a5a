"""`mod-export bench`: MoD versus its dense twin (same weights, routing off), side by side and interleaved,
per backend, against the analytic FLOP ideal (DESIGN.md section 8)."""
from __future__ import annotations

import collections
import json
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mod_export.bench.timing import measure_interleaved
from mod_export.errors import MissingDependencyError, ModExportError
from mod_export.flops import forward_flops
from mod_export.models.config import MoDConfig

BACKENDS = ("torch", "onnxruntime", "onnxruntime-plugin", "tensorrt")


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


def synthetic_config(spec: str) -> MoDConfig:
    """'synthetic:512x8' -> width 512, 8 blocks, 64-wide heads, MLP 4x, every other block routed."""
    try:
        width, layers = (int(v) for v in spec.split(":", 1)[1].lower().split("x"))
    except (ValueError, IndexError):
        raise ModExportError(f"synthetic model must look like synthetic:WIDTHxLAYERS (e.g. synthetic:512x8), got {spec!r}") from None
    return MoDConfig(d_model=width, n_heads=max(1, width // 64), n_layers=layers, d_mlp=4 * width, causal_predictor=False)


def load_model(spec: str, capacity: str):
    """The MoD model with the given capacity (weights from a checkpoint, or seeded random for synthetic)."""
    import torch

    from mod_export.models.model import MoDTransformer

    if spec.startswith("synthetic:"):
        cfg = synthetic_config(spec).replace(capacity=capacity)
        torch.manual_seed(0)
        return MoDTransformer(cfg).eval()
    from mod_export.checkpoint import load_checkpoint

    base = load_checkpoint(spec)
    model = MoDTransformer(base.config.replace(capacity=capacity)).eval()
    model.load_state_dict(base.state_dict())
    return model


def routing_time_share(proto_portable, proto_plugin, feed: dict, threads: int, runs: int = 5) -> dict:
    """ONNX Runtime's profiler on the portable MoD graph: share of kernel time in the routing ops (nodes that
    came from inlining MoDTopKGather/MoDScatter) and in the routers."""
    import tempfile

    from calibration.policy import router_nodes
    from mod_export.backends.onnxrt.session import create_session

    import onnx

    plugin_names = {n.name for n in proto_plugin.graph.node}
    labelled = onnx.ModelProto()
    labelled.CopyFrom(proto_portable)
    for i, node in enumerate(labelled.graph.node):  # inlined routing nodes may be unnamed: label them
        if not node.name or node.name not in plugin_names:
            node.name = f"modrouting_{i}"
    router_names = {n.name for n in router_nodes(proto_plugin)}
    with tempfile.TemporaryDirectory() as tmp:
        session = create_session(labelled, providers=["CPUExecutionProvider"], threads=threads,
                                 profile_prefix=str(Path(tmp) / "prof"))
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")].split("/")[0]  # fused nodes keep their first node's name
        kind = "routing_ops" if name.startswith("modrouting_") else "routers" if name in router_names else "rest"
        totals[kind] += e["dur"]
        totals[f"op:{e['args'].get('op_name')}"] += e["dur"]
    total = sum(totals[k] for k in ("routing_ops", "routers", "rest")) or 1
    top = {k[3:]: v / total for k, v in totals.most_common() if k.startswith("op:")}
    return {"routing_ops_share": totals["routing_ops"] / total, "routers_share": totals["routers"] / total,
            "top_ops": dict(list(top.items())[:8])}


def bench_router_health(model, plugin) -> dict:
    """Router health of the benchmarked model on held-out text (16 windows of 256 bytes)."""
    from mod_export.contract import WINDOW_BYTES
    from mod_export.data.corpus import fixed_windows
    from mod_export.graph.queries import routing_tensors
    from mod_export.validate.artifacts import evaluation_text
    from mod_export.validate.forms import reference_health

    windows = fixed_windows(evaluation_text(), 16, WINDOW_BYTES) % model.config.vocab_size
    return reference_health(model, windows, [r.capacity for r in routing_tensors(plugin)])


def bench_parity(model, forms, feed: dict, backends: tuple[str, ...]) -> dict:
    """Two-part parity of the timed ONNX forms against PyTorch on the benchmark's own input."""
    from mod_export.graph.queries import routing_tensors
    from mod_export.validate.cases import Case
    from mod_export.validate.judge import Candidate, judge
    from mod_export.validate.runners import onnx_runner, reference_runner

    routing = routing_tensors(forms.plugin)
    chosen = {"onnxruntime": forms.portable, "onnxruntime-plugin": forms.plugin}
    candidates = [Candidate(b, onnx_runner(proto, routing, b)) for b, proto in chosen.items() if b in backends]
    case = Case("bench input", feed["input_ids"], feed["attention_mask"])
    reference = reference_runner(model)
    with reference:
        for c in candidates:
            c.runner.activate()
        report = judge(reference, candidates, [case], [r.capacity for r in routing])
        for c in candidates:
            c.runner.deactivate()
    return {name: {key: entry["cases"][0][key] for key in ("forced_max_abs_err", "near_tie_flips", "routing_errors")}
            for name, entry in report["forms"].items()} | {"passed": report["passed"]}


def run_bench(spec: str, settings: BenchSettings, show_progress: bool = True) -> dict:
    import torch

    from mod_export.backends.onnxrt.session import create_session
    from mod_export.bench.device_info import device_info
    from mod_export.export.onnx_export import export_forms
    from mod_export.progress import progress

    torch.set_num_threads(settings.threads)
    unknown = [b for b in settings.backends if b not in BACKENDS]
    if unknown:
        raise ModExportError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    not_run = {}
    if "tensorrt" in settings.backends:
        try:
            from mod_export.backends.trt.availability import import_tensorrt, require_gpu

            import_tensorrt()
            require_gpu()
            not_run["tensorrt"] = "engine benchmarking is not implemented in `bench` yet (use trtexec on the exported engine)"
        except MissingDependencyError as exc:
            not_run["tensorrt"] = str(exc)
    results = []
    settings_list = [(c, b, t) for c in settings.capacities for b in settings.batch for t in settings.seq_lens]
    bar = progress(settings_list, desc="bench", enabled=show_progress)
    cache: dict = {}
    ort_options = {"providers": ["CPUExecutionProvider"], "threads": settings.threads, "stop_spinning_after_run": not settings.spinning}
    for capacity, batch, seq in bar:
        if capacity not in cache:
            model = load_model(spec, capacity)
            dense = model.dense_twin()
            entry = {"model": model, "dense": dense}
            if {"onnxruntime", "onnxruntime-plugin"} & set(settings.backends):
                mod_forms = export_forms(model)
                dense_forms = export_forms(dense, allow_dense=True)
                entry["forms"] = mod_forms
                entry["router_health"] = bench_router_health(model, mod_forms.plugin)
                entry["ort"] = {
                    "onnxruntime": create_session(mod_forms.portable, **ort_options),
                    "onnxruntime-plugin": create_session(mod_forms.plugin, **ort_options),
                    "dense": create_session(dense_forms.portable, **ort_options),
                }
            cache = {capacity: entry}  # keep one capacity's sessions alive at a time
        entry = cache[capacity]
        cfg = entry["model"].config
        ids = np.random.default_rng(seq).integers(0, cfg.vocab_size, (batch, seq)).astype(np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        tids = torch.from_numpy(ids)
        candidates = {}
        if "torch" in settings.backends:
            def eager(m):
                def call():
                    with torch.inference_mode():
                        return m(tids)
                return call
            candidates["torch/mod"], candidates["torch/dense"] = eager(entry["model"]), eager(entry["dense"])
        for backend in ("onnxruntime", "onnxruntime-plugin"):
            if backend in settings.backends:
                candidates[f"{backend}/mod"] = lambda s=entry["ort"][backend]: s.run(None, feed)
                candidates[f"{backend}/dense"] = lambda s=entry["ort"]["dense"]: s.run(None, feed)
        stats = measure_interleaved(candidates, repeats=settings.repeats, warmup=settings.warmup)
        flops_mod = forward_flops(cfg, batch, seq)["total"]
        flops_dense = forward_flops(cfg, batch, seq, False)["total"]
        row = {"capacity": capacity, "batch": batch, "seq": seq, "flops_mod": flops_mod, "flops_dense": flops_dense,
               "ideal_speedup": flops_dense / flops_mod, "backends": {},
               "peak_rss_mb_so_far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        for backend in settings.backends:
            if f"{backend}/mod" not in stats:
                continue
            mod, dense = stats[f"{backend}/mod"], stats[f"{backend}/dense"]
            achieved = dense.median / mod.median
            # the same round's dense/MoD pair: slow drifts of the machine cancel within a round
            paired = float(np.median(np.array(dense.samples_ms) / np.array(mod.samples_ms)))
            row["backends"][backend] = {
                "mod": mod.as_dict(), "dense": dense.as_dict(), "achieved_speedup": achieved,
                "achieved_over_ideal": achieved / row["ideal_speedup"],
                "paired_speedup": paired, "paired_over_ideal": paired / row["ideal_speedup"],
                "mod_tokens_per_s": batch * seq / (mod.median / 1000), "dense_tokens_per_s": batch * seq / (dense.median / 1000),
            }
        if "torch" in row["backends"] and "onnxruntime" in row["backends"]:
            row["onnxruntime_over_torch_mod"] = row["backends"]["torch"]["mod"]["median_ms"] / row["backends"]["onnxruntime"]["mod"]["median_ms"]
        if "forms" in entry:  # the timed graphs compute the right thing on this very input (docs/parity.md)
            row["parity"] = bench_parity(entry["model"], entry["forms"], feed, settings.backends)
            row["router_health"] = entry["router_health"]
        if settings.profile and "forms" in entry:
            row["ort_profile"] = routing_time_share(entry["forms"].portable, entry["forms"].plugin, feed, settings.threads)
        results.append(row)
        print(f"capacity {capacity} B={batch} T={seq}: " + ", ".join(
            f"{b} {v['achieved_speedup']:.2f}x (ideal {row['ideal_speedup']:.2f}x)" for b, v in row["backends"].items()),
            file=sys.stderr)
    return {"model": spec, "settings": vars(settings), "device": device_info(), "not_run": not_run, "results": results}
