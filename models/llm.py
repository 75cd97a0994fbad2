"""What an LLM call is, as plain data: the request, its result, its usage, the prompt spec.

Every layer speaks these types: domain/ builds requests from a
:class:`PromptSpec`, services/llm/ answers them, agents/ read the results.
A structured request names its answer model (a pydantic model): the model's
JSON schema is the forced tool's ``input_schema``, and the model validates
the answer (:meth:`LLMRequest.check`), so the shape is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

ERROR_KINDS = ("schema", "rate_limited", "timeout", "overloaded", "api")

A = TypeVar("A", bound=BaseModel)


@dataclass(frozen=True)
class PromptSpec:
    """One LLM task's prompt: static system text (the cacheable prefix), the user
    template filled from the task's payload, the tool that carries the answer.

    ``version`` goes into the response-cache key: edit the text, bump it.
    """

    task: str
    version: int
    system: str
    user_template: str
    schema_name: str
    model_role: str = "fast"
    max_tokens: int = 4096


class Price(Protocol):
    """USD per million tokens (services/llm/config.ModelPrice is one)."""

    input: float
    output: float
    cache_write: float
    cache_read: float


# --------------------------------------------------------------------------- answer models


def tool_schema(answer: type[BaseModel]) -> dict[str, Any]:
    """The answer model's JSON schema as a tool input_schema: references inlined, no titles,
    a single allowed value written as a one-item ``enum``."""
    raw = answer.model_json_schema()
    defs = raw.pop("$defs", {})

    def tidy(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:  # inlined; its siblings (a description) kept
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**tidy(defs[node["$ref"].rsplit("/", 1)[-1]]), **tidy(rest)}
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k == "title" or (k == "default" and v is None):
                continue
            if k == "properties":  # names to schemas: a property called "title" stays
                out[k] = {name: tidy(sub) for name, sub in v.items()}
            elif k in ("items", "additionalProperties") and isinstance(v, dict):
                out[k] = tidy(v)
            elif k in ("anyOf", "oneOf", "allOf"):
                out[k] = [tidy(sub) for sub in v]
            else:
                out[k] = v
        if "const" in out:
            out.setdefault("enum", [out.pop("const")])
        return out

    return tidy(raw)


def answer_errors(exc: ValidationError, limit: int = 10) -> list[str]:
    """Pydantic's errors as short lines with JSON paths ("$.facts[0].chunk: ..."):
    they go back to the model in the repair request."""
    out: list[str] = []
    for err in exc.errors()[:limit]:
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        if err["type"] == "missing":
            parent, _, name = path.rpartition(".")
            out.append(f"{parent}: missing required property '{name}'")
        else:
            out.append(f"{path}: {err['msg']}")
    return out


def as_answer(answer: type[A], data: A | Mapping[str, Any] | None) -> A | None:
    """``data`` as a validated ``answer``: an instance as is, a mapping validated, else None."""
    if isinstance(data, answer):
        return data
    if not isinstance(data, Mapping):
        return None
    try:
        return answer.model_validate(data)
    except ValidationError:
        return None


# --------------------------------------------------------------------------- request / result


@dataclass
class LLMRequest:
    task: str  # "quick_sections", "facts", "memory", "chat", ...
    system: str
    messages: list[dict[str, Any]]
    model_role: str = "fast"  # "fast" | "chat"
    # The pydantic model of the answer; None = plain text. ``schema`` (the tool
    # input_schema) is derived from it.
    answer: type[BaseModel] | None = None
    schema_name: str = "result"
    max_tokens: int = 4096
    # The structured input the prompt was rendered from. The offline provider
    # reads this, never the prompt text, so prompts can change freely.
    payload: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    # Whose data the request carries when it has no job (an answer): its cached answer is theirs to erase.
    user_id: str | None = None
    stage: str = ""
    cache_system: bool = True
    prompt_version: int = 0  # PromptSpec.version: part of the response-cache key
    schema: dict[str, Any] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.schema = tool_schema(self.answer) if self.answer is not None else None

    @classmethod
    def for_prompt(cls, spec: PromptSpec, user: str, *, answer: type[BaseModel], payload: dict[str, Any],
                   job_id: str | None, stage: str, model_role: str | None = None,
                   max_tokens: int | None = None) -> "LLMRequest":
        """One user turn under ``spec``: its task, system prompt (the cached prefix), tool name,
        version and defaults for model role and budget; ``answer`` is the model of the tool input."""
        return cls(
            task=spec.task, system=spec.system, messages=[{"role": "user", "content": user}],
            model_role=model_role or spec.model_role, answer=answer, schema_name=spec.schema_name,
            max_tokens=max_tokens or spec.max_tokens, payload=payload, job_id=job_id, stage=stage,
            cache_system=True, prompt_version=spec.version,
        )

    def check(self, data: Any) -> tuple[BaseModel | None, list[str]]:
        """(the validated answer, []) or (None, the errors with their paths)."""
        if self.answer is None:
            return None, []
        try:
            return self.answer.model_validate(data), []
        except ValidationError as exc:
            return None, answer_errors(exc)


@dataclass
class Usage:
    """What one or more calls consumed. Summable: ``a + b``, ``sum(us, Usage())``.

    ``requests`` counts answered (billed) API requests, including repair
    requests; ``throttled`` counts 429/529 answers (not billed); ``cache_hits``
    counts calls served from our response cache (requests=0, cost 0).
    """

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0
    cache_hits: int = 0
    throttled: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __radd__(self, other: Any) -> "Usage":
        if other == 0:  # sum() starts from 0
            return self
        return self.__add__(other)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Usage":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_api(cls, usage: Mapping[str, Any] | None, price: Price | None) -> "Usage":
        """One billed response's usage block (Messages API / Bedrock shape)."""
        u = usage or {}
        inp = int(u.get("input_tokens") or 0)
        out = int(u.get("output_tokens") or 0)
        cw = int(u.get("cache_creation_input_tokens") or 0)
        cr = int(u.get("cache_read_input_tokens") or 0)
        cost = 0.0
        if price is not None:
            cost = (inp * price.input + out * price.output + cw * price.cache_write + cr * price.cache_read) / 1e6
        return cls(1, inp, out, cw, cr, cost)


@dataclass
class LLMResult:
    ok: bool
    data: dict[str, Any] | None = None  # the validated tool input for structured requests
    text: str = ""
    error: str | None = None  # one line
    error_kind: str | None = None  # one of ERROR_KINDS
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    provider: str = ""
    model: str = ""
    offline: bool = False
    attempts: int = 0  # HTTP attempts made (throttled and timed-out ones included)
    answer: BaseModel | None = None  # ``data`` as the request's answer model
