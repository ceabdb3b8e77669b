"""A small helper for writing ONNX graphs by hand with stable, readable names.

Every node and value name is derived from a caller-given prefix and a counter, so building the
same graph twice yields byte-identical protobufs (the model is addressed by its sha256).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# IR version 8 is the one that goes with opset 17; pinning it keeps the bytes independent of
# the newest IR version the installed onnx package would otherwise stamp.
IR_VERSION = 8
#: ONNX Runtime's own operators (MatMulNBits, GroupQueryAttention, …).
CONTRIB_DOMAIN = "com.microsoft"


class GraphBuilder:
    """Collects nodes and initializers; ``op`` returns the name of the node's output."""

    def __init__(self) -> None:
        self._nodes: list[onnx.NodeProto] = []
        self._initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._consts: dict[tuple[str, bytes, tuple[int, ...]], str] = {}

    def _claim(self, name: str) -> str:
        if name in self._names:
            raise ValueError(f"duplicate ONNX name {name!r}")
        self._names.add(name)
        return name

    def weight(self, name: str, array: npt.NDArray[np.generic]) -> str:
        """Add a named initializer (a model weight)."""
        self._initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return self._claim(name)

    def const(self, values: npt.ArrayLike, dtype: type[np.generic]) -> str:
        """A small constant initializer, shared between all users of the same value."""
        array = np.asarray(values, dtype=dtype)
        key = (array.dtype.str, array.tobytes(), array.shape)
        if key not in self._consts:
            self._consts[key] = self.weight(f"const_{len(self._consts)}", array)
        return self._consts[key]

    def ints(self, values: Sequence[int]) -> str:
        return self.const(list(values), np.int64)

    def scalar(self, value: float) -> str:
        return self.const(value, np.float32)

    def op(
        self, op_type: str, inputs: Sequence[str], name: str, domain: str = "", **attrs: Any
    ) -> str:
        """Append one node named ``name`` whose single output is also called ``name``."""
        return self.ops(op_type, inputs, name, [name], domain, **attrs)[0]

    def ops(
        self,
        op_type: str,
        inputs: Sequence[str],
        name: str,
        outputs: Sequence[str],
        domain: str = "",
        **attrs: Any,
    ) -> list[str]:
        """Append one node with several outputs ("" for an output left out)."""
        claimed = [self._claim(o) if o else "" for o in outputs]
        self._nodes.append(
            helper.make_node(
                op_type, list(inputs), claimed, name=name, domain=domain or None, **attrs
            )
        )
        return claimed

    def branch(self) -> GraphBuilder:
        """A builder for a subgraph (an If's branch): its own nodes; names, constants and
        weights shared with this graph (a branch reads them from the outer scope)."""
        child = GraphBuilder()
        child._initializers = self._initializers
        child._names = self._names
        child._consts = self._consts
        return child

    def subgraph(self, graph_name: str, outputs: Sequence[onnx.ValueInfoProto]) -> onnx.GraphProto:
        """This branch's nodes as a graph with no inputs of its own."""
        return helper.make_graph(self._nodes, graph_name, [], list(outputs))

    def build(
        self,
        graph_name: str,
        inputs: Sequence[onnx.ValueInfoProto],
        outputs: Sequence[onnx.ValueInfoProto],
        contrib: bool = False,
    ) -> onnx.ModelProto:
        """The checked model. `contrib`: the graph uses ONNX Runtime's com.microsoft operators,
        which the onnx checker does not know (their shapes are not inferred)."""
        for value in inputs:
            self._claim(value.name)
        graph = helper.make_graph(
            self._nodes, graph_name, list(inputs), list(outputs), self._initializers
        )
        opsets = [helper.make_opsetid("", OPSET)]
        if contrib:
            opsets.append(helper.make_opsetid(CONTRIB_DOMAIN, 1))
        model = helper.make_model(
            graph, opset_imports=opsets, ir_version=IR_VERSION, producer_name="tokenweave"
        )
        onnx.checker.check_model(model, full_check=not contrib)
        return model


def tensor_info(name: str, elem_type: int, shape: Sequence[str | int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, list(shape))


FLOAT = TensorProto.FLOAT
FLOAT16 = TensorProto.FLOAT16
INT64 = TensorProto.INT64
INT32 = TensorProto.INT32
BOOL = TensorProto.BOOL


def serialize_model(model: onnx.ModelProto) -> bytes:
    """Deterministic protobuf bytes of ``model`` (map fields sorted, no timestamps)."""
    return model.SerializeToString(deterministic=True)
