"""What the CLI shows a person: progress bars per stage, a summary, the --json object.

Everything here is derived from one import_jobs row (plus chunk counts), so
`soulprint import` and `soulprint status` always agree.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from soulprint.models.jobs import EmbeddingStatus, FullPassStage, FullPassStatus, Job, JobStatus, QuickStatus

STAGES = ("parsing", "chunking")


def job_finished(job: Job | None) -> bool:
    """Failed, or complete with the quick pass, the full pass and the embedding all ended."""
    return job is not None and job.finished


def job_json(job: Job, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The --json object: one shape for `import` and `status`."""
    out = {
        "job_id": job.job_id,
        "user_id": job.user_id,
        "status": str(job.status),
        "quick_status": str(job.quick_status),
        "quick_error": job.quick_error,
        "full_pass_status": str(job.full_pass_status),
        "full_pass": {
            "stage": job.full_pass_stage and str(job.full_pass_stage),
            "progress": _full_pass_progress(job),
            "chunks_extracted": job.extraction_done,
            "chunks_total": job.extraction_total,
            "facts": job.facts_total,
            "facts_dropped": job.facts_dropped,
            "consolidated_facts": job.consolidated_total,
            "error": job.full_pass_error,
            "duration_s": _seconds(job.full_pass_started_at, job.full_pass_finished_at),
        },
        "embedding_status": str(job.embedding_status),
        "embedded": job.embedded,
        "embedding": {
            "total": job.embedding_total,
            "space": job.embedding_model,
            "tiers": job.embedding_tiers,
            "error": job.embedding_error,
        },
        "dead_letters": {"open": job.dead_letters, "last_error": job.dead_letter_error,
                         "blocked": job.dead_letters > 0},
        "stage": job.stage,
        "progress": round(float(job.progress), 1),
        "error": job.error,
        "error_code": job.error_code,
        "counts": {
            "conversations": job.conversations,
            "messages": job.messages,
            "excluded": job.excluded,
            "empty": job.empty,
            "nul_stripped": job.nul_stripped,
            "surrogates_replaced": job.surrogates_replaced,
            "conversations_chunked": job.conversations_chunked,
            "chunks": {
                "micro": job.chunks_micro,
                "medium": job.chunks_medium,
                "macro": job.chunks_macro,
            },
        },
        "format": job.format,
        "bytes_read": job.bytes_read,
        "durations_s": stage_durations(job),
        "quick_ready_after_s": _seconds(job.created_at, job.quick_ready_at),
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
    }
    if extra:
        out.update(extra)
    return out


def stage_durations(job: Job) -> dict[str, float]:
    times = job.stage_times
    out: dict[str, float] = {}
    for stage, t in times.items():
        if isinstance(t, dict) and "started" in t and "finished" in t:
            out[stage] = round(float(t["finished"]) - float(t["started"]), 3)
    if job.started_at and job.finished_at:
        out["total"] = round((job.finished_at - job.started_at).total_seconds(), 3)
    return out


def _full_pass_progress(job: Job) -> float:
    if job.full_pass_status in (FullPassStatus.COMPLETE, FullPassStatus.SKIPPED):
        return 100.0
    if not job.extraction_total:
        return 0.0
    # Extraction is nearly all of the work; the last three stages are one LLM call each.
    share = {"facts": 0.0, "consolidating": 0.9, "memory": 0.93, "sections": 0.96}.get(job.full_pass_stage, 0.0)
    extracted = min(1.0, job.extraction_done / job.extraction_total)
    return round(100.0 * max(share, 0.9 * extracted), 1)


def _seconds(start, end) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _bar(fraction: float, width: int = 28) -> str:
    fraction = max(0.0, min(1.0, fraction))
    filled = int(round(fraction * width))
    return "█" * filled + "░" * (width - filled)


class ProgressView:
    """Redraws one bar per stage on a terminal; silent when not a terminal."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool | None = None) -> None:
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.lines_drawn = 0

    def update(self, job: Job) -> None:
        if not self.enabled:
            return
        lines = [self._line(stage, job) for stage in STAGES] + [self._quick_line(job), self._full_line(job),
                                                                self._embedding_line(job)]
        if self.lines_drawn:
            self.stream.write(f"\x1b[{self.lines_drawn}F")
        for line in lines:
            self.stream.write("\x1b[2K" + line + "\n")
        self.lines_drawn = len(lines)
        self.stream.flush()

    def _quick_line(self, job: Job) -> str:
        state = job.quick_status
        if state == QuickStatus.READY:
            return f"{'quick':<9} {_bar(1.0)} quick_ready: chat can start"
        if state == QuickStatus.FAILED:
            return f"{'quick':<9} failed: {job.quick_error}"
        return f"{'quick':<9} {_bar(0.0)} {'writing the soulprint' if state == 'running' else 'waiting for the sample'}"

    def _full_line(self, job: Job) -> str:
        state = job.full_pass_status
        if state == FullPassStatus.FAILED:
            return f"{'full pass':<9} failed: {job.full_pass_error}"
        if state == FullPassStatus.SKIPPED:
            return f"{'full pass':<9} skipped (fewer conversations than the full pass needs)"
        progress = _full_pass_progress(job)
        note = {
            "pending": "waiting for chunks",
            "complete": "MEMORY and v2 sections ready",
        }.get(state) or (
            f"{job.extraction_done:,}/{job.extraction_total:,} chunks read, {job.facts_total:,} facts"
            if job.full_pass_stage == FullPassStage.FACTS else f"{job.full_pass_stage}"
        )
        return f"{'full pass':<9} {_bar(progress / 100.0)} {progress:5.1f}%  {note}"

    def _embedding_line(self, job: Job) -> str:
        state = job.embedding_status
        if state == EmbeddingStatus.FAILED:
            return f"{'vectors':<9} failed: {job.embedding_error}"
        if state == EmbeddingStatus.SKIPPED:
            return f"{'vectors':<9} skipped (no chunk of an embedded tier)"
        total = job.embedding_total
        fraction = 1.0 if state == EmbeddingStatus.COMPLETE else (job.embedded / total if total else 0.0)
        note = f"{job.embedded:,}/{total:,}" if total is not None else f"{job.embedded:,}"
        note += " chunks embedded"
        return f"{'vectors':<9} {_bar(fraction)} {fraction * 100:5.1f}%  {note}"

    def _line(self, stage: str, job: Job) -> str:
        status = job.status
        order = {"queued": -1, "parsing": 0, "chunking": 1, "complete": 2}
        current = order.get(status, order.get(job.stage, -1))
        mine = STAGES.index(stage)
        if status == JobStatus.FAILED and job.stage == stage:
            return f"{stage:<9} failed: {job.error}"
        if current > mine:
            fraction, note = 1.0, "done"
        elif current == mine:
            fraction = float(job.progress) / 100.0
            if stage == "parsing":
                note = f"{job.bytes_read / 1e6:,.1f} MB, {job.conversations:,} conversations"
            else:
                note = f"{job.conversations_chunked:,}/{job.conversations:,} conversations"
        else:
            fraction, note = 0.0, "waiting"
        return f"{stage:<9} {_bar(fraction)} {fraction * 100:5.1f}%  {note}"


def _cleaned(job: Job) -> str:
    """What the parser had to change in the texts, when it changed anything."""
    done = [f"{n:,} {what}" for n, what in ((job.nul_stripped, "NUL characters removed"),
                                           (job.surrogates_replaced, "lone surrogates replaced with U+FFFD"))
            if n]
    return f" ({', '.join(done)})" if done else ""


def summary_text(job: Job, extra: dict[str, Any] | None = None) -> str:
    d = stage_durations(job)
    extra = extra or {}
    lines = [
        f"Import {job.job_id} for {job.user_id}: {job.status}",
    ]
    if job.status == JobStatus.FAILED:
        lines.append(f"  error: {job.error}")
        return "\n".join(lines)
    lines += [
        f"  conversations  {job.conversations:,} imported, {job.excluded:,} excluded (do not remember),"
        f" {job.empty:,} empty",
        f"  messages       {job.messages:,}" + _cleaned(job),
        f"  chunks         {job.chunks_micro:,} micro, {job.chunks_medium:,} medium,"
        f" {job.chunks_macro:,} macro",
        "  durations      " + ", ".join(f"{k} {v:.2f}s" for k, v in d.items()),
        "  quick pass     " + (
            "quick_ready" if job.quick_status == QuickStatus.READY
            else f"{job.quick_status}" + (f": {job.quick_error}" if job.quick_error else "")
        ),
        "  full pass      " + job.full_pass_status + (
            f": {job.extraction_done:,} chunks read, {job.facts_total:,} facts,"
            f" {job.consolidated_total:,} after consolidation"
            + (f" ({job.facts_dropped:,} dropped: named no chunk)" if job.facts_dropped else "")
            if job.full_pass_status == FullPassStatus.COMPLETE else
            (f": {job.full_pass_error}" if job.full_pass_error else "")
        ),
    ]
    if job.dead_letters:  # blocked until replayed (agents/containment.py)
        lines.append(f"  blocked        {job.dead_letters} dead letter(s), last: {job.dead_letter_error};"
                     " fix the cause, then `soulprint dlq replay --all`")
    lines.append("  embedding      " + job.embedding_status + (
        f": {job.embedded:,}/{job.embedding_total or 0:,} chunks ({job.embedding_model})"
        if job.embedding_status == EmbeddingStatus.COMPLETE else
        (f": {job.embedding_error}" if job.embedding_error else "")))
    usage = (extra.get("llm_usage") or {}).get("total")
    if usage:
        lines.append(
            f"  LLM usage      {usage.get('requests', 0):,} requests, {usage.get('input_tokens', 0):,} in /"
            f" {usage.get('output_tokens', 0):,} out tokens, ${float(usage.get('cost_usd', 0)):.4f}"
            + (" (offline provider: no LLM was called)" if _offline_only(extra) else "")
        )
    for path in extra.get("exported") or []:
        lines.append(f"  wrote          {path}")
    return "\n".join(lines)


def _offline_only(extra: dict[str, Any]) -> bool:
    stages = (extra.get("llm_usage") or {}).get("stages") or {}
    keys = [k for stage in stages.values() for k in stage.get("by_model", {})]
    return bool(keys) and all(k.startswith("offline/") for k in keys)
