"""Triton's own HTTP client against a coordinator's /v2 endpoints, in a separate process (as
triton_grpc.py).

    python triton_http.py URL CA API_KEY MODEL INPUTS.npy OUTPUTS.npy

Prints one JSON object: readiness, metadata, and the JSON-encoded run's agreement with the
binary one.
"""

from __future__ import annotations

import json
import sys
from urllib.parse import urlparse

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException


def main() -> None:
    url, ca, api_key, model, inputs_path, outputs_path = sys.argv[1:]
    auth = {"authorization": f"Bearer {api_key}"}

    def headers() -> dict[str, str]:
        return dict(auth)  # fresh: the client writes its own headers into the dict it is given

    client = triton.InferenceServerClient(
        urlparse(url).netloc, ssl=True, ssl_options={"ca_certs": ca}, insecure=False
    )
    metadata = client.get_model_metadata(model, headers=headers())
    images = np.load(inputs_path)
    name, output = metadata["inputs"][0]["name"], metadata["outputs"][0]["name"]
    runs = {}
    for binary in (True, False):
        tensor = triton.InferInput(name, list(images.shape), "FP32")
        tensor.set_data_from_numpy(images, binary_data=binary)
        wanted = triton.InferRequestedOutput(output, binary_data=binary)
        runs[binary] = client.infer(model, [tensor], outputs=[wanted], headers=headers())
    np.save(outputs_path, runs[True].as_numpy(output))
    refused = {}
    try:
        client.get_model_metadata("no-such-model", headers=headers())
    except InferenceServerException as exc:
        refused["unknown_model"] = [exc.status(), exc.message()]
    bad = triton.InferInput(name, [1, 3, 48, 192], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3, 48, 192), np.float32))
    bad.set_shape([1, 3, 48, 100])  # bytes that do not match the shape
    try:
        client.infer(model, [bad], headers=headers())
    except InferenceServerException as exc:
        refused["short_data"] = [exc.status(), exc.message()]
    print(
        json.dumps(
            {
                "live": client.is_server_live(headers=headers()),
                "ready": client.is_server_ready(headers=headers()),
                "model_ready": client.is_model_ready(model, headers=headers()),
                "metadata": metadata,
                "json_equals_binary": bool(
                    np.array_equal(runs[True].as_numpy(output), runs[False].as_numpy(output))
                ),
                "refused": refused,
            }
        )
    )


if __name__ == "__main__":
    main()
