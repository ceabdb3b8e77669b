"""The REST inference body: JSON and binary tensors become the gRPC request; JSON is bounded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tokenweave.coordinator import _kserve_http as rest
from tokenweave.errors import InvalidArgumentError


def test_json_and_binary_bodies_make_the_same_request() -> None:
    values = np.arange(6, dtype="<f4")
    as_json = json.dumps({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                                      "data": values.tolist()}]}).encode()  # fmt: skip
    sized = {"binary_data_size": 24}
    header = json.dumps({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                                     "parameters": sized}]}).encode()  # fmt: skip
    a, _ = rest.infer_request("m", as_json, None)
    b, _ = rest.infer_request("m", header + values.tobytes(), str(len(header)))
    assert a == b


def test_a_json_body_past_its_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsed, a JSON list of numbers takes many times its text: it is bounded before parsing."""
    monkeypatch.setattr(rest, "MAX_JSON_BYTES", 100)
    body = json.dumps({"inputs": [{"name": "x", "shape": [50], "datatype": "FP32",
                                   "data": [0.0] * 50}]}).encode()  # fmt: skip
    with pytest.raises(InvalidArgumentError, match="send larger tensors as binary data"):
        rest.infer_request("m", body, None)
    with pytest.raises(InvalidArgumentError, match="is not a length"):
        rest.infer_request("m", body, "9999")
