"""Chat prompts: the model's own chat template (Jinja, from its GGUF), rendered in a sandbox.

A template is code shipped with the weights; it runs in Jinja's immutable sandbox, so it can
format messages and nothing else. Messages are data: their content is never parsed as a template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tokenweave.errors import InvalidArgumentError, clip

ROLES = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidArgumentError(
                f"message role {clip(self.role)} is not one of {', '.join(sorted(ROLES))}"
            )


@lru_cache(maxsize=8)
def _compiled(template: str) -> object:
    environment = ImmutableSandboxedEnvironment(trim_blocks=False, lstrip_blocks=False)
    return environment.from_string(template)


def render_chat(
    template: str, messages: Sequence[Message], add_generation_prompt: bool = True
) -> str:
    """The prompt text for `messages`, ending with the assistant's turn opened."""
    if not messages:
        raise InvalidArgumentError("a chat needs at least one message")
    try:
        compiled = _compiled(template)
        return str(
            compiled.render(  # type: ignore[attr-defined]
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=add_generation_prompt,
            )
        )
    except TemplateError as exc:
        raise InvalidArgumentError(f"the model's chat template failed: {exc}") from exc
