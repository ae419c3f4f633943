"""The chat prompt format of instruct models stored in GGUF (ChatML, as SmolLM2 uses).

A GGUF file carries its chat template as Jinja source (``tokenizer.chat_template``). Rather
than run arbitrary Jinja, this module recognises the ChatML family and renders it
directly; a template it does not recognise is refused with a clear error, never rendered
approximately.

SmolLM2-Instruct's template, rendered for ``[{"role": "user", "content": "Hi"}]`` with a
generation prompt::

    <|im_start|>system
    You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
    <|im_start|>user
    Hi<|im_end|>
    <|im_start|>assistant

The system turn is added only when the conversation does not start with one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from .errors import UnsupportedModelError
from .gguf import GGUFFile

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# A newline inside a Jinja string literal is written either as an escape or as itself.
_NL = r"(?:\\n|\n)"
# The per-message body of a ChatML template, with the spacing variants Jinja allows.
_CHATML_MESSAGE = re.compile(
    r"'<\|im_start\|>'\s*\+\s*message\['role'\]\s*\+\s*'" + _NL + r"'\s*\+\s*"
    r"message\['content'\]\s*\+\s*'<\|im_end\|>'\s*\+\s*'" + _NL + "'"
)
_DEFAULT_SYSTEM = re.compile(
    r"messages\[0\]\['role'\]\s*!=\s*'system'\s*%\}\{\{\s*'<\|im_start\|>system"
    + _NL
    + r"(.*?)<\|im_end\|>"
    + _NL
    + "'",
    re.S,
)
_GENERATION_PROMPT = re.compile(
    r"\{%\s*if add_generation_prompt\s*%\}\{\{\s*'<\|im_start\|>assistant" + _NL + r"'\s*\}\}"
)

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatTemplate:
    """A recognised ChatML template.

    Attributes:
        default_system: the system message inserted when a conversation has none, or
            ``None`` if the template inserts none.
        stop_text: the text that ends an assistant turn (``<|im_end|>``).
    """

    default_system: Optional[str]
    stop_text: str = IM_END

    @classmethod
    def from_source(cls, source: str, path: str = "<template>") -> "ChatTemplate":
        """Recognise a Jinja chat template's source; refuse any other format."""
        if not _CHATML_MESSAGE.search(source) or not _GENERATION_PROMPT.search(source):
            raise UnsupportedModelError(
                path, "chat template is not ChatML; only ChatML templates are supported"
            )
        m = _DEFAULT_SYSTEM.search(source)
        system = m.group(1).replace("\\n", "\n") if m else None
        return cls(default_system=system)

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> "ChatTemplate":
        """The template stored in a GGUF file's ``tokenizer.chat_template``."""
        source = gguf.get("tokenizer.chat_template")
        if not isinstance(source, str):
            raise UnsupportedModelError(gguf.path, "the file has no chat template")
        return cls.from_source(source, gguf.path)

    def render(
        self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True
    ) -> str:
        """The prompt text for ``messages`` (each a mapping with ``role`` and ``content``).

        The result contains control tokens as text: tokenize it with ``parse_special=True``.
        """
        if not messages:
            raise ValueError("a chat needs at least one message")
        parts = []
        for i, msg in enumerate(messages):
            role = msg.get("role")
            content = msg.get("content")
            if role not in ROLES:
                raise ValueError(f"message {i}: role {role!r} is not one of {ROLES}")
            if not isinstance(content, str):
                raise ValueError(f"message {i}: content must be a string")
            if i == 0 and role != "system" and self.default_system is not None:
                parts.append(f"{IM_START}system\n{self.default_system}{IM_END}\n")
            parts.append(f"{IM_START}{role}\n{content}{IM_END}\n")
        if add_generation_prompt:
            parts.append(f"{IM_START}assistant\n")
        return "".join(parts)
