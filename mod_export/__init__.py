"""mod-export: export Mixture-of-Depths transformers to ONNX and TensorRT with validated parity."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_checkpoint"]


def load_checkpoint(path, unsafe: bool = False):
    """Load a mod_export/1 checkpoint as an eval-mode torch.nn.Module: forward(input_ids, attention_mask=None) -> logits."""
    from mod_export.checkpoint import load_checkpoint as _load

    return _load(path, unsafe=unsafe)
