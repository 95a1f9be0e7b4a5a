"""Backends behind one runner contract, Polygraphy's BaseRunner (activate / infer(feed) -> outputs / deactivate):

- torch: the PyTorch reference (CPU), which can be forced to a candidate's routing decisions;
- onnxrt: ONNX Runtime sessions of either ONNX form;
- trt: TensorRT engines (availability checks, the engine builder, the engine runner).

Every runner returns `logits` and, where it can, per routed layer l the tensors `scores:l` (raw router scores
[B,T]) and `idx:l` (the selection [B,k]), so validation, benchmarks and the runtime treat them alike."""
