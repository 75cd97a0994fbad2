"""The table of stages: what state each stage works in, the state it moves on from,
the event that starts it, the topic that event travels on (with its key), and
the lane (consumer group) whose agent consumes it.

Agents send what the state machine (services/db/jobs.py) tells them to through
``route``; the reconciler re-drives a stalled stage by rolling it back to
``after`` and sending its ``trigger`` again. Nothing else maps stages to topics.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Callable

from soulprint.models import events
from soulprint.models.jobs import EmbeddingStatus, FullPassStage, JobStatus, QuickStatus
from soulprint.topics import (
    CHUNKS,
    CONSOLIDATED,
    CONVERSATIONS,
    FACTS,
    IMPORTS,
    MEMORY,
    NOTICES,
    QUICK,
    SECTIONS,
    TopicSpec,
    conversation_key,
)


def _by_user(e) -> str:
    return e.user_id


def _by_job(e) -> str:
    return e.job_id


def _by_conversation(e) -> str:
    return conversation_key(e.user_id, e.conversation_id)


# Lanes. faust hands one app's fetched messages to all of its agents through
# one conductor, in order: a stage whose queue is full (the chunker during a
# large import) holds back every other agent of the same app. So each stage a
# person waits on gets an app, and with it a consumer group, of its own; only
# bulk work shares one.
class Lane(StrEnum):
    BULK = "bulk"            # chunking: minutes of work per large export (the app id's own group)
    INGEST = "ingest"        # the parse: the start of quick_ready for every import
    QUICK = "quick"          # the quick pass: one LLM call between the parse and quick_ready
    FACTS = "facts"          # fact extraction: must be fed while the chunker is busy
    FULL_PASS = "full-pass"  # consolidation, MEMORY, v2 sections: one event per job each
    EMBED = "embed"          # embedding: its own group on `chunks`, never behind fact extraction
    QUERY = "query"          # the query service's view (`sections`, `memory`): no stage, its own group
    NOTIFY = "notify"        # webhooks (`notices`): no stage, its own group, never behind the pipeline


@dataclass(frozen=True)
class Stage:
    state: str                    # the job's state while this stage works
    after: str                    # the state it moves on from
    trigger: type                 # the event that starts it
    topic: TopicSpec              # where that event travels
    key: Callable[[object], str]  # its key on that topic
    lane: Lane                    # the consumer group of the agent that consumes it


STAGES = (
    Stage(JobStatus.PARSING, JobStatus.QUEUED, events.ImportRequested, IMPORTS, _by_user, Lane.INGEST),
    Stage(JobStatus.CHUNKING, JobStatus.PARSING, events.ConversationImported, CONVERSATIONS, _by_conversation, Lane.BULK),
    Stage(QuickStatus.RUNNING, QuickStatus.PENDING, events.QuickPassRequested, QUICK, _by_user, Lane.QUICK),
    Stage(FullPassStage.FACTS, JobStatus.COMPLETE, events.ConversationChunked, CHUNKS, _by_conversation, Lane.FACTS),
    # A second consumer group on `chunks`: the same events as the facts stage,
    # each group at its own pace.
    Stage(EmbeddingStatus.PROCESSING, EmbeddingStatus.PENDING, events.ConversationChunked, CHUNKS,
          _by_conversation, Lane.EMBED),
    Stage(FullPassStage.CONSOLIDATING, FullPassStage.FACTS, events.FactsExtracted, FACTS, _by_job, Lane.FULL_PASS),
    Stage(FullPassStage.MEMORY, FullPassStage.CONSOLIDATING, events.FactsConsolidated, CONSOLIDATED, _by_job,
          Lane.FULL_PASS),
    Stage(FullPassStage.SECTIONS, FullPassStage.MEMORY, events.MemoryWritten, MEMORY, _by_job, Lane.FULL_PASS),
)

# Events that start no stage of their own: the end of an export (counted by
# the chunker), the small conversations of a job ready to be packed (the facts
# stage's second trigger) and a published soulprint version (for the query service).
_OUTPUTS = {
    events.IngestCompleted: (CONVERSATIONS, _by_job),
    events.SmallConversationsReady: (CHUNKS, _by_job),  # the facts stage packs the job's small conversations
    events.SectionsPublished: (SECTIONS, _by_user),
    events.JobNotice: (NOTICES, _by_user),
}

_ROUTES = {s.trigger: (s.topic, s.key) for s in STAGES} | _OUTPUTS
_BY_STATE = {s.state: s for s in STAGES}


def stage(state: str) -> Stage:
    return _BY_STATE[state]


def route(event) -> tuple[TopicSpec, str]:
    """The topic an event goes to, and its key there."""
    topic, key = _ROUTES[type(event)]
    return topic, key(event)
