"""Generator: a prepared text generator loaded to run — its decoder, tokenizer and chat template.

What a node (and the coordinator's referee) runs for the generation workload: a prompt's token
ids in, tokens out until max_tokens, an end-of-turn token or a stop text. The end-of-text and
end-of-turn tokens of the model's own vocabulary always stop it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer

from tokenweave.models._chat import Message, render_chat
from tokenweave.models._decoder import GREEDY, DecoderSession, Sampler, Sampling
from tokenweave.models._generator_cache import PreparedGenerator
from tokenweave.models._onnx_llama import Precision
from tokenweave.models._session import Provider

#: Tokens that end a turn in ChatML-style vocabularies, where the model has them.
_END_TOKENS = ("<|endoftext|>", "<|im_end|>", "</s>", "<|eot_id|>")


@dataclass(frozen=True, slots=True)
class Generation:
    token_ids: tuple[int, ...]
    #: The text of the tokens, cut before the first stop text.
    text: str
    #: "stop" (a stop token or text) or "length" (max_tokens reached).
    finish_reason: str


class Generator:
    def __init__(
        self,
        prepared: PreparedGenerator,
        precision: Precision = Precision.EXACT,
        *,
        threads: int = 0,
        providers: Sequence[Provider] | None = None,
    ) -> None:
        self.prepared = prepared
        self.precision = precision
        path, self.sha256 = prepared.decoder(precision)
        if precision is Precision.HALF:
            # The fp16 graph is the exact decoder's form for GPUs, built from the same file:
            # the model it serves (and is verified as) is the exact one.
            self.sha256 = prepared.decoder(Precision.EXACT)[1]
        self.tokenizer = Tokenizer.from_file(str(prepared.tokenizer_path))
        self.decoder = DecoderSession(path, prepared.config, providers=providers, threads=threads)
        ends = {self.tokenizer.token_to_id(t) for t in _END_TOKENS} | {prepared.eos_id}
        self.end_ids = frozenset(i for i in ends if i is not None)

    @property
    def provider(self) -> str:
        return self.decoder.provider

    @property
    def context(self) -> int:
        return self.prepared.config.context

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        prompt: str = render_chat(self.prepared.chat_template, messages)
        return prompt

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; control tokens written in it (e.g. <|im_start|>) are matched."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def generate(
        self,
        prompt_ids: Sequence[int],
        max_tokens: int,
        sampling: Sampling = GREEDY,
        stop: Sequence[str] = (),
        stop_ids: Sequence[int] = (),
        on_token: Callable[[int], None] = lambda token: None,
        *,
        prefix: Sequence[int] = (),
        sampler: Sampler | None = None,
    ) -> Generation:
        """Generate; `on_token` sees each token as it comes (for streaming). `prefix`: tokens
        already generated (and `sampler`, the sampler that chose them): carry the generation on
        from there; they count towards max_tokens and stop texts."""
        tokens: list[int] = list(prefix)
        if tokens and (ended := self.stopped(tokens, stop)) is not None:
            return ended
        left = max_tokens - len(tokens)
        if left <= 0:
            return Generation(tuple(tokens), self.decode(tokens), "length")
        stops = frozenset(stop_ids) | self.end_ids
        ids = [*prompt_ids, *tokens]
        for token in self.decoder.generate(ids, left, sampling, stops, sampler):
            tokens.append(token)
            on_token(token)
            if (ended := self.stopped(tokens, stop)) is not None:
                return ended
        finish = "length" if len(tokens) == max_tokens else "stop"
        return Generation(tuple(tokens), self.decode(tokens), finish)

    def stopped(self, tokens: Sequence[int], stop: Sequence[str]) -> Generation | None:
        """The generation cut before its first stop text, if its tokens spell one."""
        if not stop:
            return None
        text = self.decode(tokens)
        cut = min((i for s in stop if (i := text.find(s)) >= 0), default=-1)
        return Generation(tuple(tokens), text[:cut], "stop") if cut >= 0 else None
