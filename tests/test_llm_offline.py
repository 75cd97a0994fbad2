"""Offline provider (rules over the payload) and the Sections model."""

from __future__ import annotations

import copy

from pydantic import BaseModel

from soulprint.domain.prompts import PROMPTS
from soulprint.domain.prompts.quick_sections import QUICK_SECTIONS, quick_sections_request, render_quick_sections
from soulprint.models.llm import LLMRequest
from soulprint.models.sections import OFFLINE_NOTE, SECTIONS_SCHEMA, Sections, SectionsAnswer, Soul, User
from soulprint.services.llm.accounting import MemoryUsageSink
from soulprint.services.llm.config import LLMConfig
from soulprint.services.llm.factory import build_llm_client, choose_provider
from soulprint.services.llm.offline_provider import OFFLINE_TASKS, OfflineClient, user_text
from support.fixtures_llm import valid

PAYLOAD = {
    "user_id": "user-7",
    "profile": {
        "user_profile": "I'm a product designer at Northwind Labs.",
        "user_instructions": "Keep answers short. Use bullet points.",
        "saved_memory": ["User's name is Maya.", "Has a cat named Biscuit."],
    },
    "samples": [
        {"title": "Portfolio site", "created_at": 1704067200,
         "excerpt": ("User: Hi! My name is Maya Chen. I live in Toronto, Canada and I work at Northwind Labs.\n"
                     "Assistant: Nice to meet you, Maya. I love Rust and Kubernetes.\n"
                     "User: I use Figma and Notion every day, and I'm learning TypeScript with VS Code.\n"
                     "I prefer concise answers with examples. I hate long preambles.")},
        {"title": "Plans", "created_at": "2024-03-10T09:00:00Z",
         "excerpt": ("User: I'm planning to launch my portfolio on 2024-05-01. We decided to host it on Vercel. "
                     "My goal is to freelance by next year. My partner Sam thinks I should. haha. "
                     "I love hiking and film photography lol")},
    ],
}


async def run(payload=PAYLOAD):
    client = OfflineClient()
    return await client.complete(quick_sections_request(payload, job_id="j"))


async def test_offline_is_labelled_and_validates():
    res = await run()
    assert res.ok, res.error
    assert res.offline and res.provider == "offline" and res.usage.cost_usd == 0 and res.usage.requests == 0
    assert valid(SectionsAnswer, res.data) and res.answer is not None
    sections = Sections.from_result(res)
    assert sections.offline
    text = sections.soulprint_text()
    assert text.count(OFFLINE_NOTE) == 5


async def test_offline_is_deterministic():
    a, b = await run(), await run(copy.deepcopy(PAYLOAD))
    assert a.data == b.data


async def test_offline_extracts_the_person():
    data = (await run()).data
    user, tools = data["user"], data["tools"]
    assert user["name"] == "Maya Chen"
    assert any("designer" in w for w in user["work"])
    assert any("Northwind Labs" in w for w in user["work"])
    assert "Toronto, Canada" in user["locations"]
    assert {"Figma", "Notion", "VS Code"} <= set(tools["tools"])
    assert "TypeScript" in tools["stack"]
    assert "Vercel" in tools["platforms"]
    # The assistant's lines are not evidence about the person.
    assert "Rust" not in tools["stack"] and "Kubernetes" not in tools["tools"]
    assert any("launch my portfolio" in g for g in user["goals"])
    assert any("freelance" in g for g in user["goals"])
    assert any(c.startswith("Decided to host it on Vercel") for c in user["context"])
    assert any("2024-05-01" in c for c in user["context"])
    assert "partner (Sam)" in user["relationships"]
    assert any("hiking" in i for i in user["interests"])
    agents = data["agents"]
    assert any("concise answers" in f for f in agents["response_formats"])
    assert "Use bullet points." in agents["response_formats"]
    assert any("long preambles" in a for a in agents["avoid"])
    assert data["identity"]["name"] and data["identity"]["name"] != user["name"]
    assert data["identity"]["archetype"] == "creative collaborator"
    assert "playful" in data["soul"]["humour"].lower()


async def test_offline_with_an_empty_payload_still_validates():
    res = await run({"user_id": "u", "samples": [], "profile": {}})
    assert res.ok
    assert res.data["user"]["name"] == ""
    assert "Their name and what they like to be called" in res.data["agents"]["ask_about"]


async def test_unknown_task_is_a_contained_failure():
    sink = MemoryUsageSink()
    res = await OfflineClient(sink=sink).complete(LLMRequest(task="no_such_task", system="", messages=[]))
    assert not res.ok and res.error_kind == "api" and res.offline
    assert sink.calls == 1


async def test_registry_accepts_new_tasks():
    tasks = dict(OFFLINE_TASKS)
    tasks["echo"] = lambda payload: {"value": payload["x"]}
    client = OfflineClient(tasks=tasks)

    class Echo(BaseModel):
        value: str

    ok = await client.complete(LLMRequest(task="echo", system="", messages=[], answer=Echo, payload={"x": "hi"}))
    bad = await client.complete(LLMRequest(task="echo", system="", messages=[], answer=Echo, payload={"x": 3}))
    assert ok.ok and ok.data == {"value": "hi"} and ok.answer == Echo(value="hi")
    assert not bad.ok and bad.error_kind == "schema"


def test_user_text_keeps_only_user_turns():
    assert user_text("User: a\nAssistant: b\nmore b\nUser: c") == "a\nc"
    assert user_text("no prefixes at all") == "no prefixes at all"


async def test_factory_defaults_to_offline_without_key():
    # Reading these from the environment is settings.py's job (tests/test_settings.py).
    cfg = LLMConfig()
    assert cfg.api_key is None and choose_provider(cfg) == "offline"
    assert choose_provider(LLMConfig(api_key="k")) == "anthropic"
    assert choose_provider(LLMConfig(api_key="k", provider="offline")) == "offline"
    assert isinstance(build_llm_client(LLMConfig()), OfflineClient)


def test_sections_round_trip_and_render():
    s = Sections(soul=Soul(summary="Kind.", tone=["warm"]), user=User(name="Ada", work=["engineer"]))
    d = s.to_dict()
    assert Sections.from_dict(d) == s
    text = s.soulprint_text(memory="- likes tea")
    order = [text.index(h) for h in ("# SOUL", "# IDENTITY", "# USER", "# AGENTS", "# TOOLS", "# MEMORY")]
    assert order == sorted(order)
    assert OFFLINE_NOTE not in text
    assert "- **Name:** Ada" in text and "- engineer" in text
    # Tolerant reading: extra keys ignored, wrong shapes coerced, missing sections empty.
    loose = Sections.from_dict({"user": {"name": " Bo ", "work": "baker", "extra": 1}, "offline": True})
    assert loose.user.name == "Bo" and loose.user.work == ["baker"] and loose.offline and loose.tools.is_empty()


def test_sections_merge_unions_lists():
    a = Sections(user=User(name="Ada", interests=["tea", "chess"]))
    b = Sections(user=User(name="", interests=["chess", "go"]), offline=True)
    m = a.merge(b)
    assert m.user.name == "Ada" and m.user.interests == ["tea", "chess", "go"] and m.offline


def test_schema_requires_all_sections():
    assert SECTIONS_SCHEMA["required"] == ["soul", "identity", "user", "agents", "tools"]
    assert not valid(SectionsAnswer, {})


def test_prompt_rendering():
    user = render_quick_sections({**PAYLOAD, "part": [1, 2]})
    assert "record_soulprint_sections" in QUICK_SECTIONS.system
    assert '<conversation index="1" title="Portfolio site" date="2024-01-01">' in user
    assert "part 1 of 2" in user and "User's name is Maya." in user
    assert set(PROMPTS) == {"quick_sections", "facts", "reduce_facts", "memory", "sections_v2", "answer"}
