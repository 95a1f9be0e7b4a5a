"""Generation, backend-neutral and numpy only: sampling, and the generate loop over a stepper (prefill, then one
token per row per step) that the PyTorch reference and the ONNX Runtime runtime both implement."""
