"""Any ONNX model: checked before it is registered or loaded, and described by its manifest."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tokenweave.errors import InvalidArgumentError, ResourceExhaustedError
from tokenweave.models import OnnxManifest, TensorSpec, inspect_onnx, text_direction_model

from .. import onnx_models


def test_the_shipped_image_classifier_is_described_by_its_manifest() -> None:
    manifest = inspect_onnx(text_direction_model().read_bytes())
    assert manifest.inputs == (TensorSpec("x", "float32", (-1, 3, -1, -1)),)
    [output] = manifest.outputs
    assert (output.dtype, output.shape, output.datatype) == ("float32", (-1, 2), "FP32")
    assert manifest.batched
    assert OnnxManifest.from_json(manifest.to_json()) == manifest


def test_a_model_written_here_runs_as_described() -> None:
    data = onnx_models.classifier()
    manifest = inspect_onnx(data)
    assert manifest.inputs == (TensorSpec("image", "float32", (-1, 1, 8, 8)),)
    assert manifest.outputs == (TensorSpec("probs", "float32", (-1, 3)),)
    probs = ort.InferenceSession(data).run(None, {"image": np.ones((2, 1, 8, 8), np.float32)})[0]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert not inspect_onnx(onnx_models.classifier(batch=4)).batched, "a fixed batch of 4"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no graph"),
        (b"\x00\x01garbage" * 10, "not an ONNX model"),
        (onnx_models.classifier()[:-200], "not an ONNX model"),
        (onnx_models.custom_op(), "'Evil' of domain 'com.example' is a custom operator"),
        (onnx_models.external_data("../../etc/passwd"), "stored outside the model file"),
        (onnx_models.external_data("weights.bin"), "stored outside the model file"),
        (onnx_models.strings(), "input 'text' is a tensor(string); supported: FP32"),
    ],
    ids=["empty", "garbage", "truncated", "custom-op", "escaping-path", "external", "strings"],
)
def test_bad_model_files_are_refused_saying_why(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        inspect_onnx(data)


def test_a_model_past_the_size_limit_is_refused() -> None:
    with pytest.raises(ResourceExhaustedError, match="the limit is 100 bytes"):
        inspect_onnx(onnx_models.classifier(), max_bytes=100)
