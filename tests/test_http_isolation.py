"""Isolation through every HTTP endpoint: many people, random queries, zero foreign rows in any response.

Five people, each with an export of their own (own conversation and message
ids) written over one shared vocabulary, so that every query matches
everybody's history and only the person boundary keeps the others' rows out.
Each person's token then asks random questions of every endpoint; no
response may carry another person's chunk, conversation or message id.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from pathlib import Path

import httpx
import pytest

from soulprint.runtime import build_query_service
from support.pipeline import import_and_wait
from support.waiting import wait_until
from test_http import TIMEOUT, api_for, bearer, serve

PEOPLE = 5
T0 = 1_714_000_000.0
TOPICS = [
    ("Moving house", ["I am moving to {city} in the spring", "The flat in {city} has a small balcony",
                      "Packing the books takes forever"]),
    ("Work pipeline", ["We decided to move the pipeline to Dagster", "The nightly job failed again at {city} time",
                       "My manager {name} wants a demo on Friday"]),
    ("Cooking", ["I cooked a lentil soup with cumin", "{name} hates coriander", "Baking sourdough on Sundays"]),
    ("Running", ["Ran ten kilometres along the river in {city}", "My knee hurts after long runs",
                 "Signed up for the half marathon"]),
    ("Reading", ["Reading a novel about a lighthouse keeper", "{name} recommended a book on habits",
                 "I prefer paper books to e-readers"]),
]
CITIES = ["Lisbon", "Oslo", "Bergen", "Porto", "Ghent"]
NAMES = ["Ana", "Bjorn", "Chloe", "Dmitri", "Emeka"]
WORDS = sorted({w.strip(".,").lower() for _, lines in TOPICS for line in lines for w in line.split()
                if "{" not in w and len(w) > 3})


def message(mid: str, role: str, text: str, t: float, parent: str) -> dict:
    return {"id": mid, "parent": parent, "children": [], "message": {
        "id": mid, "author": {"role": role, "name": None, "metadata": {}}, "create_time": t, "update_time": None,
        "content": {"content_type": "text", "parts": [text]}, "status": "finished_successfully", "end_turn": None,
        "weight": 1.0, "metadata": {}, "recipient": "all"}}


def write_export(path: Path, tag: str, rng: random.Random) -> Path:
    """A ChatGPT export (one conversations.json) whose every id starts with ``tag``."""
    city, name = rng.choice(CITIES), rng.choice(NAMES)
    conversations = []
    for n, (title, lines) in enumerate(rng.sample(TOPICS, 4)):
        cid, t = f"{tag}-c{n}", T0 + n * 86_400
        mapping = {f"{tag}-r{n}": {"id": f"{tag}-r{n}", "message": None, "parent": None, "children": []}}
        parent = f"{tag}-r{n}"
        for i, line in enumerate(rng.sample(lines, len(lines)) * 2):
            mid = f"{tag}-m{n}-{i}"
            role = "user" if i % 2 == 0 else "assistant"
            text = line.format(city=city, name=name) if role == "user" else f"Noted: {line.format(city=city, name=name)}."
            mapping[mid] = message(mid, role, text, t + 60 * i, parent)
            mapping[parent]["children"].append(mid)
            parent = mid
        conversations.append({"title": title, "create_time": t, "update_time": t + 600, "mapping": mapping,
                              "moderation_results": [], "current_node": parent, "conversation_id": cid, "id": cid})
    path.write_text(json.dumps(conversations))
    return path


@pytest.fixture(scope="module")
async def people(runtime, tmp_path_factory):
    """[(user, token, tag)] once every person's import is complete and their soulprint is served."""
    root, rng = tmp_path_factory.mktemp("isolation"), random.Random(11)
    folks = []
    for n in range(PEOPLE):
        tag = uuid.uuid4().hex[:10]
        folks.append((f"iso-{tag}", tag, write_export(root / f"{tag}.json", tag, rng)))
    jobs = await asyncio.gather(*(import_and_wait(runtime, user, export) for user, _, export in folks))
    assert all(job.status == "complete" for job in jobs), [job.error for job in jobs]
    out = []
    for user, tag, _ in folks:
        _, token = await runtime.db.tokens.create(user, "isolation")
        out.append((user, token, tag))
    return out


@pytest.fixture(scope="module")
async def api(runtime):
    server = await serve(api_for(runtime, build_query_service(runtime)))
    yield server.url
    await server.stop()


async def foreign_ids(db, user: str) -> set[str]:
    """Every chunk and conversation id of everybody else that is not also this person's (two
    generated exports both have a conversation "c33"), as it appears in JSON: quoted, so that
    "c6" inside a chunk's uuid is no match (test-side, as the owner)."""
    rows = await db.pool.fetch(
        "(SELECT chunk_id::text AS id FROM conversation_chunks WHERE user_id <> $1"
        " UNION SELECT conversation_id FROM conversations WHERE user_id <> $1)"
        " EXCEPT (SELECT chunk_id::text FROM conversation_chunks WHERE user_id = $1"
        " UNION SELECT conversation_id FROM conversations WHERE user_id = $1)", user)
    return {f'"{r["id"]}"' for r in rows}


def requests_for(rng: random.Random, user: str) -> list[tuple[str, str, dict | None, dict | None]]:
    """(method, path, json, params): every endpoint once, with random words and filters."""
    words = " ".join(rng.sample(WORDS, 3))
    question = f"What did I say about {words}?"
    search = rng.choice([{}, {"tiers": ["micro"]}, {"include_facts": True}, {"expand_tokens": 500},
                         {"since": "2000-01-01T00:00:00Z", "k": 30}])
    chat = {"model": "soulprint", "messages": [{"role": "user", "content": "hello"},
                                               {"role": "assistant", "content": "hi"},
                                               {"role": "user", "content": question}],
            "user": "someone-else-entirely"}  # names nobody with a person's token
    return [
        ("POST", "/v1/search", {"query": words, "k": 20, **search}, None),
        ("POST", "/v1/query", {"message": question}, None),
        ("POST", "/v1/chat/completions", chat, None),
        ("POST", "/v1/chat/completions", {**chat, "stream": True}, None),
        ("GET", "/v1/facts", None, rng.choice([None, {"q": words}])),
        ("GET", "/v1/soulprint", None, None),
    ]


async def test_no_response_carries_another_persons_rows(api, runtime, people):
    rng = random.Random(5)
    async with httpx.AsyncClient(base_url=api, timeout=TIMEOUT) as client:
        for user, token, _ in people:
            await wait_until(lambda: client.get("/v1/soulprint", headers=bearer(token)),
                             lambda r: r.status_code == 200, limit_s=60, what=f"{user}'s soulprint view")
        answered = 0
        for round_ in range(3):
            for user, token, tag in people:
                foreign = await foreign_ids(runtime.db, user)
                others = [t for _, _, t in people if t != tag]
                for method, path, body, params in requests_for(rng, user):
                    r = await client.request(method, path, json=body, params=params, headers=bearer(token))
                    assert r.status_code == 200, (user, path, r.text)
                    text = r.text
                    leaked = [i for i in foreign if i in text] + [t for t in others if t in text]
                    assert not leaked, (user, path, body, leaked[:5])
                    answered += tag in text  # the person's own rows do come back
    assert answered >= 3 * PEOPLE * 4, "most responses carry the person's own ids: the check is not vacuous"
