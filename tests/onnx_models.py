"""Small ONNX models written with onnx.helper, for tests of the any-model path."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def _model(graph: onnx.GraphProto, opsets: list[onnx.OperatorSetIdProto] = OPSET) -> bytes:
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    return model.SerializeToString()


def classifier(batch: int | str = "batch") -> bytes:
    """A convolutional image classifier with fixed weights: image float32 [batch, 1, 8, 8] →
    probs float32 [batch, 3] (Conv 3×3 → ReLU → global average pool → Gemm → Softmax)."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "conv.w"),
        numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "conv.b"),
        numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "fc.w"),
        numpy_helper.from_array(rng.normal(size=(3,)).astype(np.float32), "fc.b"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv.w", "conv.b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 3])],
        weights,
    )
    return _model(graph)


def custom_op() -> bytes:
    """A model calling an operator of a custom domain."""
    graph = helper.make_graph(
        [helper.make_node("Evil", ["x"], ["y"], domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    return _model(graph, [*OPSET, helper.make_opsetid("com.example", 1)])


def external_data(location: str) -> bytes:
    """A model whose weight is stored in a file at `location` (external data)."""
    weight = numpy_helper.from_array(np.ones(4, np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.append(onnx.StringStringEntryProto(key="location", value=location))
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [weight],
    )
    return _model(graph)


def strings() -> bytes:
    """A model with a string input (BYTES in the Open Inference Protocol)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, ["n"])],
    )
    return _model(graph)
