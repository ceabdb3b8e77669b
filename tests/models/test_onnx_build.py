import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file

from tokenweave.models import PreparedModel
from tokenweave.models._onnx_bert import build_fused_bert_embedder
from tokenweave.models._onnx_graph import serialize_model
from tokenweave.models._source import BertConfig, locate_source

EXPECTED_OPS = {
    "Add", "Cast", "Div", "Erf", "Gather", "LayerNormalization", "MatMul", "Max", "Mul",
    "ReduceL2", "ReduceSum", "Reshape", "Shape", "Slice", "Softmax", "Sub", "Transpose",
    "Unsqueeze",
}  # fmt: skip


def test_graph_signature(prepared: PreparedModel) -> None:
    model = onnx.load(prepared.onnx_path)
    onnx.checker.check_model(model)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]

    def signature(value: onnx.ValueInfoProto) -> tuple[str, int, list[str | int]]:
        dims = value.type.tensor_type.shape.dim
        shape = [d.dim_param or d.dim_value for d in dims]
        return value.name, value.type.tensor_type.elem_type, shape

    assert [signature(v) for v in model.graph.input] == [
        ("input_ids", onnx.TensorProto.INT64, ["batch", "seq"]),
        ("attention_mask", onnx.TensorProto.INT64, ["batch", "seq"]),
    ]
    assert [signature(v) for v in model.graph.output] == [
        ("embeddings", onnx.TensorProto.FLOAT, ["batch", 384]),
    ]
    assert {node.op_type for node in model.graph.node} == EXPECTED_OPS


def test_build_is_deterministic_across_processes(prepared: PreparedModel, tmp_path: Path) -> None:
    # A second build in a fresh interpreter with another hash seed must give the same bytes.
    script = (
        "import sys, pathlib; from tokenweave.models import prepare_model; "
        "print(prepare_model('all-minilm-l6-v2', pathlib.Path(sys.argv[1])).sha256)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    )
    assert result.stdout.strip() == prepared.sha256
    assert (tmp_path / prepared.name / "model.onnx").read_bytes() == prepared.onnx_path.read_bytes()


def test_fused_graph_computes_what_the_standard_one_does(prepared: PreparedModel) -> None:
    """The fused operators in fp32 (Attention with its lengths mask, SkipLayerNormalization,
    BiasGelu) against the standard graph, on windows padded to different lengths."""
    source = locate_source(prepared.spec)
    config = BertConfig.from_file(source.config)
    fused = build_fused_bert_embedder(config, load_file(str(source.weights)), np.float32)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(6, 40)).astype(np.int64)
    mask = np.ones_like(ids)
    for row in range(1, 6):
        mask[row, 40 - 7 * row :] = 0
        ids[row, 40 - 7 * row :] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    standard = ort.InferenceSession(str(prepared.onnx_path), providers=["CPUExecutionProvider"])
    session = ort.InferenceSession(serialize_model(fused), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, feeds)[0], standard.run(None, feeds)[0], atol=1e-5)
