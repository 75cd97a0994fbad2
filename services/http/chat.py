"""POST /v1/chat/completions: OpenAI's chat API over the person's assistant.

A chat client sends the whole conversation each time. The last user message
is the question and the user and assistant turns before it are the history.
System (and developer) messages are left out: the person's soulprint is the
system prompt. The answer carries its sources in the ``soulprint`` extension
field, which OpenAI's clients keep as an extra attribute. It is on the
completion, or on the final chunk of a stream.

The answer is made in full before the first byte is sent. So a failure (no
soulprint, a provider down) is still an ordinary JSON error with its status.
A stream then sends the text in pieces of a few words.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import AsyncIterator, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from soulprint.models.query import Answer, QueryRequest, Turn
from soulprint.services.http.errors import BadRequest

MODEL_ID = "soulprint"  # what GET /v1/models lists; any model name is accepted and echoed back
WORDS_PER_CHUNK = 12


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields this endpoint reads; sampling parameters (temperature, max_tokens...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # OpenAI's end-user id; names the person only with the operator token

    def as_query(self) -> QueryRequest:
        """The last user message as the question, the turns before it as history (validated like /v1/query)."""
        asked = [n for n, m in enumerate(self.messages) if m.role == "user"]
        if not asked:
            raise BadRequest("messages: there is no user message to answer")
        last = asked[-1]
        history = [Turn(role=m.role, content=m.text) for m in self.messages[:last]
                   if m.role in ("user", "assistant") and m.text.strip()]
        return QueryRequest(message=self.messages[last].text, history=history)


class Completion:
    """One answer as OpenAI objects: a chat.completion, or the chunks of a stream."""

    def __init__(self, model: str, answer: Answer) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.answer = answer

    def _object(self, kind: str, **fields) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, **fields}

    @property
    def extension(self) -> dict:
        a = self.answer
        return {"sources": a.sources, "chunks_used": a.chunks_used, "method": a.method, "latency_ms": a.latency_ms}

    @property
    def usage(self) -> dict:
        u = self.answer.usage or {}
        prompt = sum(int(u.get(k) or 0) for k in ("input_tokens", "cache_creation_input_tokens",
                                                  "cache_read_input_tokens"))
        completion = int(u.get("output_tokens") or 0)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def completion(self) -> dict:
        message = {"role": "assistant", "content": self.answer.response}
        return self._object("chat.completion", choices=[{"index": 0, "message": message, "finish_reason": "stop"}],
                            usage=self.usage, soulprint=self.extension)

    def chunks(self, include_usage: bool) -> list[dict]:
        def chunk(delta: dict, finish: str | None = None, **extra) -> dict:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return self._object("chat.completion.chunk", choices=[choice], **extra)

        out = [chunk({"role": "assistant", "content": ""})]
        out += [chunk({"content": piece}) for piece in pieces(self.answer.response)]
        out.append(chunk({}, "stop", soulprint=self.extension))
        if include_usage:  # OpenAI's stream_options.include_usage: one last chunk without choices
            out.append(self._object("chat.completion.chunk", choices=[], usage=self.usage))
        return out

    async def events(self, include_usage: bool) -> AsyncIterator[bytes]:
        """The server-sent events of a stream: one ``data:`` line per chunk, then ``data: [DONE]``."""
        for c in self.chunks(include_usage):
            yield b"data: " + orjson.dumps(c) + b"\n\n"
        yield b"data: [DONE]\n\n"


def pieces(text: str, words: int = WORDS_PER_CHUNK) -> list[str]:
    """``text`` in runs of a few words, whitespace kept, so that the pieces join back to exactly ``text``."""
    tokens = re.findall(r"\s*\S+\s*", text) or ([text] if text else [])
    return ["".join(tokens[n:n + words]) for n in range(0, len(tokens), words)]
