"""The PyTorch reference as a runner (needs torch)."""

from mod_export.backends.torch.runner import TorchRunner as runner

__all__ = ["runner", "unavailable"]


def unavailable() -> str | None:
    """PyTorch is a dependency of mod-export (not of mod-export-runtime, which never uses this backend)."""
    return None
