"""Precision for mod-export (docs/design.md (precision)): FP16 conversion and INT8 explicit Q/DQ from calibration
data. Precision lives in the ONNX file for every target (TensorRT 11 has no FP16 flag or implicit INT8)."""
