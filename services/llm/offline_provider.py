"""Deterministic, rule-based stand-in for the LLM: no network, no key.

It lets the whole pipeline run (and be tested) without an API key, and gives a
useful-if-plain result when the LLM is unavailable. Each task has a function
registered in :data:`OFFLINE_TASKS` that maps the request's ``payload`` (never
the prompt text) to the same structure the LLM would return; the output is
validated by the request's answer model, and everything is labelled offline.

quick_sections reads first-person statements with regular expressions: names
("my name is X", "call me X", "I'm X,"), work ("I work as/at", "I'm a <job>"),
places ("I live in", "I'm based in", "moved to"), tools and languages from a
vocabulary, preferences ("I prefer/like/love/hate"), plans ("I'm planning",
"I want to", "my goal"), decisions ("I decided", "we chose") and dates.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

from soulprint.domain.answering import extractive_answer
from soulprint.domain.memory_doc import memory_sections_from_facts, memory_statements
from soulprint.models.facts import ConsolidatedFact
from soulprint.models.llm import LLMRequest, LLMResult, Usage
from soulprint.models.text import one_line

from .accounting import observe
from .base import ERROR_CHARS, LLMClient, UsageSink

OFFLINE_MODEL = "offline-rules-v1"

OfflineTask = Callable[[Mapping[str, Any]], "dict[str, Any] | str"]
OFFLINE_TASKS: dict[str, OfflineTask] = {}


def offline_task(name: str) -> Callable[[OfflineTask], OfflineTask]:
    """Register the offline implementation of a task (facts, memory, sections_v2 plug in here)."""

    def deco(fn: OfflineTask) -> OfflineTask:
        OFFLINE_TASKS[name] = fn
        return fn

    return deco


class OfflineClient(LLMClient):
    provider = "offline"
    offline = True

    def __init__(self, *, sink: UsageSink | None = None, tasks: Mapping[str, OfflineTask] | None = None) -> None:
        self.sink = sink
        self.tasks = tasks if tasks is not None else OFFLINE_TASKS

    async def complete(self, req: LLMRequest) -> LLMResult:
        result = self._run(req)
        if self.sink is not None:
            try:
                # A zero-cost row still says "this stage ran offline" in the job's usage summary.
                await self.sink.record(req.job_id, req.stage or req.task, self.provider, OFFLINE_MODEL, result.usage)
            except Exception:  # pragma: no cover - accounting must not fail the call
                pass
        observe(req.task, result)
        return result

    def _run(self, req: LLMRequest) -> LLMResult:
        base = dict(provider=self.provider, model=OFFLINE_MODEL, offline=True, usage=Usage())
        fn = self.tasks.get(req.task)
        if fn is None:
            return LLMResult(ok=False, error=f"the offline provider has no rules for task '{req.task}'",
                             error_kind="api", **base)
        try:
            out = fn(req.payload or {})
        except Exception as exc:
            return LLMResult(ok=False, error=one_line(f"offline {req.task} failed: {type(exc).__name__}: {exc}",
                                                      ERROR_CHARS), error_kind="api", **base)
        if isinstance(out, str):
            return LLMResult(ok=True, text=out, **base)
        answer, errors = req.check(out)
        if errors:  # a bug in the rules, reported like a model's bad answer
            return LLMResult(ok=False, error=one_line("offline output invalid: " + "; ".join(errors), ERROR_CHARS),
                             error_kind="schema", **base)
        return LLMResult(ok=True, data=out, answer=answer, **base)


# --------------------------------------------------------------------------- text helpers

_ROLE_RE = re.compile(r"^\s*(?:\*\*)?(user|human|me|you|assistant|ai|chatgpt|claude|gpt|system|tool)(?:\*\*)?\s*[:>]\s?",
                      re.IGNORECASE)
_USER_ROLES = {"user", "human", "me", "you"}


def user_text(excerpt: str) -> str:
    """The person's own lines of an excerpt.

    Excerpts may be role-prefixed ("User: ...", "Assistant: ..."); then only
    user turns count as evidence about the person. Without any prefix the
    whole excerpt is taken as theirs.
    """
    lines = excerpt.splitlines()
    if not any(_ROLE_RE.match(line) for line in lines):
        return excerpt
    out: list[str] = []
    current_is_user = False
    for line in lines:
        m = _ROLE_RE.match(line)
        if m:
            current_is_user = m.group(1).lower() in _USER_ROLES
            line = line[m.end():]
        if current_is_user:
            out.append(line)
    return "\n".join(out)


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    return [" ".join(p.split()) for p in parts if p and p.strip()]


def _clean(fragment: str, limit: int = 140) -> str:
    s = " ".join(fragment.split()).strip(" ,;:-\"'")
    s = re.sub(r"\s+(?:and|but|so|because|though|which)$", "", s, flags=re.IGNORECASE)
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"


def _dedup(items: Iterable[str], limit: int = 8) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        key = item.lower()
        if item and key not in seen:
            seen.add(key)
            out.append(item)
        if len(out) >= limit:
            break
    return out


# --------------------------------------------------------------------------- vocabularies

# (canonical name, regex, kind). kind: "tool" | "stack" | "platform".
# Ambiguous English words (Go, Rust, Swift, Excel, Notion, Word) are matched
# case-sensitively and, for Go, only in a programming context.
_VOCAB: list[tuple[str, str, str]] = [
    ("Python", r"(?i:\bpython\b)", "stack"),
    ("TypeScript", r"(?i:\btypescript\b)", "stack"),
    ("JavaScript", r"(?i:\bjavascript\b)", "stack"),
    ("Rust", r"\bRust\b", "stack"),
    ("Go", r"\b(?:Golang|golang|(?<=\bin )Go\b|Go (?:code|modules?|services?|programs?|backend|library))", "stack"),
    ("Java", r"\bJava\b", "stack"),
    ("Kotlin", r"(?i:\bkotlin\b)", "stack"),
    ("Swift", r"\bSwift(?:UI)?\b", "stack"),
    ("C#", r"(?<![\w#])C#", "stack"),
    ("C++", r"(?<![\w+])C\+\+", "stack"),
    ("Ruby", r"\bRuby\b", "stack"),
    ("PHP", r"\bPHP\b", "stack"),
    ("R", r"(?<=\bin )R\b(?! &)", "stack"),
    ("SQL", r"\bSQL\b", "stack"),
    ("Bash", r"(?i:\bbash\b)", "stack"),
    ("React", r"\bReact(?:\.js)?\b", "stack"),
    ("Next.js", r"(?i:\bnext\.?js\b)", "stack"),
    ("Vue", r"\bVue(?:\.js)?\b", "stack"),
    ("Svelte", r"(?i:\bsvelte(?:kit)?\b)", "stack"),
    ("Node.js", r"(?i:\bnode\.?js\b)|\bNode\b", "stack"),
    ("Django", r"(?i:\bdjango\b)", "stack"),
    ("Flask", r"\bFlask\b", "stack"),
    ("FastAPI", r"(?i:\bfastapi\b)", "stack"),
    ("Rails", r"\bRails\b", "stack"),
    ("PostgreSQL", r"(?i:\bpostgres(?:ql)?\b)", "stack"),
    ("MySQL", r"(?i:\bmysql\b)", "stack"),
    ("SQLite", r"(?i:\bsqlite\b)", "stack"),
    ("MongoDB", r"(?i:\bmongo(?:db)?\b)", "stack"),
    ("Redis", r"(?i:\bredis\b)", "stack"),
    ("Kafka", r"\bKafka\b", "stack"),
    ("pandas", r"\bpandas\b", "stack"),
    ("PyTorch", r"(?i:\bpytorch\b)", "stack"),
    ("TensorFlow", r"(?i:\btensorflow\b)", "stack"),
    ("Tailwind", r"(?i:\btailwind(?:css)?\b)", "stack"),
    ("GraphQL", r"(?i:\bgraphql\b)", "stack"),
    ("Docker", r"(?i:\bdocker\b)", "tool"),
    ("Kubernetes", r"(?i:\bkubernetes\b|\bk8s\b)", "tool"),
    ("Terraform", r"(?i:\bterraform\b)", "tool"),
    ("Git", r"\bgit\b(?!hub|lab)|\bGit\b(?!Hub|Lab)", "tool"),
    ("VS Code", r"(?i:\bvs ?code\b|\bvisual studio code\b)", "tool"),
    ("Neovim", r"(?i:\bneovim\b|\bnvim\b)", "tool"),
    ("Vim", r"\bVim\b|\bvim\b", "tool"),
    ("Emacs", r"(?i:\bemacs\b)", "tool"),
    ("JetBrains", r"(?i:\bjetbrains\b|\bpycharm\b|\bintellij\b|\bwebstorm\b)", "tool"),
    ("Cursor", r"\bCursor\b(?= (?:IDE|editor|AI))|\bthe Cursor editor\b", "tool"),
    ("Jupyter", r"(?i:\bjupyter\b)", "tool"),
    ("Figma", r"(?i:\bfigma\b)", "tool"),
    ("Photoshop", r"(?i:\bphotoshop\b)", "tool"),
    ("Illustrator", r"\bIllustrator\b", "tool"),
    ("Canva", r"(?i:\bcanva\b)", "tool"),
    ("Blender", r"\bBlender\b", "tool"),
    ("Notion", r"\bNotion\b", "tool"),
    ("Obsidian", r"\bObsidian\b", "tool"),
    ("Excel", r"\bExcel\b", "tool"),
    ("Google Sheets", r"(?i:\bgoogle sheets\b)", "tool"),
    ("Google Docs", r"(?i:\bgoogle docs\b)", "tool"),
    ("Word", r"\bMicrosoft Word\b|\bMS Word\b", "tool"),
    ("PowerPoint", r"(?i:\bpowerpoint\b)", "tool"),
    ("Trello", r"(?i:\btrello\b)", "tool"),
    ("Jira", r"(?i:\bjira\b)", "tool"),
    ("Linear", r"\bLinear\b(?= (?:app|issues?|tickets?|board))", "tool"),
    ("Airtable", r"(?i:\bairtable\b)", "tool"),
    ("Zapier", r"(?i:\bzapier\b)", "tool"),
    ("Tableau", r"(?i:\btableau\b)", "tool"),
    ("Power BI", r"(?i:\bpower ?bi\b)", "tool"),
    ("Ableton", r"(?i:\bableton\b)", "tool"),
    ("Logic Pro", r"(?i:\blogic pro\b)", "tool"),
    ("Final Cut", r"(?i:\bfinal cut\b)", "tool"),
    ("Premiere", r"\bPremiere(?: Pro)?\b", "tool"),
    ("Lightroom", r"(?i:\blightroom\b)", "tool"),
    ("Unity", r"\bUnity\b", "tool"),
    ("Unreal", r"\bUnreal(?: Engine)?\b", "tool"),
    ("Postman", r"(?i:\bpostman\b)", "tool"),
    ("AWS", r"\bAWS\b|(?i:\bamazon web services\b)", "platform"),
    ("GCP", r"\bGCP\b|(?i:\bgoogle cloud\b)", "platform"),
    ("Azure", r"\bAzure\b", "platform"),
    ("GitHub", r"(?i:\bgithub\b)", "platform"),
    ("GitLab", r"(?i:\bgitlab\b)", "platform"),
    ("Vercel", r"(?i:\bvercel\b)", "platform"),
    ("Netlify", r"(?i:\bnetlify\b)", "platform"),
    ("Heroku", r"(?i:\bheroku\b)", "platform"),
    ("Supabase", r"(?i:\bsupabase\b)", "platform"),
    ("Firebase", r"(?i:\bfirebase\b)", "platform"),
    ("Cloudflare", r"(?i:\bcloudflare\b)", "platform"),
    ("Linux", r"(?i:\blinux\b|\bubuntu\b|\bdebian\b|\barch linux\b)", "platform"),
    ("macOS", r"(?i:\bmacos\b)|\bMac\b|\bMacBook\b", "platform"),
    ("Windows", r"\bWindows\b", "platform"),
    ("iOS", r"\biOS\b|\biPhone\b", "platform"),
    ("Android", r"(?i:\bandroid\b)", "platform"),
    ("Slack", r"\bSlack\b", "platform"),
    ("Discord", r"(?i:\bdiscord\b)", "platform"),
    ("Shopify", r"(?i:\bshopify\b)", "platform"),
    ("WordPress", r"(?i:\bwordpress\b)", "platform"),
    ("Google Workspace", r"(?i:\bgoogle workspace\b|\bgmail\b)", "platform"),
]
_VOCAB_RES = [(name, re.compile(rx), kind) for name, rx, kind in _VOCAB]

_JOB_NOUNS = (
    "engineer|developer|programmer|designer|manager|teacher|nurse|student|writer|author|researcher|scientist|"
    "analyst|consultant|founder|co-founder|cofounder|doctor|physician|lawyer|attorney|architect|artist|"
    "photographer|accountant|marketer|freelancer|entrepreneur|professor|lecturer|editor|journalist|musician|"
    "composer|producer|chef|cook|therapist|psychologist|coach|pharmacist|paramedic|electrician|plumber|"
    "carpenter|mechanic|pilot|officer|administrator|admin|technician|specialist|strategist|recruiter|"
    "salesperson|realtor|agent|tutor|translator|illustrator|animator|filmmaker|copywriter|lead|director|"
    "intern|phd student|postdoc|veterinarian|vet|dentist|barista|owner|ceo|cto|cfo|vp"
)
_STOP_NAMES = {
    "sorry", "just", "not", "so", "also", "still", "really", "trying", "looking", "working", "going", "currently",
    "happy", "glad", "here", "back", "new", "ok", "okay", "fine", "good", "sure", "afraid", "thinking", "writing",
    "using", "building", "planning", "hoping", "curious", "wondering", "a", "an", "the", "in", "on", "at", "from",
    "very", "quite", "kind", "interested", "excited", "tired", "done", "ready", "stuck", "confused", "based",
    "english", "french", "german", "spanish", "american", "british", "canadian", "italian", "dutch",
}

_NAME = r"([A-Z][a-zà-ÿ'’-]+(?: [A-Z][a-zà-ÿ'’-]+)?)"
_NAME_PATTERNS = [
    re.compile(r"(?i:\bmy name(?:'s| is))\s+" + _NAME),
    re.compile(r"(?i:\bcall me)\s+([A-Z][a-zà-ÿ'’-]+)\b"),
    re.compile(r"\b(?:I'm|I am|this is)\s+([A-Z][a-zà-ÿ'’-]+)\s*(?:,|\.|!|$| here\b| and I\b)"),
    re.compile(r"(?i:\buser'?s name is\s+)" + _NAME),  # ChatGPT saved memory: "User's name is Sam."
    re.compile(r"(?i:\bname:\s*)" + _NAME),
]

# Space-separated capitalised words (no newlines, no sentence-ending dots): "Lisbon, Portugal", "New York".
_PLACE = r"([A-Z][\w'’-]*(?:\.\w+)*(?:(?: |, ?)(?:[A-Z][\w'’-]*(?:\.\w+)*|de|del|upon|on|am))*)"
_PLACE_PATTERNS = [
    re.compile(r"\bI(?:'ve| have)?\s+(?:currently\s+)?(?:live|lived|living|grew up|reside)\s+in\s+" + _PLACE),
    re.compile(r"\bI'?m\s+(?:currently\s+)?(?:based|living|located)\s+in\s+" + _PLACE),
    re.compile(r"\bI am\s+(?:currently\s+)?(?:based|living|located)\s+in\s+" + _PLACE),
    re.compile(r"\b(?:I|we)\s+(?:just\s+|recently\s+)?(?:moved|relocated)\s+to\s+" + _PLACE),
    re.compile(r"\b(?:I'm|I am)\s+(?:moving|relocating)\s+to\s+" + _PLACE),
    re.compile(r"\b(?:I'm|I am)\s+(?:originally\s+)?from\s+" + _PLACE),
    re.compile(r"(?i:\b(?:lives|is based|resides) in\s+)" + _PLACE),  # saved-memory third person
]
_NOT_PLACES = {"I", "The", "A", "My", "It", "This", "That", "We", "Monday", "Tuesday", "Wednesday", "Thursday",
               "Friday", "Saturday", "Sunday"}

_WORK_PATTERNS = [
    re.compile(r"\bI\s+(?:currently\s+)?work\s+(as|at|for|in|on)\s+([^.,;!?\n]{2,80})", re.IGNORECASE),
    re.compile(r"\b(?:I'm|I am)\s+(?:currently\s+)?(?:working|employed)\s+(as|at|for)\s+([^.,;!?\n]{2,80})",
               re.IGNORECASE),
    re.compile(r"\bmy (?:job|role|position) (?:is|as)\s+(?:an?\s+)?()([^.,;!?\n]{2,80})", re.IGNORECASE),
    re.compile(r"(?i:\bworks (as|at|for)\s+)([^.,;!?\n]{2,80})"),  # saved memory
]
_IM_A_RE = re.compile(
    r"\b(?:I'm|I am|I work as)\s+an?\s+((?:[\w/+-]+\s){0,3}?(?:" + _JOB_NOUNS + r")s?)"
    r"(?: (?:at|for|with|in) ([A-Z][\w&'’-]*(?:\.\w+)*(?: [A-Z][\w&'’-]*(?:\.\w+)*){0,3}))?",
    re.IGNORECASE,
)

_PREF_RE = re.compile(
    r"\bI\s+(?:really\s+|much\s+|generally\s+|usually\s+|strongly\s+)?"
    r"(prefer|like|love|enjoy|adore|hate|dislike|don't like|do not like|can't stand|cannot stand|don't want|"
    r"do not want)\s+([^.!?\n]{3,140})",
    re.IGNORECASE,
)
_INTO_RE = re.compile(r"\b(?:I'm|I am)\s+(?:really\s+|very\s+)?(?:into|passionate about|obsessed with|a fan of)\s+"
                      r"([^.!?\n]{3,100})", re.IGNORECASE)
_HOBBY_RE = re.compile(r"\bmy (?:hobby is|hobbies are|hobbies include|favou?rite \w+ is)\s+([^.!?\n]{3,100})",
                       re.IGNORECASE)
_PLAN_RE = re.compile(
    r"\b(?:I'm planning(?: to| on)?|I am planning(?: to| on)?|I plan to|I want to|I'd like to|I would like to|"
    r"I'm hoping to|I hope to|I'm trying to|I am trying to|my goal is(?: to)?|one of my goals is(?: to)?|"
    r"I'm aiming to|I intend to)\s+([^.!?\n]{3,140})",
    re.IGNORECASE,
)
_DECISION_RE = re.compile(
    r"\b(?:I|we)\s+(?:have\s+|'ve\s+|finally\s+)?(?:decided|chose|chosen|picked|settled on|went with|opted)\s+"
    r"(to\s+|on\s+|for\s+)?([^.!?\n]{3,140})",
    re.IGNORECASE,
)
_MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December|"
           "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")
_DATE_RE = re.compile(
    r"\b(\d{4}-\d{2}-\d{2})\b|\b(?:on|by|until|before|after|since)\s+((?:" + _MONTHS + r")\.?\s+\d{1,2}(?:st|nd|rd|th)?"
    r"(?:,?\s+\d{4})?)\b|\b(\d{1,2}(?:st|nd|rd|th)?\s+(?:" + _MONTHS + r")(?:\s+\d{4})?)\b",
)
_REL_RE = re.compile(
    r"\b(?i:my)\s+(wife|husband|partner|spouse|girlfriend|boyfriend|fianc[eé]e?|son|daughter|kids|children|child|baby|"
    r"mom|mother|mum|dad|father|parents|sister|brother|sibling|grandma|grandmother|grandpa|grandfather|"
    r"best friend|friend|boss|manager|cofounder|co-founder|colleague|coworker|team|dog|cat|puppy|kitten)"
    r"(?:,?\s+(?:named\s+|called\s+)?([A-Z][a-zà-ÿ'’-]+)\b)?",
)
_FORMAT_WORDS = re.compile(
    r"\b(?:bullets?|bullet points|concise|succinct|brief|step[- ]by[- ]step|tables?|markdown|tl;?dr|fluff|"
    r"jargon|emojis?|answers?|responses?|replies|explanations?|to the point|examples)\b",
    re.IGNORECASE,
)
_HUMOUR_RE = re.compile(r"\b(?:lol|lmao|haha+|hehe|rofl)\b|😂|🤣|😅|😄", re.IGNORECASE)

_DEV_TOOLS = {"Docker", "Kubernetes", "Terraform", "Git", "VS Code", "Neovim", "Vim", "Emacs", "JetBrains", "Cursor",
              "Jupyter", "Postman"}
_CREATIVE_TOOLS = {"Figma", "Photoshop", "Illustrator", "Canva", "Blender", "Ableton", "Logic Pro", "Final Cut",
                   "Premiere", "Lightroom"}

_ASSISTANT_NAMES = ["Sage", "Nova", "Atlas", "Juniper", "Wren", "Orion", "Lumen", "Quill", "Ember", "Pilot",
                    "Marlow", "Iris"]


def _hash_int(*parts: str) -> int:
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12], 16)


def _iso_date(v: Any) -> str:
    if isinstance(v, (int, float)):
        return datetime.fromtimestamp(v, tz=timezone.utc).strftime("%Y-%m-%d")
    return str(v)[:10] if v else ""


def _find_tools(text: str) -> dict[str, list[str]]:
    counts: dict[str, Counter[str]] = {"tool": Counter(), "stack": Counter(), "platform": Counter()}
    order: dict[str, int] = {}
    for name, rx, kind in _VOCAB_RES:
        hits = rx.findall(text)
        if hits:
            counts[kind][name] += len(hits)
            order.setdefault(name, len(order))
    # Most mentioned first; ties by vocabulary order so output is stable.
    return {k: [n for n, _ in sorted(c.items(), key=lambda kv: (-kv[1], order[kv[0]]))] for k, c in counts.items()}


# --------------------------------------------------------------------------- quick_sections


@offline_task("quick_sections")
def quick_sections(payload: Mapping[str, Any]) -> dict[str, Any]:
    profile = payload.get("profile") or {}
    samples = list(payload.get("samples") or [])
    user_id = str(payload.get("user_id") or "")

    # Sources, in the order they are trusted: what the person wrote about
    # themselves, their previous assistant's saved memory, their chat turns.
    own: list[str] = [t for t in (profile.get("user_profile"), profile.get("user_instructions")) if t]
    memory: list[str] = [m for m in profile.get("saved_memory") or () if m]
    turns: list[tuple[str, str]] = []  # (text, date)
    for s in samples:
        text = user_text(str(s.get("excerpt") or ""))
        if text.strip():
            turns.append((text, _iso_date(s.get("created_at"))))
    everything = "\n".join(own + memory + [t for t, _ in turns])
    sentences = _sentences(everything)

    # -- name: most frequent candidate; self-stated beats memory by order
    names: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    for rx in _NAME_PATTERNS:
        for m in rx.finditer(everything):
            cand = m.group(1).strip()
            if cand.split()[0].lower() in _STOP_NAMES:
                continue
            names[cand] += 1
            first_seen.setdefault(cand, m.start())
    name = min(names, key=lambda n: (-names[n], first_seen[n])) if names else ""
    # "Priya" from saved memory and "Priya Sharma" from a chat are one person: keep the full form.
    fuller = [n for n in names if n.startswith(name + " ")] if name else []
    if fuller:
        name = max(fuller, key=lambda n: names[n])

    # -- work
    work: list[str] = []
    for m in _IM_A_RE.finditer(everything):
        role = _clean(m.group(1))
        work.append(f"{role} at {_clean(m.group(2))}" if m.group(2) else role)
    for rx in _WORK_PATTERNS:
        for m in rx.finditer(everything):
            prep, what = (m.group(1) or "").lower(), _clean(m.group(2))
            if not what:
                continue
            work.append({"at": f"works at {what}", "for": f"works for {what}", "in": f"works in {what}",
                         "on": f"works on {what}"}.get(prep, what))
    work = _dedup(work, 6)

    # -- places
    places: list[str] = []
    for rx in _PLACE_PATTERNS:
        for m in rx.finditer(everything):
            place = _clean(m.group(1), 60).rstrip(".")
            words = place.split()
            if words and words[0] not in _NOT_PLACES:
                places.append(place)
    places = _dedup(places, 8)
    # "Lisbon" adds nothing next to "Lisbon, Portugal".
    places = [p for p in places if not any(o != p and o.startswith(p + ",") for o in places)][:5]

    # -- tools
    found = _find_tools(everything)

    # -- preferences, interests, plans, decisions, relationships, dates
    formats: list[str] = []
    avoid: list[str] = []
    interests: list[str] = []
    for m in _PREF_RE.finditer(everything):
        verb, what = m.group(1).lower(), _clean(m.group(2))
        negative = verb in ("hate", "dislike", "don't like", "do not like", "can't stand", "cannot stand",
                            "don't want", "do not want")
        if _FORMAT_WORDS.search(what):
            # "I prefer bullet points" / "I hate long answers": how to write for them.
            (avoid if negative else formats).append(f"Avoid {what}" if negative else f"Prefers {what}")
        elif negative:
            avoid.append(f"Dislikes {what}")
        elif verb in ("love", "enjoy", "adore", "like"):
            interests.append(what)
        else:
            formats.append(f"Prefers {what}")
    for rx in (_INTO_RE, _HOBBY_RE):
        interests.extend(_clean(m.group(1)) for m in rx.finditer(everything))
    goals = _dedup((_clean(m.group(1)) for m in _PLAN_RE.finditer(everything)), 8)
    decisions = _dedup((f"Decided {(m.group(1) or '').strip() + ' ' if m.group(1) else ''}{_clean(m.group(2))}"
                        for m in _DECISION_RE.finditer(everything)), 6)
    relationships: list[str] = []
    for m in _REL_RE.finditer(everything):
        who = m.group(1).lower()
        relationships.append(f"{who} ({m.group(2)})" if m.group(2) and m.group(2) != name else who)
    relationships = _dedup(relationships, 8)
    dated: list[str] = []
    for sent in sentences:
        dm = _DATE_RE.search(sent)
        if dm:
            dated.append(_clean(sent, 160))
    dated = _dedup(dated, 5)

    # Profile instructions are the person's own words about format: keep them verbatim.
    instructions = _sentences(str(profile.get("user_instructions") or ""))
    formats = _dedup(formats + [_clean(s, 160) for s in instructions], 8)
    avoid = _dedup(avoid, 6)
    interests = _dedup(interests, 8)

    # -- character signals
    all_tools = found["stack"] + found["tool"] + found["platform"]
    # What they do outranks what they mention: a designer who is learning
    # TypeScript still wants a creative collaborator.
    role_technical = any(re.search(r"engineer|developer|programmer|scientist|analyst|devops|sre\b", w,
                                   re.IGNORECASE) for w in work)
    role_creative = any(re.search(r"design|artist|writer|author|music|photograph|film|illustrat|animat|editor",
                                  w, re.IGNORECASE) for w in work)
    dev_signal = len(found["stack"]) + sum(t in _DEV_TOOLS for t in found["tool"])
    creative_signal = sum(t in _CREATIVE_TOOLS for t in found["tool"])
    if role_technical or role_creative:
        technical = role_technical
        creative = role_creative and not role_technical
    else:
        technical = dev_signal >= 2 and dev_signal >= creative_signal
        creative = not technical and creative_signal >= 1
    playful = len(_HUMOUR_RE.findall(everything)) >= 2
    user_words = sum(len(t.split()) for t, _ in turns)
    terse = bool(turns) and user_words / max(1, len(turns)) < 60

    if technical:
        archetype, vibe, emoji = ("pair programmer", "A calm, precise collaborator who reads the code before "
                                  "talking and gets to the point.", "🛠️")
        tone = ["direct", "precise", "calm"]
    elif creative:
        archetype, vibe, emoji = ("creative collaborator", "An encouraging, curious partner who riffs on ideas "
                                  "and respects the person's taste.", "🎨")
        tone = ["warm", "curious", "encouraging"]
    else:
        archetype, vibe, emoji = ("thoughtful companion", "A steady, attentive helper who remembers what matters "
                                  "and keeps things practical.", "🌿")
        tone = ["warm", "clear", "practical"]
    style = ["Lead with the answer, then the detail"]
    style.append("Keep replies short; expand only when asked" if terse else "Match the depth of the question")
    if technical:
        style.append("Use code blocks and concrete commands; name versions and trade-offs")
    humour = ("Light and playful; a joke is welcome when the moment allows" if playful
              else "Dry and sparing; never at the expense of clarity")

    assistant_name = _ASSISTANT_NAMES[_hash_int(user_id or name or "anon") % len(_ASSISTANT_NAMES)]
    if assistant_name == name:
        assistant_name = _ASSISTANT_NAMES[(_hash_int(user_id or name) + 1) % len(_ASSISTANT_NAMES)]

    who = name or "They"
    summary_bits = [f"{who} — {work[0]}" if work else ""]
    if places:
        summary_bits.append(f"based in {places[0]}")
    user_summary = (", ".join(b for b in summary_bits if b) + ".") if any(summary_bits) else ""
    if user_summary.startswith("based"):
        user_summary = f"{who} is {user_summary}"
    if found["stack"] or found["tool"]:
        user_summary += f" Often works with {', '.join((found['stack'] + found['tool'])[:4])}."
    user_summary = user_summary.strip()

    context = _dedup(decisions + dated + [_clean(m, 160) for m in memory], 8)

    ask_about: list[str] = []
    if not name:
        ask_about.append("Their name and what they like to be called")
    if not work:
        ask_about.append("What they do for work")
    if not places:
        ask_about.append("Where they are based (for time zones and local context)")
    if not formats:
        ask_about.append("How long and how structured they like answers")

    workflows = []
    if "Git" in all_tools or "GitHub" in all_tools or "GitLab" in all_tools:
        workflows.append("Version control with Git")
    if "Docker" in all_tools or "Kubernetes" in all_tools:
        workflows.append("Containerised development and deployment")
    if "Notion" in all_tools or "Obsidian" in all_tools:
        workflows.append("Keeps notes and plans in " + " / ".join(t for t in ("Notion", "Obsidian") if t in all_tools))
    if "Jupyter" in all_tools or "pandas" in all_tools:
        workflows.append("Exploratory data work in notebooks")

    subject = name or "this person"
    return {
        "soul": {
            "summary": f"You are {assistant_name}, {subject}'s {archetype}. You are {', '.join(tone)}, and you "
                       f"build on what you know about them instead of starting from scratch.",
            "tone": tone,
            "style": style,
            "humour": humour,
            "values": _dedup(["Honesty over flattery: say when something will not work",
                              "Respect their time",
                              "Their goals come first" + (f": {goals[0]}" if goals else "")], 5),
            "boundaries": ["Never invent facts about them; ask when unsure",
                           "Keep personal details private and out of shared content",
                           "No unsolicited lecturing or moralising"],
        },
        "identity": {
            "name": assistant_name,
            "archetype": archetype,
            "vibe": vibe,
            "emoji": emoji,
            "rationale": (f"Chosen from the signals in their conversations ({'technical' if technical else 'creative' if creative else 'everyday'} "
                          f"topics, {'terse' if terse else 'conversational'} messages)."),
        },
        "user": {
            "name": name,
            "summary": user_summary,
            "work": work,
            "locations": places,
            "interests": interests,
            "relationships": relationships,
            "goals": goals,
            "context": context,
        },
        "agents": {
            "response_formats": formats,
            "task_handling": _dedup(
                (["Show working code, then explain briefly"] if technical else [])
                + ["Do the task when the request is clear; ask one question when it is not",
                   "Build on earlier conversations rather than repeating basics"], 5),
            "remember": _dedup(goals[:3] + decisions[:3] + dated[:2], 8),
            "ask_about": ask_about,
            "avoid": avoid,
        },
        "tools": {
            "tools": found["tool"][:12],
            "stack": found["stack"][:12],
            "platforms": found["platform"][:10],
            "workflows": workflows,
        },
    }


# --------------------------------------------------------------------------- full pass: facts, reduce_facts,
# memory, sections_v2.

_PROJECT_RE = re.compile(
    r"\b(?:I'm|I am|I've been|I have been|we're|we are|we've been)\s+(?:currently\s+|now\s+|still\s+)?"
    r"(working on|building|developing|writing|making|creating|designing|launching)\s+([^.!?\n]{3,140})",
    re.IGNORECASE,
)
_MY_PROJECT_RE = re.compile(
    r"\bmy (?:side |pet |current |new |personal )?project(?: is)?(?: called| named)?,?\s+([^.!?\n]{3,140})",
    re.IGNORECASE,
)
_BELIEF_RE = re.compile(
    r"\bI\s+(?:really\s+|strongly\s+|firmly\s+|honestly\s+|genuinely\s+)?"
    r"(believe|think that|feel that|value|am convinced that)\s+([^.!?\n]{3,140})",
    re.IGNORECASE,
)
_DECIDED_RE = re.compile(
    r"\b(?:I|we)\s+(?:have\s+|'ve\s+|finally\s+|just\s+)?(decided|chose|chosen|picked|settled on|went with|opted)\s+"
    r"(to\s+|on\s+|for\s+)?([^.!?\n]{3,140})",
    re.IGNORECASE,
)
_GOING_WITH_RE = re.compile(r"\b(?:we're|we are|I'm|I am)\s+going\s+(?:with|for)\s+([^.!?\n]{2,140})",
                            re.IGNORECASE)
_MONTH_NUMBERS = {m: i for i, names in enumerate(
    (("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
     ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
     ("dec", "december")), 1) for m in names}
_PRONOUNS = [(re.compile(r"\bI'm\b"), "they're"), (re.compile(r"\bI am\b"), "they are"),
             (re.compile(r"\bI've\b"), "they've"), (re.compile(r"\bI\b"), "they"),
             (re.compile(r"\b[Mm]y\b"), "their"), (re.compile(r"\b[Mm]ine\b"), "theirs"),
             (re.compile(r"\b[Mm]e\b"), "them"), (re.compile(r"\b[Mm]yself\b"), "themselves")]
_KEY_STOP = frozenset("a an the my our their they to of for with and or in on at it this that these those some any "
                      "really very more most much so just s is are was were be will would".split())
_PREF_VERBS = {"prefer": "Prefers", "like": "Likes", "love": "Loves", "enjoy": "Enjoys", "adore": "Adores"}


def _third(fragment: str) -> str:
    """First person to third, enough for the rules' short fragments."""
    for rx, repl in _PRONOUNS:
        fragment = rx.sub(repl, fragment)
    return fragment


def _keywords(text: str, n: int = 3) -> str:
    words = [w for w in re.findall(r"[^\W_]+", text.lower()) if w not in _KEY_STOP]
    return " ".join(words[:n])


def _sentence_case(s: str) -> str:
    s = s.strip()
    return (s[0].upper() + s[1:]) if s else s


def _as_fact(text: str) -> str:
    text = _sentence_case(" ".join(text.split()))
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def _iso_of(m: re.Match[str], year_hint: int | None) -> str | None:
    """ISO date of a _DATE_RE match; the chunk's year when the text gives none."""
    if m.group(1):
        return m.group(1)
    raw = (m.group(2) or m.group(3) or "").replace(",", " ").replace(".", " ")
    words = raw.split()
    month = next((_MONTH_NUMBERS[w.lower()] for w in words if w.lower() in _MONTH_NUMBERS), None)
    day = next((int(re.sub(r"\D", "", w)) for w in words if re.fullmatch(r"\d{1,2}(?:st|nd|rd|th)?", w)), None)
    year = next((int(w) for w in words if re.fullmatch(r"\d{4}", w)), year_hint)
    if month is None or day is None or year is None or not 1 <= day <= 31:
        return None
    return f"{year:04d}-{month:02d}-{day:02d}"


def _project_name(what: str) -> str | None:
    """The first capitalised name in a project phrase ("a photo app called Harbor" -> "Harbor")."""
    m = re.search(r"\b(?:called|named)\s+([A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)*)", what)
    if m:
        return m.group(1)
    for m in re.finditer(r"\b([A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)*)", what):
        if m.start() > 0 or m.group(1).split()[0] not in ("A", "An", "The", "My", "Our", "This", "That"):
            return m.group(1)
    return None


_FIRST_PERSON_RE = re.compile(r"\b(I|I'm|I've|I'll|we|we're|my|our)\b", re.IGNORECASE)
_LOG_LINE_RE = re.compile(r"\d{2}:\d{2}:\d{2}|\b(INFO|DEBUG|WARNING|ERROR)\b|^(Subject|From|To):|\w+=\S+")


def _facts_of_chunk(ref: str, content: str, message_time: Any) -> list[dict[str, Any]]:
    year_hint = None
    if isinstance(message_time, (int, float)) and not isinstance(message_time, bool):
        year_hint = datetime.fromtimestamp(message_time, tz=timezone.utc).year
    facts: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(category: str, text: str, subject: str, **extra: str | None) -> None:
        text = _as_fact(text)
        if len(text) < 8 or text.lower() in seen:
            return
        seen.add(text.lower())
        fact: dict[str, Any] = {"chunk": ref, "category": category, "text": text,
                                "subject": subject.strip() or _keywords(text, 4) or "misc"}
        fact.update({k: v for k, v in extra.items() if v})  # optional fields only when known
        facts.append(fact)

    # Only the person's own lines are evidence ("Conversation:" headers and
    # assistant turns are not).
    for sent in _sentences(user_text(content)):
        for m in _PREF_RE.finditer(sent):
            verb, what = m.group(1).lower(), _third(_clean(m.group(2)))
            if verb in _PREF_VERBS:
                kind = "prefers" if verb == "prefer" else "likes"
                add("preferences", f"{_PREF_VERBS[verb]} {what}", f"{kind}: {_keywords(what)}")
            elif verb in ("don't want", "do not want"):
                add("preferences", f"Does not want {what}", f"dislikes: {_keywords(what)}")
            else:
                add("preferences", f"Dislikes {what}", f"dislikes: {_keywords(what)}")
        for m in _PROJECT_RE.finditer(sent):
            what = _third(_clean(m.group(2)))
            name = _project_name(what)
            add("projects", f"Is {m.group(1).lower()} {what}", f"project: {(name or _keywords(what)).lower()}",
                project=name)
        for m in _MY_PROJECT_RE.finditer(sent):
            what = _third(_clean(m.group(1)))
            name = _project_name(what)
            add("projects", f"Has a project: {what}", f"project: {(name or _keywords(what)).lower()}", project=name)
        # Pasted logs and e-mails are full of dates that say nothing about the
        # person: only short prose sentences count (or first-person long ones).
        dated = not _LOG_LINE_RE.search(sent) and (len(sent) <= 120 or (
            len(sent) <= 240 and _FIRST_PERSON_RE.search(sent)))
        for m in (_DATE_RE.finditer(sent) if dated else ()):
            iso = _iso_of(m, year_hint)
            rest = (sent[: m.start()] + sent[m.end():])
            add("dates", f"Noted {iso or m.group(0).strip()}: {_third(_clean(sent, 200))}",
                f"date: {_keywords(rest, 4)}", date=iso)
        for m in _BELIEF_RE.finditer(sent):
            verb = m.group(1).lower()
            lead = {"believe": "Believes", "think that": "Thinks that", "feel that": "Feels that",
                    "value": "Values", "am convinced that": "Is convinced that"}[verb]
            what = _third(_clean(m.group(2)))
            add("beliefs", f"{lead} {what}", f"belief: {_keywords(what, 4)}")
        for m in _DECIDED_RE.finditer(sent):
            verb = {"chosen": "chose"}.get(m.group(1).lower(), m.group(1).lower())
            what = _third(_clean(m.group(3)))
            add("decisions", f"{verb.capitalize()} {(m.group(2) or '').strip()} {what}".replace("  ", " "),
                f"decision: {_keywords(what, 4)}")
        for m in _GOING_WITH_RE.finditer(sent):
            what = _third(_clean(m.group(1)))
            add("decisions", f"Is going with {what}", f"decision: {_keywords(what, 4)}")
    return facts[:40]


@offline_task("facts")
def extract_facts(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Rule-based facts from each chunk's "User:" lines, attributed to the chunk's ref."""
    out: list[dict[str, Any]] = []
    for i, chunk in enumerate(payload.get("chunks") or (), 1):
        ref = str(chunk.get("ref") or f"c{i}")
        out.extend(_facts_of_chunk(ref, str(chunk.get("content") or ""), chunk.get("message_time")))
    return {"facts": out}


@offline_task("reduce_facts")
def reduce_facts(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Merge facts whose subjects share a head ("harbor: database", "harbor: launch date"
    -> "harbor") within a category; texts are joined, newest first, so nothing is lost."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for f in payload.get("facts") or ():
        head = str(f.get("subject") or "").split(":")[0].strip() or str(f.get("subject") or "")
        groups.setdefault((str(f.get("category") or ""), head), []).append(f)
    out: list[dict[str, Any]] = []
    for (category, head), members in groups.items():
        if len(members) < 2:
            continue
        ordered = sorted(members, key=lambda f: (-(f.get("last_seen") or 0.0), int(f.get("index") or 0)))
        texts = _dedup((str(f.get("text") or "").strip().rstrip(".") for f in ordered), limit=len(ordered))
        text = "; ".join(texts) + "."
        if len(text) > 600:
            text = text[:599].rstrip() + "…"
        merged: dict[str, Any] = {"merged_from": sorted(int(f.get("index") or 0) for f in members),
                                  "category": category, "subject": head, "text": text}
        for k in ("date", "project"):
            v = next((f.get(k) for f in ordered if f.get(k)), None)
            if v:
                merged[k] = str(v)
        out.append(merged)
    return {"facts": out}


@offline_task("memory")
def write_memory(payload: Mapping[str, Any]) -> dict[str, Any]:
    """MEMORY bullets straight from the consolidated facts, dated."""
    facts = [ConsolidatedFact.from_dict(f) for f in payload.get("facts") or () if isinstance(f, Mapping)]
    return {"sections": memory_sections_from_facts(facts)}


@offline_task("sections_v2")
def sections_v2(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The quick pass's rules over the sample, reading MEMORY as saved memory.

    MEMORY is written next to the sections (domain/memory_doc.py drops any
    bullet that repeats it), so its bullets are not copied in: read as a
    previous assistant's saved memory, they let the rules find the places,
    work and tools they mention. Context stays the sample's own, since the
    rules file every saved-memory line there.
    """
    mem = memory_statements(str(payload.get("memory") or ""))
    profile = dict(payload.get("profile") or {})
    profile["saved_memory"] = list(profile.get("saved_memory") or []) + [b for v in mem.values() for b in v][:60]
    base = quick_sections({**payload, "profile": profile})
    base["user"]["context"] = quick_sections(payload)["user"]["context"]
    return base


@offline_task("answer")
def answer(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The passages' sentences and MEMORY bullets that share the most words with the question,
    cited by passage number and labelled as an offline extractive answer."""
    return extractive_answer(str(payload.get("question") or ""), list(payload.get("passages") or ()),
                             str(payload.get("memory") or ""))
