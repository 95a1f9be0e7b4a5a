"""FP16: the model is exported in half precision with routers and causal predictors kept float32, then the
precision policy is applied to both ONNX forms and checked."""
from __future__ import annotations

import copy

from calibration.policy import PrecisionPolicy, apply_policy, policy_violations
from mod_export.errors import ExportError
from mod_export.models.model import MoDTransformer, RoutedBlock


def half_model(model: MoDTransformer) -> MoDTransformer:
    """Weights and activations float16; each router (and predictor) float32, so scores are computed in
    float32 from float32 weights (router_scores casts x up). Softmax runs on float32 scores by model
    construction; LayerNorm statistics are float32 through stash_type (see policy.apply_policy)."""
    half = copy.deepcopy(model).half().eval()
    for block in half.blocks:
        if isinstance(block, RoutedBlock):
            block.router.float()
            if block.predictor is not None:
                block.predictor.float()
    return half


def convert_forms_fp16(model: MoDTransformer, opset: int, allow_dense: bool, policy: PrecisionPolicy | None = None):
    from mod_export.export.onnx_export import export_forms

    policy = policy or PrecisionPolicy()
    forms = export_forms(half_model(model), opset, allow_dense)
    for name in ("plugin", "portable"):
        proto = apply_policy(getattr(forms, name), policy)
        problems = policy_violations(proto, policy)
        if problems:
            raise ExportError(f"float16 {name} form breaks the precision policy: {problems[0]} (+{len(problems) - 1} more)")
    return forms
