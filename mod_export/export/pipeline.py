"""The `--target onnx` job: load, export both forms, check, validate, write artifacts atomically."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from mod_export.errors import ParityError
from mod_export.export.artifacts import ArtifactDir, check_output_dir
from mod_export.export.manifest import build_manifest
from mod_export.export.onnx_export import DEFAULT_OPSET, check_model, check_opset, export_forms
from mod_export.flops import forward_flops, ideal_speedup

PORTABLE_FILE = "model.onnx"
PLUGIN_FILE = "model.plugin.onnx"


@dataclass
class OnnxJob:
    model_path: Path
    out_dir: Path
    force: bool = False
    opset: int = DEFAULT_OPSET
    allow_dense: bool = False
    unsafe_load: bool = False
    validate: bool = True
    atol: float = 1e-4


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_onnx_job(job: OnnxJob) -> dict:
    """Returns the report; raises ParityError (after writing everything) when validation fails."""
    from mod_export.checkpoint import load_checkpoint

    check_opset(job.opset)  # cheap checks first, before any slow work
    check_output_dir(job.out_dir, job.force)
    model = load_checkpoint(job.model_path, unsafe=job.unsafe_load)
    log(f"exporting {job.model_path} (opset {job.opset}) ...")
    forms = export_forms(model, job.opset, job.allow_dense)
    check_model(forms.plugin, PLUGIN_FILE)
    check_model(forms.portable, PORTABLE_FILE)
    log(f"found {forms.routed_found} routed blocks of {forms.routed_expected}; both forms pass onnx.checker (full)")
    cfg = model.config
    report: dict = {
        "model": str(job.model_path),
        "config": cfg.to_dict(),
        "export": {"opset": job.opset, "routed_blocks_found": forms.routed_found, "routed_blocks_expected": forms.routed_expected,
                   "idx_tensors": forms.idx_outputs},
        "precision": "fp32",
        "flops_per_forward": {
            str(T): {"mod": forward_flops(cfg, 1, T)["total"], "dense": forward_flops(cfg, 1, T, False)["total"],
                     "ideal_speedup": ideal_speedup(cfg, 1, T)} for T in (256, 1024, 4096)
        },
    }
    if job.validate:
        from mod_export.data.corpus import load_stdlib_corpus
        from mod_export.validate import format_table, validate_forms, validation_cases

        log("validating PyTorch vs ONNX Runtime (CPU) for both forms ...")
        cases = validation_cases(model, load_stdlib_corpus().held_out)
        parity = validate_forms(model, {"portable": forms.portable, "plugin": forms.plugin}, cases, forms.idx_outputs, job.atol)
        report["parity"] = parity
        print(format_table(parity))
    with ArtifactDir(job.out_dir, job.force) as art:
        art.save_onnx(forms.portable, PORTABLE_FILE)
        art.save_onnx(forms.plugin, PLUGIN_FILE)
        art.write_json("report.json", report)
        manifest = build_manifest(art.files(), forms.portable, {
            "target": "onnx", "precision": "fp32", "opset": job.opset,
            "custom_ops": {"domain": "mod_export", "ops": ["MoDTopKGather", "MoDScatter"], "in": PLUGIN_FILE},
            "routing_idx_tensors": forms.idx_outputs,
            "parity": None if "parity" not in report else ("passed" if report["parity"]["passed"] else "failed"),
        })
        art.write_json("manifest.json", manifest)
    print(f"wrote {job.out_dir}/{{{PORTABLE_FILE}, {PLUGIN_FILE}, report.json, manifest.json}}")
    if "parity" in report and not report["parity"]["passed"]:
        mism = report["parity"]["mismatches"]
        raise ParityError(f"parity failed in {len(mism)} place(s), first: {mism[0]} (all in {job.out_dir}/report.json)", mism)
    return report
