"""Serving: the Triton Python-backend models that `mod-export --target triton` writes next to the ONNX Runtime and
TensorRT ones, and a launcher for the tritonserver binary that the nvidia-pytriton wheel ships (tests, benchmarks).

Torch-free like the runtime below it (pyproject.toml's import contract), so it ships in mod-export-runtime."""
