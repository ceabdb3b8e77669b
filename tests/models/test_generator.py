"""SmolLM2 from its GGUF to ONNX: weights, tokenizer and decoder against transformers.

tests/fixtures/smollm2_reference.json holds what transformers computes on the same GGUF with
torch in fp32 (scripts/make_llm_reference.py): token ids, the greedy continuation and the top
logits at every position. The exact decoder must agree on every top-1 and every greedy token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from tokenweave.errors import InvalidArgumentError
from tokenweave.models import (
    DecoderSession,
    Message,
    ModelCacheError,
    ModelHashMismatchError,
    Precision,
    PreparedGenerator,
    Sampling,
    load_generator,
    prepare_generator,
    render_chat,
)
from tokenweave.models._generator_cache import gguf_path
from tokenweave.models._gguf import GgufModel

from .. import onnx_models

REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "smollm2_reference.json"


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def tokenizer(generator: PreparedGenerator) -> Tokenizer:
    return Tokenizer.from_file(str(generator.tokenizer_path))


@pytest.fixture(scope="module")
def decoder(generator: PreparedGenerator) -> DecoderSession:
    path, _ = generator.decoder(Precision.EXACT)
    return DecoderSession(path, generator.config, threads=2)


def test_unpacked_blocks_equal_the_gguf_packages_dequantization(
    generator: PreparedGenerator,
) -> None:
    from gguf import quants

    model = GgufModel(gguf_path(generator.spec)[0])
    for name in ("blk.0.attn_q.weight", "blk.29.ffn_down.weight", "token_embd.weight"):
        tensor = model._tensor(name)
        rows = slice(0, 256)  # gguf's own dequantization is slow: a slice of each
        expected = quants.dequantize(tensor.data[rows], tensor.tensor_type)
        matrix = model.matrix(name)
        np.testing.assert_allclose(matrix.dequantized()[rows], expected, rtol=0, atol=1e-6)
        assert matrix.zero_points.max() < 2**matrix.bits


def test_the_tokenizer_gives_transformers_ids(
    tokenizer: Tokenizer, reference: dict[str, Any]
) -> None:
    for case in reference["cases"]:
        ids = tokenizer.encode(case["prompt"], add_special_tokens=False).ids
        assert ids == case["input_ids"], case["prompt"]
        assert tokenizer.decode(ids, skip_special_tokens=False) == case["prompt"]


def test_the_chat_template_from_the_gguf_renders_chatml(generator: PreparedGenerator) -> None:
    prompt = render_chat(generator.chat_template, [Message("user", "Hi {{ 7*7 }}")])
    assert prompt == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nHi {{ 7*7 }}<|im_end|>\n<|im_start|>assistant\n"
    ), "message content is data, never template"
    with pytest.raises(InvalidArgumentError, match="role 'robot'"):
        Message("robot", "x")


def test_exact_mode_agrees_with_transformers_at_every_position(
    decoder: DecoderSession, reference: dict[str, Any]
) -> None:
    for case in reference["cases"]:
        ids = case["input_ids"] + case["greedy"]
        logits = decoder.score(ids[:1], ids[1:])  # row i: the logits after token i
        top = np.asarray(case["top_ids"])
        assert (logits.argmax(-1) == top[:, 0]).all(), case["prompt"]
        ours = np.take_along_axis(logits, top, axis=1)
        np.testing.assert_allclose(ours, np.asarray(case["top_logits"]), rtol=0, atol=2e-3)


def test_exact_mode_continues_greedily_as_transformers_does(
    decoder: DecoderSession, reference: dict[str, Any]
) -> None:
    for case in reference["cases"][::2]:  # half the prompts: 32 steps each
        generated = list(decoder.generate(case["input_ids"], len(case["greedy"])))
        assert generated == case["greedy"], case["prompt"]


def test_greedy_steps_score_the_tokens_that_can_win_exactly(
    decoder: DecoderSession, reference: dict[str, Any]
) -> None:
    """Greedy decoding asks the LM head for the best 64 of each row in fp32, the rest from
    int8: the exact logits' best are among them (at the edge of the 64, int8 may rank another
    first), with their exact values."""
    for case in reference["cases"]:
        ids = case["input_ids"] + case["greedy"]
        exact = decoder.prefill(ids, decoder.new_cache())
        best = decoder.prefill(ids, decoder.new_cache(), all_logits=False)
        top = np.argsort(-exact)[:16]
        assert best.argmax() == exact.argmax()
        np.testing.assert_allclose(best[top], exact[top], rtol=0, atol=1e-4)
        assert np.delete(best, top).max() < exact[top].min() + 0.5, "the tail stays below"


def test_seeded_sampling_is_reproducible(decoder: DecoderSession) -> None:
    prompt = [1, 4093, 198]  # <|im_start|>user\n
    hot = Sampling(temperature=1.0, top_p=0.9, seed=7)
    first = list(decoder.generate(prompt, 8, hot))
    assert list(decoder.generate(prompt, 8, hot)) == first
    others = {tuple(decoder.generate(prompt, 8, Sampling(1.0, 0.9, seed))) for seed in range(4)}
    assert len(others) > 1, "different seeds, different texts"


def test_bad_generation_requests_name_the_limit(decoder: DecoderSession) -> None:
    with pytest.raises(InvalidArgumentError, match="max_tokens=0"):
        list(decoder.generate([1], 0))
    with pytest.raises(InvalidArgumentError, match="context of 8192"):
        list(decoder.generate([1] * 8000, 500))
    with pytest.raises(InvalidArgumentError, match="temperature=-1"):
        Sampling(temperature=-1)
    for top_p in (0.0, 1.5):
        with pytest.raises(InvalidArgumentError, match="top_p"):
            Sampling(top_p=top_p)
    with pytest.raises(InvalidArgumentError, match="no tokens"):
        decoder.score([], [1])


def test_a_tampered_decoder_is_refused(generator: PreparedGenerator, tmp_path: Path) -> None:
    copy = tmp_path / generator.name
    copy.mkdir()
    for file in generator.folder.iterdir():
        (copy / file.name).symlink_to(file)
    [(_, sha)] = load_generator(generator.name, tmp_path).decoders.values()
    assert sha == generator.decoder(Precision.EXACT)[1]
    path, _ = generator.decoder(Precision.EXACT)
    (copy / path.name).unlink()
    (copy / path.name).write_bytes(b"not the decoder")
    with pytest.raises(ModelHashMismatchError, match=sha):
        load_generator(generator.name, tmp_path)


def test_fast_mode_meets_its_bar(
    fast_generator: PreparedGenerator, reference: dict[str, Any]
) -> None:
    """FAST (int8 activations where safe) must keep top-1 agreement with the reference,
    teacher-forced, at 98% of positions or more (measured 99.0%)."""
    path, _ = fast_generator.decoder(Precision.FAST)
    decoder = DecoderSession(path, fast_generator.config, threads=2)
    agree = total = 0
    for case in reference["cases"]:
        ids = case["input_ids"] + case["greedy"]
        top1 = decoder.score(ids[:1], ids[1:]).argmax(-1)
        agree += int((top1 == np.asarray(case["top_ids"])[:, 0]).sum())
        total += len(top1)
    assert agree / total >= 0.98


def test_fp16_mode_meets_its_bar(
    half_generator: PreparedGenerator, reference: dict[str, Any]
) -> None:
    """HALF (the GPU decoder: fp16 activations and cache) keeps top-1 agreement with the
    reference, teacher-forced, at 99% of positions or more, and continues reference prompts
    greedily as transformers does (two of them: decoding on the CPU's fp16 kernels is slow).
    ONNX Runtime's CPU provider runs its fp16 kernels, so this holds without a GPU; on an H100,
    see bench_gpu.py --llm."""
    path, _ = half_generator.decoder(Precision.HALF)
    decoder = DecoderSession(path, half_generator.config, threads=2)
    agree = total = 0
    for number, case in enumerate(reference["cases"]):
        ids = case["input_ids"] + case["greedy"]
        top1 = decoder.score(ids[:1], ids[1:]).argmax(-1)
        agree += int((top1 == np.asarray(case["top_ids"])[:, 0]).sum())
        total += len(top1)
        if number < 2:
            greedy = list(decoder.generate(case["input_ids"], len(case["greedy"])))
            assert greedy == case["greedy"][: len(greedy)]
    assert agree / total >= 0.99


def test_a_cache_bound_to_a_device_gives_the_same_tokens(half_generator: PreparedGenerator) -> None:
    """The GPU's I/O-bound path (the cache handed from step to step as ONNX Runtime values),
    run here with the CPU as the device: the same tokens as plain arrays."""
    path, _ = half_generator.decoder(Precision.HALF)
    plain = DecoderSession(path, half_generator.config, threads=2)
    bound = DecoderSession(path, half_generator.config, threads=2)
    bound.cache_device = ("cpu", 0)
    prompt = [1, 4093, 314, 253, 1789, 30, 2]
    sampling = Sampling(temperature=0.8, seed=3)
    assert list(bound.generate(prompt, 12, sampling)) == list(plain.generate(prompt, 12, sampling))
    cache = bound.new_cache()
    bound.prefill(prompt, cache)
    assert all(isinstance(value, ort.OrtValue) for value in cache.tensors.values())
    assert cache.length == len(prompt)


def test_decoders_of_an_older_graph_are_built_again(
    generator: PreparedGenerator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache prepared by a version whose decoder graph differs is never run: loading it says
    to prepare again, and preparing rebuilds every decoder it held."""
    from tokenweave.models import _generator_cache as cache

    folder = tmp_path / generator.name
    folder.mkdir()
    manifest = json.loads((generator.folder / cache.MANIFEST_FILE).read_text())
    (folder / cache.MANIFEST_FILE).write_text(json.dumps({**manifest, "graph": 1}))
    with pytest.raises(ModelCacheError, match="older graph; run `tokenweave models prepare"):
        load_generator(generator.name, tmp_path)
    built: list[Precision] = []

    def build(gguf: object, precision: Precision) -> onnx.ModelProto:
        built.append(precision)
        return onnx.load_model_from_string(onnx_models.classifier())  # a stand-in graph

    monkeypatch.setattr(cache, "build_llama_decoder", build)
    rebuilt = prepare_generator(generator.name, tmp_path)
    held = [p for p in Precision if p.value in manifest["decoders"]]
    assert built == held, "every decoder it held is built again"
    assert json.loads((folder / cache.MANIFEST_FILE).read_text())["graph"] == cache.DECODER_GRAPH
    assert set(rebuilt.decoders) == set(held)
