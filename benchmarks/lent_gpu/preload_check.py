"""Does onnxruntime-gpu find CUDA's libraries from PyPI wheels alone (no LD_LIBRARY_PATH, no
system toolkit), as a `tokenweave[gpu]` install must? Prints the providers a session got."""

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

ort.preload_dlls()
graph = helper.make_graph(
    [helper.make_node("MatMul", ["x", "x"], ["y"])],
    "check",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 64])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
session = ort.InferenceSession(
    model.SerializeToString(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
)
x = np.eye(64, dtype=np.float32)
ok = np.array_equal(session.run(None, {"x": x})[0], x)
print(f"preload_dlls alone: session providers {session.get_providers()}, result ok: {ok}")
