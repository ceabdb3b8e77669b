"""Workloads: what differs between kinds of work (embedding, generation, any ONNX model)."""
