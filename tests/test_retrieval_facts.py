"""Fact search: consolidated facts of the person's current import, ranked, with the messages they came from."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from soulprint.models.facts import ConsolidatedFact, consolidated_key

WHEN = datetime(2024, 5, 2, 9, 30, tzinfo=timezone.utc)


async def _person_with_facts(db, user: str, facts: list[ConsolidatedFact], chunk_id: str) -> str:
    job = f"job-{user}"
    await db.pool.execute("INSERT INTO import_jobs (job_id, user_id, source_uri, status) VALUES ($1, $2, 't', 'complete')",
                          job, user)
    await db.pool.execute("INSERT INTO people (user_id, current_job_id) VALUES ($1, $2)", user, job)
    await db.pool.execute(
        "INSERT INTO conversation_chunks (chunk_id, user_id, job_id, conversation_id, conversation_title, tier,"
        " chunk_index, content, token_count, message_ids, message_at)"
        " VALUES ($1, $2, $3, 'conv-1', 'Pipeline plans', 'medium', 0, 'x', 1, ARRAY['m1', 'm2'], $4)",
        uuid.UUID(chunk_id), user, job, WHEN)
    await db.pool.executemany(
        "INSERT INTO consolidated_facts (job_id, user_id, key, category, position, fact) VALUES ($1, $2, $3, $4, $5, $6)",
        [(job, user, f.key, f.category, i, f.to_dict()) for i, f in enumerate(facts)])
    return job


def _fact(category: str, subject: str, text: str, mentions: int, chunk_id: str) -> ConsolidatedFact:
    return ConsolidatedFact(key=consolidated_key(category, subject), category=category, text=text, subject=subject,
                            date="2024-05", mentions=mentions, first_seen=WHEN.timestamp() - 86400,
                            last_seen=WHEN.timestamp(),
                            sources=[{"chunk_id": chunk_id, "conversation_id": "conv-1", "message_ids": ["m2"]}])


async def test_facts_are_found_by_words_with_their_sources_and_only_the_persons_own(db):
    tag = uuid.uuid4().hex[:8]
    me, other = f"facts-me-{tag}", f"facts-other-{tag}"
    chunk = str(uuid.uuid4())
    mine = [_fact("decisions", "pipeline: orchestrator", "Decided to move the pipeline to Dagster", 3, chunk),
            _fact("projects", "harbor", "Works on the Harbor pipeline migration", 1, chunk),
            _fact("preferences", "coffee", "Drinks oat flat whites", 5, chunk)]
    await _person_with_facts(db, me, mine, chunk)
    await _person_with_facts(db, other, [_fact("decisions", "pipeline", "Moving the pipeline to Airflow", 9,
                                               str(uuid.uuid4()))], str(uuid.uuid4()))
    async with db.pool.acquire() as conn:
        found = await db.search.facts(conn, me, "where is the pipeline moving?", 10)
        everything = await db.search.facts(conn, me, None)
        nothing = await db.search.facts(conn, me, "the and of")
        nobody = await db.search.facts(conn, f"nobody-{tag}", "pipeline")
    assert [f.text for f in found] == ["Decided to move the pipeline to Dagster", "Works on the Harbor pipeline migration"]
    assert found[0].score > found[1].score > 0  # more of the query's words, and said in more conversations
    body = found[0].to_json()
    assert body["category"] == "decisions" and body["mentions"] == 3 and body["event_date"] == "2024-05"
    assert body["first_seen"] == "2024-05-01T09:30:00+00:00" and body["last_seen"] == "2024-05-02T09:30:00+00:00"
    assert body["sources"] == [{"conversation_id": "conv-1", "title": "Pipeline plans", "message_ids": ["m2"],
                                "message_at": "2024-05-02T09:30:00+00:00"}]
    assert set(body) == {"fact_id", "category", "subject", "text", "first_seen", "last_seen", "event_date",
                         "mentions", "sources", "score"}
    assert [f.category for f in everything] == ["decisions", "preferences", "projects"]  # by category, all mine
    assert nothing == [] and nobody == []
