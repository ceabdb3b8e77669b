"""Any ONNX model: checked before it is registered or loaded, and described by its manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tokenweave import tensors
from tokenweave.errors import InvalidArgumentError, ResourceExhaustedError
from tokenweave.models import (
    OnnxManifest,
    OnnxSession,
    TensorSpec,
    inspect_onnx,
    store_model,
    stored_model_path,
    text_direction_model,
)

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
    ],
    ids=["empty", "garbage", "truncated", "custom-op", "escaping-path", "external"],
)
def test_bad_model_files_are_refused_saying_why(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        inspect_onnx(data)


def test_a_model_past_the_size_limit_is_refused() -> None:
    with pytest.raises(ResourceExhaustedError, match="the limit is 100 bytes"):
        inspect_onnx(onnx_models.classifier(), max_bytes=100)


def test_a_model_of_strings_takes_and_gives_byte_strings(tmp_path: Path) -> None:
    data = onnx_models.strings()
    manifest = inspect_onnx(data)
    assert manifest.inputs == (TensorSpec("text", "bytes", (-1,)),)
    assert manifest.inputs[0].datatype == "BYTES"
    sha256 = store_model(tmp_path, data)
    session = OnnxSession(stored_model_path(tmp_path, sha256), sha256, threads=1)
    texts = np.empty(2, dtype=object)
    texts[:] = [b"caf\xc3\xa9", b""]
    [out] = session.run({"text": texts}).values()
    assert [tensors.to_proto(out).data] == [tensors.pack_strings([b"caf\xc3\xa9", b""])]
    texts[0] = b"\xff not utf-8"
    with pytest.raises(InvalidArgumentError, match="not UTF-8"):
        session.run({"text": texts})
