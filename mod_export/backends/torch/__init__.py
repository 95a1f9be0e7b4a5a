"""The PyTorch reference as a runner (needs torch)."""
