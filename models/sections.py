"""The five SoulPrint sections produced by the quick pass.

SOUL      the assistant's character for this person (tone, style, humour, values, boundaries)
IDENTITY  the assistant's name, archetype and vibe, chosen to suit the person
USER      who the person is (name, work, places, interests, relationships, goals, context)
AGENTS    how to work with them (formats, task handling, what to remember, what to ask)
TOOLS     their tools, stack, platforms and workflows

:data:`SectionsAnswer` is the pydantic model of what the LLM fills through a
forced tool call (derived from the dataclasses below, so each field is
written once); ``Sections.from_dict`` reads that shape back (tolerant of
missing and extra keys: stored soulprints use it too).
``offline`` is *our* label, never asked of the model: rendering shows it so
nobody mistakes rule-based output for a model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Mapping

from pydantic import BaseModel, Field, create_model

from soulprint.models.llm import tool_schema

OFFLINE_NOTE = "> Generated offline (deterministic, no LLM)"


def _str(v: Any) -> str:
    return v.strip() if isinstance(v, str) else ("" if v is None else str(v).strip())


def _strs(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)):
        return []
    out: list[str] = []
    for item in v:
        s = _str(item)
        if s and s not in out:
            out.append(s)
    return out


def _bullets(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    return [f"## {title}", *(f"- {i}" for i in items), ""]


def _para(title: str, text: str) -> list[str]:
    return [f"## {title}", text, ""] if text else []


class _Section:
    """Shared to_dict/from_dict/merge over dataclass fields (str or list[str])."""

    HEADING: ClassVar[str] = ""
    # JSON-schema descriptions double as instructions to the model.
    DESCRIPTIONS: ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(getattr(self, f.name)) if isinstance(getattr(self, f.name), list)
                         else getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Any:
        d = d or {}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in d:
                kwargs[f.name] = _strs(d[f.name]) if _is_list(f) else _str(d[f.name])
        return cls(**kwargs)

    def merge(self, other: Any) -> Any:
        """Union of lists (order kept), first non-empty string wins. For the two-call quick pass."""
        kwargs: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            a, b = getattr(self, f.name), getattr(other, f.name)
            kwargs[f.name] = _strs(list(a) + list(b)) if _is_list(f) else (a or b)
        return type(self)(**kwargs)

    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]

    @classmethod
    def answer_model(cls) -> type[BaseModel]:
        """The pydantic model of this section in a tool answer.

        Every field required (empty string / empty list when unknown): a
        model that must write each key considers each one; extra keys are
        ignored (from_dict drops them) since a repair round-trip for a
        harmless extra key would waste money.
        """
        return create_model(f"{cls.__name__}Answer", **{  # type: ignore[call-overload]
            f.name: (list[str] if _is_list(f) else str, Field(description=cls.DESCRIPTIONS.get(f.name, "")))
            for f in fields(cls)})  # type: ignore[arg-type]


def _is_list(f: Any) -> bool:
    return "list" in str(f.type)


@dataclass
class Soul(_Section):
    HEADING: ClassVar[str] = "SOUL"
    DESCRIPTIONS: ClassVar[dict[str, str]] = {
        "summary": "Two or three sentences: the character the assistant should have for this person.",
        "tone": "Tone words or short phrases, e.g. 'warm but direct'.",
        "style": "How to write for them: length, structure, register, pacing.",
        "humour": "What kind of humour fits, or 'none' if they keep it strictly business.",
        "values": "Values the assistant should honour for this person.",
        "boundaries": "Things the assistant must not do with this person.",
    }
    summary: str = ""
    tone: list[str] = field(default_factory=list)
    style: list[str] = field(default_factory=list)
    humour: str = ""
    values: list[str] = field(default_factory=list)
    boundaries: list[str] = field(default_factory=list)

    def render_markdown(self) -> str:
        lines = ["# SOUL", ""]
        if self.summary:
            lines += [self.summary, ""]
        lines += _bullets("Tone", self.tone) + _bullets("Style", self.style) + _para("Humour", self.humour)
        lines += _bullets("Values to honour", self.values) + _bullets("Boundaries", self.boundaries)
        return "\n".join(lines).rstrip() + "\n"


@dataclass
class Identity(_Section):
    HEADING: ClassVar[str] = "IDENTITY"
    DESCRIPTIONS: ClassVar[dict[str, str]] = {
        "name": "The assistant's own name: short, easy to say, chosen to suit this person.",
        "archetype": "The role it plays for them, e.g. 'pair programmer', 'steady coach'.",
        "vibe": "One sentence on how it comes across.",
        "emoji": "One emoji that signs its messages, or an empty string.",
        "rationale": "One sentence: why this identity suits this person.",
    }
    name: str = ""
    archetype: str = ""
    vibe: str = ""
    emoji: str = ""
    rationale: str = ""

    def render_markdown(self) -> str:
        lines = ["# IDENTITY", ""]
        for label, value in (("Name", self.name), ("Archetype", self.archetype), ("Vibe", self.vibe),
                             ("Emoji", self.emoji)):
            if value:
                lines.append(f"- **{label}:** {value}")
        if self.rationale:
            lines += ["", self.rationale]
        return "\n".join(lines).rstrip() + "\n"


@dataclass
class User(_Section):
    HEADING: ClassVar[str] = "USER"
    DESCRIPTIONS: ClassVar[dict[str, str]] = {
        "name": "The person's name if they stated it, else an empty string. Never guess.",
        "summary": "Two or three sentences on who they are.",
        "work": "Job, employer, field, current projects.",
        "locations": "Where they live, are based, or come from.",
        "interests": "Interests and hobbies.",
        "relationships": "People who matter to them (partner, kids, colleagues, pets), with names when stated.",
        "goals": "What they are working towards.",
        "context": "Other durable context: situation, constraints, notable decisions and dates.",
    }
    name: str = ""
    summary: str = ""
    work: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    interests: list[str] = field(default_factory=list)
    relationships: list[str] = field(default_factory=list)
    goals: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)

    def render_markdown(self) -> str:
        lines = ["# USER", ""]
        if self.name:
            lines += [f"- **Name:** {self.name}", ""]
        if self.summary:
            lines += [self.summary, ""]
        lines += _bullets("Work", self.work) + _bullets("Places", self.locations)
        lines += _bullets("Interests", self.interests) + _bullets("Relationships", self.relationships)
        lines += _bullets("Goals", self.goals) + _bullets("Context", self.context)
        return "\n".join(lines).rstrip() + "\n"


@dataclass
class Agents(_Section):
    HEADING: ClassVar[str] = "AGENTS"
    DESCRIPTIONS: ClassVar[dict[str, str]] = {
        "response_formats": "Formats they prefer: length, bullets vs prose, code style, tables.",
        "task_handling": "How to approach their tasks: when to act, when to check in, depth.",
        "remember": "Things to keep in mind across conversations.",
        "ask_about": "What to ask them rather than assume.",
        "avoid": "Habits that annoy them or that they asked to stop.",
    }
    response_formats: list[str] = field(default_factory=list)
    task_handling: list[str] = field(default_factory=list)
    remember: list[str] = field(default_factory=list)
    ask_about: list[str] = field(default_factory=list)
    avoid: list[str] = field(default_factory=list)

    def render_markdown(self) -> str:
        lines = ["# AGENTS", ""]
        lines += _bullets("Preferred formats", self.response_formats)
        lines += _bullets("Handling tasks", self.task_handling) + _bullets("Remember", self.remember)
        lines += _bullets("Ask about", self.ask_about) + _bullets("Avoid", self.avoid)
        return "\n".join(lines).rstrip() + "\n"


@dataclass
class Tools(_Section):
    HEADING: ClassVar[str] = "TOOLS"
    DESCRIPTIONS: ClassVar[dict[str, str]] = {
        "tools": "Applications and tools they use (editors, note apps, design tools...).",
        "stack": "Programming languages, frameworks, databases.",
        "platforms": "Platforms and services: clouds, operating systems, chat and hosting services.",
        "workflows": "How they work with these: habits, pipelines, routines.",
    }
    tools: list[str] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    workflows: list[str] = field(default_factory=list)

    def render_markdown(self) -> str:
        lines = ["# TOOLS", ""]
        lines += _bullets("Tools", self.tools) + _bullets("Stack", self.stack)
        lines += _bullets("Platforms", self.platforms) + _bullets("Workflows", self.workflows)
        return "\n".join(lines).rstrip() + "\n"


# The five sections, in order: the one place their names are defined.
_SECTION_TYPES: dict[str, type[_Section]] = {
    "soul": Soul, "identity": Identity, "user": User, "agents": Agents, "tools": Tools,
}
SECTION_ORDER: tuple[str, ...] = tuple(_SECTION_TYPES)
# Their workspace file names (SOUL, IDENTITY, ...).
FILE_NAMES: dict[str, str] = {name: t.HEADING for name, t in _SECTION_TYPES.items()}


@dataclass
class Sections:
    soul: Soul = field(default_factory=Soul)
    identity: Identity = field(default_factory=Identity)
    user: User = field(default_factory=User)
    agents: Agents = field(default_factory=Agents)
    tools: Tools = field(default_factory=Tools)
    offline: bool = False

    def parts(self) -> list[_Section]:
        return [getattr(self, name) for name in SECTION_ORDER]

    def render(self, name: str) -> str:
        """One section's markdown, with the offline label when it applies."""
        text = getattr(self, name).render_markdown()
        if self.offline:
            head, _, rest = text.partition("\n")
            text = f"{head}\n\n{OFFLINE_NOTE}\n{rest}"
        return text

    def soulprint_text(self, memory: str | None = None) -> str:
        """All five sections in order (SOUL, IDENTITY, USER, AGENTS, TOOLS), then MEMORY if given."""
        parts = [self.render(name).rstrip() for name in SECTION_ORDER]
        if memory:
            m = memory.strip()
            parts.append(m if m.startswith("# MEMORY") else f"# MEMORY\n\n{m}")
        return "\n\n".join(parts) + "\n"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {name: getattr(self, name).to_dict() for name in SECTION_ORDER}
        d["offline"] = self.offline
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, *, offline: bool | None = None) -> "Sections":
        d = d or {}
        kwargs: dict[str, Any] = {name: t.from_dict(d.get(name) if isinstance(d.get(name), Mapping) else None)
                                  for name, t in _SECTION_TYPES.items()}
        kwargs["offline"] = bool(d.get("offline", False)) if offline is None else offline
        return cls(**kwargs)

    @classmethod
    def from_result(cls, result: Any) -> "Sections":
        """From an ``LLMResult`` of the quick_sections task (carries its offline label)."""
        return cls.from_dict(result.data, offline=bool(getattr(result, "offline", False)))

    def merge(self, other: "Sections") -> "Sections":
        """Combine the answers of the two parallel quick-pass calls. Offline if either was."""
        kwargs: dict[str, Any] = {name: getattr(self, name).merge(getattr(other, name)) for name in SECTION_ORDER}
        return Sections(**kwargs, offline=self.offline or other.offline)

    def is_empty(self) -> bool:
        return all(p.is_empty() for p in self.parts())


# The quick pass's and sections_v2's answer: one object with the five sections.
SectionsAnswer: type[BaseModel] = create_model("SectionsAnswer", **{  # type: ignore[call-overload]
    name: (t.answer_model(), Field(description=f"The {t.HEADING} section.")) for name, t in _SECTION_TYPES.items()})
SECTIONS_SCHEMA: dict[str, Any] = tool_schema(SectionsAnswer)
SECTIONS_SCHEMA_NAME = "record_soulprint_sections"
