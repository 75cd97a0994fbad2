"""The import job: its states as enums, and the typed record of one import_jobs row.

Transitions between these states live in one place, services/db/jobs.py;
which event starts each stage, and on which topic, in topics/stages.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Mapping


class JobStatus(StrEnum):
    """The import itself: read the export, then chunk every conversation."""

    QUEUED = "queued"
    PARSING = "parsing"
    CHUNKING = "chunking"
    COMPLETE = "complete"  # every conversation has its chunks: the person's current import
    FAILED = "failed"      # with error_code; 'superseded' when a newer import of the person replaced it


OPEN_STATUSES = (JobStatus.QUEUED, JobStatus.PARSING, JobStatus.CHUNKING)


class QuickStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    READY = "ready"  # version 1 of the soulprint is stored: chat can start
    FAILED = "failed"


class FullPassStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETE = "complete"
    FAILED = "failed"
    SKIPPED = "skipped"  # the export is too small for it


class FullPassStage(StrEnum):
    FACTS = "facts"
    CONSOLIDATING = "consolidating"
    MEMORY = "memory"
    SECTIONS = "sections"
    DONE = "done"


class EmbeddingStatus(StrEnum):
    """The embedding stage: vectors for the chunks of the embedded tiers (fails alone, like the full pass)."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETE = "complete"
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing to embed (no tier configured, or no chunk of one)


EMBEDDING_ENDED = (EmbeddingStatus.COMPLETE, EmbeddingStatus.FAILED, EmbeddingStatus.SKIPPED)


SUPERSEDED = "superseded"  # error_code of a job a newer import of the same person replaced


@dataclass(frozen=True)
class Job:
    """One import_jobs row."""

    job_id: str
    user_id: str
    source_uri: str
    status: JobStatus
    stage: str
    progress: float
    error: str | None
    error_code: str | None
    claimed_by: str | None
    claimed_at: datetime | None
    attempts: int
    redrives: int
    ingest_done: bool
    format: str | None
    bytes_total: int | None
    bytes_read: int
    conversations: int
    messages: int
    excluded: int
    empty: int
    nul_stripped: int  # NUL characters the parser removed from the export's texts
    surrogates_replaced: int  # lone UTF-16 surrogates it replaced with U+FFFD
    newest_message_at: datetime | None
    conversations_chunked: int
    chunks_micro: int
    chunks_medium: int
    chunks_macro: int
    stage_times: dict[str, Any]
    profile: dict[str, Any] | None
    sample: list[dict[str, Any]] | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    quick_status: QuickStatus
    quick_error: str | None
    quick_ready_at: datetime | None
    quick_claimed_at: datetime | None
    full_pass_status: FullPassStatus
    full_pass_stage: FullPassStage | None
    full_pass_error: str | None
    full_pass_started_at: datetime | None
    full_pass_finished_at: datetime | None
    full_pass_moved_at: datetime | None
    full_pass_redrives: int
    full_pass_deferred: bool
    extraction_total: int
    extraction_done: int
    facts_total: int
    facts_dropped: int
    consolidated_total: int
    embedding_status: EmbeddingStatus
    embedding_model: str | None  # the space id (models.embedding) its vectors are in
    embedding_tiers: list[str] | None  # fixed when chunking completes
    embedded: int
    embedding_total: int | None  # None until chunking completes
    embedding_error: str | None
    embedding_moved_at: datetime | None
    embedding_redrives: int
    sha256: str | None  # an uploaded export's hash (None: imported from a path without storage)
    export_bytes: int | None  # and its size
    dead_letters: int  # messages of this job on the dead-letter topic, not yet replayed: the job is blocked
    dead_letter_error: str | None  # the last one's stage and reason

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Job":
        values = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        values["status"] = JobStatus(values["status"])
        values["quick_status"] = QuickStatus(values["quick_status"])
        values["full_pass_status"] = FullPassStatus(values["full_pass_status"])
        if values["full_pass_stage"] is not None:
            values["full_pass_stage"] = FullPassStage(values["full_pass_stage"])
        values["embedding_status"] = EmbeddingStatus(values["embedding_status"])
        values["stage_times"] = values["stage_times"] or {}
        return cls(**values)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def finished(self) -> bool:
        """Failed, or complete with the quick pass, the full pass and the embedding all ended."""
        if self.status == JobStatus.FAILED:
            return True
        return (self.status == JobStatus.COMPLETE
                and self.quick_status in (QuickStatus.READY, QuickStatus.FAILED)
                and self.full_pass_status in (FullPassStatus.COMPLETE, FullPassStatus.FAILED,
                                              FullPassStatus.SKIPPED)
                and self.embedding_status in EMBEDDING_ENDED)

    @property
    def extraction_finished(self) -> bool:
        return (self.full_pass_status == FullPassStatus.PROCESSING and self.full_pass_stage == FullPassStage.FACTS
                and self.extraction_done >= self.extraction_total)
