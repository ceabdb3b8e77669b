"""The ask workload: one question over documents far longer than the model's context, answered
by map-reduce over the network.

* **Map** (stage 0): every document is cut into windows of `window` tokens (neighbours share
  `overlap`), each sized so that the instruction, the question and a note of `note_tokens` fit
  the context beside it. Each window is one generation task: the model notes what the excerpt
  says about the question, or NONE.
* **Reduce** (stages 1…): once every map task is accepted, the notes are kept when they say
  something and their excerpt bears them out (`grounded`), the same note once; they are packed
  into prompts that fit the context. When they all fit one, that prompt asks for the answer
  (`max_tokens`) and is the last stage; otherwise each prompt combines its notes into one note,
  level by level, until they fit.
* **Result**: every document's result holds the `answer` and its `finish_reason` ("stop",
  "length", or "unanswered" when no window bore on the question), and the character spans
  `[start, end)` of that document's windows whose notes the answer drew on.

Every task is a greedy generation (a `GenerateTask`), so nodes run it as they run any
generation, and checking, comparing and metering are the generate workload's. A window's text
travels in its task's payload, also for dataset jobs (the coordinator read it to tokenize it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenweave import tensors
from tokenweave.errors import InvalidArgumentError, clip
from tokenweave.models import GeneratorSpec, Message, render_chat, tokenize
from tokenweave.v1 import generate_pb2
from tokenweave.workloads._api import (
    DocumentInput,
    DocumentPlan,
    JobPlan,
    PlanContext,
    TaskPlan,
)
from tokenweave.workloads._generate import GenerateWorkload, output_of, utf8
from tokenweave.workloads._options import check_known, int_option

DEFAULT_WINDOW = 1024
DEFAULT_OVERLAP = 32
DEFAULT_NOTE_TOKENS = 64
DEFAULT_MAX_TOKENS = 128
MIN_WINDOW = 64
MAX_NOTE_TOKENS = 512
MAX_ANSWER_TOKENS = 1024
MAX_QUESTION_CHARS = 1000
#: Tokens kept free for a text tokenized inside a prompt (merges across its edges).
SLACK = 16
#: What a note says when its excerpt (or notes) say nothing about the question.
NOTHING = "NONE"

MAP_SYSTEM = "You read one excerpt of a long text and note what it says about a question."
REDUCE_SYSTEM = "You combine notes taken from excerpts of a long text."


@dataclass(frozen=True, slots=True)
class _Settings:
    question: str
    window: int
    overlap: int
    note_tokens: int
    max_tokens: int

    def json(self) -> bytes:
        return json.dumps(
            {"question": self.question, "note_tokens": self.note_tokens, "max": self.max_tokens}
        ).encode()


@dataclass(frozen=True, slots=True)
class _Note:
    text: str
    #: (document, start, end): the windows it comes from, in characters.
    sources: tuple[tuple[int, int, int], ...]


def _map_prompt(question: str, excerpt: str) -> list[Message]:
    return [
        Message("system", MAP_SYSTEM),
        Message(
            "user",
            f"{excerpt}\n\nQuestion: {question}\nAnswer from the text above in one sentence, "
            f"or write {NOTHING} if it does not say.",
        ),
    ]


def _reduce_prompt(question: str, notes: Sequence[str], final: bool) -> list[Message]:
    listed = "\n".join(f"[{i + 1}] {note}" for i, note in enumerate(notes))
    ask = (
        "Using only these notes, answer the question."
        if final
        else "Combine these notes into one short note that keeps everything they say about "
        f"the question. If none of them bears on it, write only {NOTHING}."
    )
    return [
        Message("system", REDUCE_SYSTEM),
        Message("user", f"Question: {question}\n\nNotes:\n{listed}\n\n{ask}"),
    ]


def _is_note(text: str) -> bool:
    """A note that says something (not empty, not NONE)."""
    stripped = text.strip().strip(".").strip()
    return bool(stripped) and not stripped.upper().startswith(NOTHING)


_WORD = re.compile(r"[^\W\d_]{3,}")
_SENTENCE = re.compile(r"[.;:!?\n]+")
#: Words that carry no content of their own, left out of grounding.
_FUNCTION_TEXT = (
    "the and was were are is his her their its this that these those what which who whom whose "
    "when where why how did does had has have not but for with from into unto upon than then "
    "there they them him she you your our out all any can could would should will shall name "
    "named text excerpt answer question says said"
)
_FUNCTION_WORDS = frozenset(_FUNCTION_TEXT.split())


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _FUNCTION_WORDS}


def grounded(note: str, excerpt: str, question: str) -> bool:
    """Whether a map note is borne out by its excerpt: it adds at least one word to the
    question's, and every word it adds appears in a sentence of the excerpt that also holds a
    word of the question. A small model answers questions its excerpt says nothing about;
    this drops those answers (and notes that only restate the question) before any reduce."""
    asked = _words(question)
    added = _words(note) - asked
    if not added:
        return False
    sentences = [_words(s) for s in _SENTENCE.split(excerpt)]
    relevant = set().union(*(s for s in sentences if s & asked)) if asked else set()
    return added <= relevant


class AskWorkload(GenerateWorkload):
    """Map-reduce question answering; its tasks are generations (see the module's doc)."""

    name = "ask"
    options = ("question", "window", "overlap", "note_tokens", "max_tokens")

    # -- coordinator --------------------------------------------------------------------------

    @staticmethod
    def _context(context: PlanContext) -> int:
        """The model's context in tokens; InvalidArgumentError for a model that cannot ask."""
        if not isinstance(context.model, GeneratorSpec):
            raise InvalidArgumentError(f"model {clip(context.model.name)} does not generate text")
        return context.model.context

    def _settings(self, options: Mapping[str, str], context: PlanContext) -> _Settings:
        tokens = self._context(context)
        check_known(options, self.options, self.name)
        question = options.get("question", "").strip()
        if not question:
            raise InvalidArgumentError("ask needs a question (option question)")
        if len(question) > MAX_QUESTION_CHARS:
            raise InvalidArgumentError(
                f"the question is {len(question)} characters; the limit is {MAX_QUESTION_CHARS}"
            )
        note_tokens = int_option(options, "note_tokens", 1, MAX_NOTE_TOKENS) or DEFAULT_NOTE_TOKENS
        max_tokens = int_option(options, "max_tokens", 1, MAX_ANSWER_TOKENS) or DEFAULT_MAX_TOKENS
        overhead = len(self._ids(context, _map_prompt(question, "")))
        largest = tokens - overhead - note_tokens - SLACK
        window = int_option(options, "window", MIN_WINDOW, max(MIN_WINDOW, largest))
        window = min(window or DEFAULT_WINDOW, largest)
        if window < MIN_WINDOW:
            raise InvalidArgumentError(
                f"the question and note_tokens={note_tokens} leave {window} tokens of the "
                f"model's context of {tokens} for a window; shorten them"
            )
        overlap = int_option(options, "overlap", 0, window - 1)
        return _Settings(
            question,
            window,
            DEFAULT_OVERLAP if overlap is None else overlap,
            note_tokens,
            max_tokens,
        )

    @staticmethod
    def _ids(context: PlanContext, messages: Sequence[Message]) -> list[int]:
        prompt = render_chat(context.chat_template, messages)
        return list(context.text_tokenizer.encode(prompt, add_special_tokens=False).ids)

    def _task(
        self,
        context: PlanContext,
        messages: Sequence[Message],
        max_tokens: int,
        detail: dict[str, Any],
    ) -> TaskPlan:
        ids = self._ids(context, messages)
        if len(ids) + max_tokens > self._context(context):
            raise InvalidArgumentError(  # the sizes above leave room: a defect if it happens
                f"an ask prompt of {len(ids)} tokens does not fit the context"
            )
        payload = generate_pb2.GenerateTask(
            prompt_ids=tensors.to_bytes(np.asarray(ids, dtype=np.uint32), "uint32"),
            max_tokens=max_tokens,
            temperature=0.0,
            top_p=1.0,
        )
        detail |= self.detail(context, len(ids), max_tokens)
        return TaskPlan(
            cost=len(ids) + max_tokens,
            payload=payload.SerializeToString(),
            detail=json.dumps(detail).encode(),
        )

    def plan(
        self,
        model: str,
        documents: Sequence[DocumentInput],
        options: Mapping[str, str],
        context: PlanContext,
    ) -> JobPlan:
        settings = self._settings(options, context)
        stride = settings.window - settings.overlap
        planned, tasks = [], []
        for d, doc in enumerate(documents):
            # In pieces: a whole 8 MiB document in one call would hold ~1.4 GB of objects.
            offsets = tokenize(context.text_tokenizer, doc.text).offsets
            if not len(offsets):
                raise InvalidArgumentError(f"document {d} has no tokens")
            start = 0
            while True:
                end = min(start + settings.window, len(offsets))
                first, last = int(offsets[start, 0]), int(offsets[end - 1, 1])
                messages = _map_prompt(settings.question, doc.text[first:last])
                detail = {
                    "stage": 0,
                    "kind": "map",
                    "sources": [[d, first, last]],
                    "excerpt": doc.text[first:last],
                }
                tasks.append(self._task(context, messages, settings.note_tokens, detail))
                if end == len(offsets):
                    break
                start += stride
            planned.append(DocumentPlan(doc.name, len(offsets), settings.json()))
        filled = {
            "question": settings.question,
            "window": str(settings.window),
            "overlap": str(settings.overlap),
            "note_tokens": str(settings.note_tokens),
            "max_tokens": str(settings.max_tokens),
        }
        return JobPlan(
            options=filled, documents=tuple(planned), tasks=tuple(tasks), items=len(tasks)
        )

    def next_stage(
        self,
        documents: Sequence[DocumentPlan],
        tasks: Sequence[tuple[bytes, bytes]],
        context: PlanContext,
    ) -> tuple[TaskPlan, ...]:
        done = [(json.loads(detail), output_of(output)) for detail, output in tasks]
        stage = max(d["stage"] for d, _ in done)
        last = [(d, out) for d, out in done if d["stage"] == stage]
        if any(d["kind"] == "answer" for d, _ in last):
            return ()
        settings = json.loads(documents[0].detail)
        sources: dict[str, set[tuple[int, int, int]]] = {}  # the same note, once
        for detail, out in last:
            # The note is the text of its tokens as the coordinator decodes them, not the text
            # the node sent beside them (which goes unchecked).
            ids = tensors.from_bytes(out.token_ids, "uint32").tolist()
            text = str(context.text_tokenizer.decode(ids, skip_special_tokens=True)).strip()
            if _is_note(text) and (
                detail["kind"] != "map" or grounded(text, detail["excerpt"], settings["question"])
            ):
                sources.setdefault(text, set()).update(tuple(s) for s in detail["sources"])
        if not sources:
            return ()  # no window bore on the question: the job ends unanswered
        notes = [_Note(text, tuple(sorted(where))) for text, where in sources.items()]
        return self._combine(notes, settings, context, stage + 1)

    def _combine(
        self, notes: Sequence[_Note], settings: Mapping[str, Any], context: PlanContext, stage: int
    ) -> tuple[TaskPlan, ...]:
        """One answer task when every note fits one prompt; else reduce tasks, each combining
        as many notes as fit."""
        question = settings["question"]
        sizes = [
            len(context.text_tokenizer.encode(f"[{len(notes)}] {n.text}\n").ids) for n in notes
        ]
        overhead = len(self._ids(context, _reduce_prompt(question, [], final=False)))

        def room(answer_tokens: int) -> int:
            return self._context(context) - overhead - answer_tokens - SLACK

        if sum(sizes) <= room(settings["max"]):
            return (self._reduce_task(context, question, notes, settings["max"], stage, True),)
        groups: list[list[_Note]] = [[]]
        used = 0
        for note, size in zip(notes, sizes, strict=True):
            if groups[-1] and used + size > room(settings["note_tokens"]):
                groups.append([])
                used = 0
            groups[-1].append(note)
            used += size
        return tuple(
            self._reduce_task(context, question, group, settings["note_tokens"], stage, False)
            for group in groups
        )

    def _reduce_task(
        self,
        context: PlanContext,
        question: str,
        notes: Sequence[_Note],
        max_tokens: int,
        stage: int,
        final: bool,
    ) -> TaskPlan:
        sources = sorted({s for note in notes for s in note.sources})
        detail = {
            "stage": stage,
            "kind": "answer" if final else "reduce",
            "sources": [list(s) for s in sources],
        }
        messages = _reduce_prompt(question, [n.text for n in notes], final)
        return self._task(context, messages, max_tokens, detail)

    def merge(
        self, documents: Sequence[DocumentPlan], tasks: Sequence[tuple[bytes, bytes]]
    ) -> list[dict[str, npt.NDArray[np.generic]]]:
        final = json.loads(tasks[-1][0])
        answer, reason, sources = "", "unanswered", []
        if final["kind"] == "answer":
            result = output_of(tasks[-1][1])
            answer, reason, sources = result.text.strip(), result.finish_reason, final["sources"]
        return [
            {
                "answer": utf8(answer),
                "finish_reason": utf8(reason),
                "spans": np.asarray(
                    [[start, end] for doc, start, end in sources if doc == d], dtype=np.int64
                ).reshape(-1, 2),
            }
            for d in range(len(documents))
        ]
