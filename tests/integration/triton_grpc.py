"""Triton's own gRPC client against a coordinator, run as a separate process: its generated
`inference.*` messages must not share a process with tokenweave's.

    python triton_grpc.py ADDRESS CA API_KEY MODEL INPUTS.npy OUTPUTS.npy

Prints one JSON object: server readiness, the model's metadata, and what was refused (a model
named "unserved" is expected to be registered with no node serving it).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def main() -> None:
    address, ca, api_key, model, inputs_path, outputs_path = sys.argv[1:]
    headers = {"authorization": f"Bearer {api_key}"}
    client = triton.InferenceServerClient(address, ssl=True, root_certificates=ca)
    metadata = client.get_model_metadata(model, headers=headers, as_json=True)
    images = np.load(inputs_path)
    name = metadata["inputs"][0]["name"]
    request = triton.InferInput(name, list(images.shape), "FP32")
    request.set_data_from_numpy(images)
    result = client.infer(model, [request], headers=headers, request_id="r-1")
    output = metadata["outputs"][0]["name"]
    np.save(outputs_path, result.as_numpy(output))
    refused = {}
    bad = {
        "wrong_name": triton.InferInput("pixels", list(images.shape), "FP32"),
        "wrong_dtype": triton.InferInput(name, list(images.shape), "INT64"),
        "wrong_shape": triton.InferInput(name, [2, 5, 48, 192], "FP32"),
    }
    bad["wrong_name"].set_data_from_numpy(images)
    bad["wrong_dtype"].set_data_from_numpy(images.astype(np.int64))
    bad["wrong_shape"].set_data_from_numpy(np.zeros((2, 5, 48, 192), np.float32))
    for what, tensor in bad.items():
        try:
            client.infer(model, [tensor], headers=headers)
        except InferenceServerException as exc:
            refused[what] = [exc.status(), exc.message()]
    try:
        client.get_model_metadata("no-such-model", headers=headers)
    except InferenceServerException as exc:
        refused["unknown_model"] = [exc.status(), exc.message()]
    unserved = triton.InferInput("image", [1, 1, 8, 8], "FP32")
    unserved.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.float32))
    try:
        client.infer("unserved", [unserved], headers=headers)
    except InferenceServerException as exc:
        refused["unserved"] = [exc.status(), exc.message()]
    texts = np.array([b"Let there be light.", b"In the beginning"], dtype=np.object_)
    text = triton.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(texts)
    embedded = client.infer("all-minilm-l6-v2", [text], headers=headers)
    np.save(outputs_path.replace(".npy", "-text.npy"), embedded.as_numpy("embedding"))
    text_metadata = client.get_model_metadata("all-minilm-l6-v2", headers=headers, as_json=True)
    print(
        json.dumps(
            {
                "live": client.is_server_live(),
                "ready": client.is_server_ready(),
                "model_ready": client.is_model_ready(model),
                "metadata": metadata,
                "id": result.get_response().id,
                "refused": refused,
                "text_metadata": text_metadata,
            }
        )
    )


if __name__ == "__main__":
    main()
