"""FP16 as a graph stage: the forms were exported in half precision with routers and causal predictors kept
float32 (`export_forms(model, half=True)`, an explicit export option); this stage applies the precision policy
to both forms (a pure ONNX pass) and checks the result."""

from __future__ import annotations

from calibration.policy import PrecisionPolicy, apply_policy, policy_violations
from calibration.stage import StageResult
from mod_export.errors import ExportError
from mod_export.exporter.onnx_export import ExportedForms

POLICY_NOTE = (
    "float16 weights/activations; float32 routers, softmax, LayerNorm statistics (stash_type=1), routing scores"
)


def fp16_stage(half_forms: ExportedForms, policy: PrecisionPolicy | None = None) -> StageResult:
    """half_forms: export_forms(model, half=True). Returns the policy-compliant fp16 forms."""
    policy = policy or PrecisionPolicy()
    for name in ("plugin", "portable"):
        proto = apply_policy(getattr(half_forms, name), policy)
        problems = policy_violations(proto, policy)
        if problems:
            raise ExportError(
                f"float16 {name} form breaks the precision policy: {problems[0]} (+{len(problems) - 1} more)"
            )
    return StageResult(half_forms, {"policy": POLICY_NOTE, "float32_ops": sorted(policy.float32_ops)})
