"""The Open Inference Protocol's inputs decoded: typed or raw, every datatype, BYTES included;
a malformed tensor named in the error."""

from __future__ import annotations

import numpy as np
import pytest

from tokenweave import tensors
from tokenweave.coordinator._inference import decode_inputs
from tokenweave.errors import InvalidArgumentError
from tokenweave.v1 import inference_pb2 as kserve


def test_typed_and_raw_inputs_decode_alike() -> None:
    typed = kserve.ModelInferRequest()
    x = typed.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    x.contents.fp32_contents.extend([1, 2, 3, 4])
    s = typed.inputs.add(name="s", datatype="BYTES", shape=[2])
    s.contents.bytes_contents.extend([b"one", b""])
    raw = kserve.ModelInferRequest()
    raw.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    raw.inputs.add(name="s", datatype="BYTES", shape=[2])
    raw.raw_input_contents.append(np.arange(1, 5, dtype="<f4").tobytes())
    raw.raw_input_contents.append(tensors.pack_strings([b"one", b""]))
    for request in (typed, raw):
        arrays = decode_inputs(request)
        np.testing.assert_array_equal(arrays["x"], [[1, 2], [3, 4]])
        assert arrays["s"].tolist() == [b"one", b""]
        assert tensors.dtype_name(arrays["s"]) == "bytes"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda r: r.inputs.add(name="x", datatype="COMPLEX", shape=[1]), "datatype 'COMPLEX'"),
        (lambda r: r.inputs.add(name="x", datatype="FP32", shape=[-1]), "not a tensor's"),
        (lambda r: r.inputs.add(name="x", datatype="FP16", shape=[1]), "send it raw"),
        (lambda r: r.inputs.add(name="x", datatype="INT64", shape=[3]), "needs 3 values; it has 0"),
    ],
    ids=["datatype", "shape", "fp16-typed", "count"],
)
def test_bad_inputs_are_refused_by_name(build: object, message: str) -> None:
    request = kserve.ModelInferRequest()
    build(request)  # type: ignore[operator]
    with pytest.raises(InvalidArgumentError, match=message):
        decode_inputs(request)


def test_raw_strings_that_run_past_their_bytes_are_refused() -> None:
    request = kserve.ModelInferRequest()
    request.inputs.add(name="s", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(b"\x09\x00\x00\x00short")
    with pytest.raises(InvalidArgumentError, match=r"input 's' of shape \[1\]: .*runs past"):
        decode_inputs(request)
