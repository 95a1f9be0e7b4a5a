"""Validation: exported artifacts against the PyTorch module they came from, with margin-aware routing and
forced-routing numerics (docs/parity.md)."""
