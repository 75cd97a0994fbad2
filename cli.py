"""`soulprint`: import an export, follow a job, run a worker.

Errors reach the person as one line on stderr and a non-zero exit code,
never as a traceback (set SOULPRINT_DEBUG=1 to see one). A malformed setting
ends every command at once, before any service starts. Without -v, the
broker and stream libraries log to ``<data dir>/soulprint.log``, not the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from soulprint.settings import Settings, SettingsError, load_settings

EXIT_FAILED_JOB = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soulprint", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the workers do")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import", help="import a ChatGPT or claude.ai export (.zip, .json or folder)")
    p.add_argument("path", help="export file or folder, or a file:// URI")
    p.add_argument("--user", required=True, help="the person this export belongs to")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    p.add_argument("--no-wait", action="store_true",
                   help="publish the import and exit (external Kafka and Postgres only)")
    p.add_argument("--job-id", help="use this job id instead of a new one (a retry of the same import)")
    p.add_argument("--out", type=Path, help="when the job ends, write the soulprint workspace here")
    p.add_argument("--format", choices=("openclaw", "json"), default="openclaw", help="format for --out")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="write a person's soulprint (OpenClaw workspace or JSON)")
    p.add_argument("user")
    p.add_argument("--format", choices=("openclaw", "json"), default="openclaw")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("search", help="search a person's history: full text, vectors and their fusion")
    p.add_argument("user")
    p.add_argument("text")
    p.add_argument("-k", type=int, default=10, help="hits to return (default 10)")
    p.add_argument("--tier", action="append", choices=("micro", "medium", "macro"),
                   help="only chunks of this tier (repeatable; default every tier)")
    p.add_argument("--json", action="store_true", help="print one JSON object: hits and stats")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("ask", help="ask a person's assistant a question (their soulprint and history)")
    p.add_argument("user")
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print one JSON object: the /v1/query answer")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("serve", help="run the whole service: workers, query service, HTTP API")
    p.add_argument("--host", help="address to listen on (default SOULPRINT_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default SOULPRINT_PORT or 8700; 0: any free)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("mcp", help="serve a person's memory to an MCP client over stdio")
    p.add_argument("--token", help="the person's API token (default SOULPRINT_TOKEN)")
    p.add_argument("--user", help="with an operator token: the person to act for")
    p.set_defaults(func=cmd_mcp)

    p = sub.add_parser("token", help="create or revoke a person's API token")
    tsub = p.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("create", help="print a new token bound to a person")
    t.add_argument("--user", required=True)
    t.add_argument("--label", help="a note to tell tokens apart")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_token_create)
    t = tsub.add_parser("revoke", help="revoke a token (the token itself or its id)")
    t.add_argument("token")
    t.set_defaults(func=cmd_token_revoke)

    p = sub.add_parser("upload-service", help="run only the upload service (HTTP uploads into storage, import events)")
    p.add_argument("--host", help="address to listen on (default SOULPRINT_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default SOULPRINT_PORT or 8700; 0: any free)")
    p.set_defaults(func=cmd_upload_service)

    p = sub.add_parser("webhook", help="manage the endpoints notified of job events (Standard Webhooks)")
    wsub = p.add_subparsers(dest="webhook_command", required=True)
    w = wsub.add_parser("add", help="add an endpoint; prints its whsec_ signing secret once")
    w.add_argument("url")
    w.add_argument("--event", action="append", dest="events",
                   help="only this event type (repeatable; default every type)")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_webhook_add)
    w = wsub.add_parser("list", help="list endpoints and their state")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_webhook_list)
    w = wsub.add_parser("remove", help="remove an endpoint")
    w.add_argument("endpoint_id")
    w.set_defaults(func=cmd_webhook_remove)

    p = sub.add_parser("dlq", help="inspect and replay the dead-letter topic")
    dsub = p.add_subparsers(dest="dlq_command", required=True)
    d = dsub.add_parser("list", help="list dead letters with their source and reason")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_dlq_list)
    d = dsub.add_parser("replay", help="send dead letters back to the topic they came from")
    which = d.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="letter_id", help="one dead letter, by the id `dlq list` shows")
    which.add_argument("--all", action="store_true", help="every dead letter not yet replayed")
    d.set_defaults(func=cmd_dlq_replay)

    p = sub.add_parser("replay", help="send a topic's events again (all, one job's or one person's)")
    p.add_argument("--topic", required=True, help="the topic's name without the prefix (imports, chunks, ...)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--job", help="only this job's events")
    scope.add_argument("--user", help="only this person's events")
    p.add_argument("--from-beginning", action="store_true", help="from the first offset the broker holds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("reprocess", help="re-drive a person's current import from a stage, from what is stored")
    p.add_argument("--user", required=True)
    p.add_argument("--from-stage", required=True,
                   choices=("parse", "chunks", "facts", "consolidate", "memory", "sections"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reprocess)

    p = sub.add_parser("delete-user", help="erase everything about a person, for good; prints a receipt")
    p.add_argument("user")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_delete_user)

    p = sub.add_parser("status", help="show an import job")
    p.add_argument("job_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("worker", help="run a long-lived worker (needs SOULPRINT_KAFKA_BOOTSTRAP)")
    p.add_argument("--metrics-port", type=int, dest="port", default=None,
                   help="also answer GET /metrics and /health on this port (0: any free one)")
    p.add_argument("--host", default=None, help="the address of --metrics-port (default: SOULPRINT_HOST)")
    p.set_defaults(func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        check_infrastructure(settings)
    except (SettingsError, CliError) as exc:
        print(f"soulprint: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.verbose, settings)
    try:
        return args.func(args, settings)
    except KeyboardInterrupt:
        print("soulprint: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CliError as exc:
        print(f"soulprint: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - last line of defence for a person at a terminal
        if settings.debug:
            raise
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"soulprint: error: {text}", file=sys.stderr)
        return EXIT_USAGE


# The libraries under the workers: they narrate every rebalance and retry.
LIBRARY_LOGGERS = ("faust", "mode", "aiokafka", "asyncio")


class _Records(logging.Filter):
    """Passes either the libraries' records or everything else."""

    def __init__(self, *, libraries: bool) -> None:
        super().__init__()
        self.libraries = libraries

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith(LIBRARY_LOGGERS) == self.libraries


def _configure_logging(verbose: bool, settings: Settings) -> None:
    """Every handler in SOULPRINT_LOG_FORMAT, with the job and stage of its records, and redacted
    (services/logs.py): the secrets this process holds never reach a log line."""
    from soulprint.services.logs import install, remember_secrets

    data_dir = settings.data_dir
    remember_secrets(settings.service.admin_token, settings.service.token, settings.llm.api_key)
    terminal = install(logging.StreamHandler(sys.stderr), settings.log_format)
    root = logging.getLogger()
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    root.addHandler(terminal)
    if verbose:
        return
    # A broker that goes away makes aiokafka log an ERROR per retry: the person
    # sees our one line, the details go to the data directory's log (if it can
    # be written; if not, the command says so in its own line).
    terminal.addFilter(_Records(libraries=False))
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        library_log = logging.FileHandler(data_dir / "soulprint.log", encoding="utf-8")
    except OSError:
        return
    install(library_log, settings.log_format)
    library_log.addFilter(_Records(libraries=True))
    root.addHandler(library_log)


def check_infrastructure(settings: Settings) -> None:
    """An external broker's workers write to their own database: the CLI must read that one."""
    if settings.kafka_bootstrap and not settings.database_url:
        raise CliError(
            "SOULPRINT_KAFKA_BOOTSTRAP is set but SOULPRINT_DATABASE_URL is not: the workers on that broker "
            "write to their own database; set SOULPRINT_DATABASE_URL to it"
        )


def _run(coro):
    """asyncio.run, with SIGTERM treated like Ctrl-C so cleanup always runs."""

    async def runner():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await coro
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None

    return asyncio.run(runner())


# -- import ---------------------------------------------------------------------


def source_uri(raw: str) -> str:
    path = Path(raw[7:] if raw.startswith("file://") else raw).expanduser()
    if not path.exists():
        raise CliError(f"no such file or folder: {raw}")
    return path.resolve().as_uri()


def cmd_import(args, settings: Settings) -> int:
    from soulprint.services.embedded import Stack

    uri = source_uri(args.path)
    if args.no_wait and (settings.embedded_kafka or settings.embedded_postgres):
        raise CliError(
            "--no-wait needs SOULPRINT_KAFKA_BOOTSTRAP and SOULPRINT_DATABASE_URL: "
            "the embedded broker lives only as long as this command"
        )
    with Stack(settings) as stack:
        resolved = stack.start()
        # The embedded broker has no other consumers: this process is the worker.
        job, extra = _run(_import(resolved, uri, args, stack))
    if args.json:
        from soulprint.reporting import job_json

        print(json.dumps(job_json(job, extra)))
    elif job.status in ("queued",):
        print(f"queued import {job.job_id} for {job.user_id}")
    else:
        from soulprint.reporting import summary_text

        print(summary_text(job, extra))
    if job.status == "failed":
        print(f"soulprint: error: {job.error}", file=sys.stderr)
        return EXIT_FAILED_JOB
    return 0


async def _import(settings, uri: str, args, stack) -> dict:
    from soulprint.models.events import ImportRequested
    from soulprint.reporting import ProgressView
    from soulprint.services.kafka import ImportPublisher
    from soulprint.services.db import Database

    job_id = args.job_id or str(uuid.uuid4())
    event = ImportRequested(job_id=job_id, user_id=args.user, source_uri=uri, requested_at=time.time())
    runtime = None
    db = None
    # The embedded broker has no other consumers: this process is the worker.
    in_process_worker = stack.kafka is not None
    try:
        if in_process_worker:
            from soulprint.runtime import build_runtime

            runtime = await build_runtime(settings)
            db = runtime.db
        else:
            db = await Database.connect(settings.database_url)
        if runtime is not None:
            # Join the consumer group first: the upload then meets a ready
            # worker, as it would in a deployment with workers running.
            await runtime.start()
        if in_process_worker:
            # Reach the broker before writing the job: an unreachable one leaves no queued job behind.
            async with ImportPublisher(settings) as publisher:
                await db.jobs.create(job_id, args.user, uri)
                await publisher.publish(event)
        else:
            await _store_and_submit(settings, db, uri, job_id, args.user)
        if args.no_wait:
            return await db.jobs.get(job_id), {}
        view = ProgressView(enabled=None if not args.json else sys.stderr.isatty())
        job = await _follow(db, job_id, view, settings, stack)
        if in_process_worker:
            # This process is also the query service's consumer: `soulprint ask` right after
            # the import must find the version the import just wrote.
            await _view_caught_up(db, args.user, settings)
        extra = await job_extras(db, job)
        if args.out is not None:
            extra["exported"] = await _export(db, args.user, args.out, args.format)
        return job, extra
    finally:
        if runtime is not None:
            await stop_runtime(runtime)
        if db is not None:
            await db.close()


async def _store_and_submit(settings, db, uri: str, job_id: str, user: str) -> None:
    """External infrastructure: the workers may run on other machines, so the export goes into storage
    first and the event names it there, the upload service's path (services/imports.py)."""
    from urllib.parse import unquote, urlparse

    from soulprint.services.imports import DuplicateImport, ImportService
    from soulprint.services.storage import NotAnExport, StorageError, build_storage

    path = Path(unquote(urlparse(uri).path))
    if path.is_dir():
        raise CliError(f"{path} is a folder: with SOULPRINT_KAFKA_BOOTSTRAP the export is stored for the "
                       "workers as one file; import the .zip (or its conversations.json) instead")
    storage = build_storage(settings)
    try:
        async with ImportService(settings, db, storage) as imports:
            await imports.submit_stored(user, await storage.save_file(user, f"{job_id}/export", path),
                                        way="cli", job_id=job_id)
    except NotAnExport as exc:
        raise CliError(f"{path}: {exc}") from None
    except (DuplicateImport, StorageError) as exc:
        raise CliError(str(exc)) from None


async def _view_caught_up(db, user_id: str, settings, poll_s: float = 0.1) -> None:
    deadline = time.monotonic() + settings.stall_timeout_s
    while not await db.view.caught_up(user_id) and time.monotonic() < deadline:
        await asyncio.sleep(poll_s)


async def stop_runtime(runtime, timeout_s: float = 15.0) -> None:
    """Stop the workers' apps; bounded, since a broker that is gone can hold faust's stop for minutes."""
    try:
        await asyncio.wait_for(runtime.stop(), timeout_s)
    except asyncio.TimeoutError:
        logging.getLogger("soulprint").warning("the workers did not stop within %.0fs", timeout_s)


async def _follow(db, job_id: str, view, settings, stack) -> dict:
    """wait_for_job, unless a server of the embedded stack dies first: then the job fails in one line."""
    waiting = asyncio.create_task(wait_for_job(db, job_id, view, settings))
    watching = asyncio.create_task(watch_children(stack))
    try:
        await asyncio.wait({waiting, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        watching.cancel()
    reason = stack.dead_child()
    if reason is None:
        return waiting.result()
    if stack.postgres_alive():
        await db.jobs.fail(job_id, "infrastructure", reason)
    abandon(stack, f"{reason}; job {job_id} failed", EXIT_FAILED_JOB)


def abandon(stack, message: str, code: int):
    """Say why, stop the embedded servers, and exit without stopping faust.

    Once its broker is gone, faust's consumer thread can hold a clean stop (and
    the interpreter's exit) for minutes. Nothing is lost: every durable fact
    is in Postgres, and every write is idempotent.
    """
    print(f"soulprint: error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    stack.stop()
    os._exit(code)


async def watch_children(stack, poll_s: float = 0.5) -> None:
    """Returns once a server of the embedded stack has exited."""
    while stack.dead_child() is None:
        await asyncio.sleep(poll_s)


async def job_extras(db, job) -> dict:
    return {"llm_usage": await db.usage_for_job(job.job_id)}


async def wait_for_job(db, job_id: str, view, settings, poll_s: float = 0.2) -> dict:
    """Follow the status table until the job ends; give up if it stops moving."""
    from soulprint.reporting import job_finished

    last_change = time.monotonic()
    last_seen = None
    while True:
        job = await db.jobs.get(job_id)
        view.update(job)
        if job_finished(job):
            return job
        marker = (job.status, job.quick_status, job.updated_at, job.full_pass_moved_at, job.embedding_moved_at)
        if marker != last_seen:
            last_seen, last_change = marker, time.monotonic()
        elif time.monotonic() - last_change > settings.stall_timeout_s:
            if job.dead_letters:  # blocked, not stalled: waiting longer would not help
                raise CliError(
                    f"job {job_id} is blocked by {job.dead_letters} dead letter(s), last: {job.dead_letter_error}; "
                    f"fix the cause, then `soulprint dlq replay --all`"
                )
            raise CliError(
                f"job {job_id} made no progress for {settings.stall_timeout_s:.0f}s "
                f"(status {job.status}); is a worker running?"
            )
        await asyncio.sleep(poll_s)


# -- status -----------------------------------------------------------------------


def cmd_status(args, settings: Settings) -> int:
    from soulprint.reporting import job_json, summary_text
    from soulprint.services.embedded import Stack
    from soulprint.services.db import Database

    async def fetch(settings):
        db = await Database.connect(settings.database_url)
        try:
            job = await db.jobs.get(args.job_id)
            return job, (await job_extras(db, job) if job else {})
        finally:
            await db.close()

    with Stack(settings) as stack:
        job, extra = _run(fetch(stack.start(need_kafka=False, share=True)))
    if job is None:
        raise CliError(f"no such job: {args.job_id}")
    print(json.dumps(job_json(job, extra)) if args.json else summary_text(job, extra))
    return EXIT_FAILED_JOB if job.status == "failed" else 0


# -- export -----------------------------------------------------------------------


async def _export(db, user: str, out: Path, fmt: str) -> list[str]:
    from soulprint.exporting import export_soulprint

    row = await db.soulprints.get(user)
    if row is None:
        raise CliError(f"no soulprint for user {user!r} yet")
    return [str(p) for p in export_soulprint(row, out, fmt)]


def cmd_export(args, settings: Settings) -> int:
    from soulprint.services.embedded import Stack
    from soulprint.services.db import Database

    async def export(settings):
        db = await Database.connect(settings.database_url)
        try:
            return await _export(db, args.user, args.out, args.format)
        finally:
            await db.close()

    with Stack(settings) as stack:
        written = _run(export(stack.start(need_kafka=False, share=True)))
    for path in written:
        print(path)
    return 0


# -- search -----------------------------------------------------------------------


def cmd_search(args, settings: Settings) -> int:
    from soulprint.runtime import build_configured_embedder
    from soulprint.services.db import Database
    from soulprint.services.db.search import Filters
    from soulprint.services.embedded import Stack
    from soulprint.services.embeddings import EmbeddingError

    if args.k < 1:
        raise CliError(f"-k must be at least 1, got {args.k}")
    if not args.text.strip():
        raise CliError("the search text is empty")

    async def search(settings):
        try:
            embedder = build_configured_embedder(settings.embedding)
            vector = (await embedder.embed([args.text], "query"))[0]
        except EmbeddingError as exc:
            raise CliError(str(exc)) from exc
        db = await Database.connect(settings.database_url)
        try:
            async with db.reader.session(args.user) as conn:  # row-level security: this person's rows only
                result, _ = await db.search.search(conn, args.user, args.text, vector, embedder.space, args.k,
                                                   Filters(tiers=args.tier))
            return result
        finally:
            await db.close()
            await embedder.close()

    with Stack(settings) as stack:
        result = _run(search(stack.start(need_kafka=False, share=True)))
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return 0
    for n, hit in enumerate(result.hits, start=1):
        when = hit.message_at.date().isoformat() if hit.message_at else "undated"
        print(f"{n:>2}. [{hit.tier} {when}] {hit.title or hit.conversation_id}  (score {hit.score:.4f})")
        print(f"    {' '.join(hit.text.split())[:200]}")
    c = result.candidates
    print(f"{len(result.hits)} of {result.k} hits (full text {c['full_text']}, vector {c['vector']} candidates)"
          + "".join(f"; {note}" for note in result.notes), file=sys.stderr)
    return 0


# -- ask --------------------------------------------------------------------------


def cmd_ask(args, settings: Settings) -> int:
    from pydantic import ValidationError

    from soulprint.models.query import NoSoulprint, QueryRequest, Unavailable
    from soulprint.runtime import standalone_query_service
    from soulprint.services.embedded import Stack
    from soulprint.services.embeddings import EmbeddingError

    try:
        question = QueryRequest(message=args.question).message
    except ValidationError as exc:
        raise CliError(f"the question: {exc.errors()[0]['msg']}") from None

    async def ask(settings):
        try:
            async with standalone_query_service(settings) as service:
                return await service.ask(args.user, question)
        except (EmbeddingError, NoSoulprint, Unavailable) as exc:
            raise CliError(str(exc)) from exc

    with Stack(settings) as stack:
        answer = _run(ask(stack.start(need_kafka=False, share=True)))
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
        return 0
    print(answer.response)
    if answer.sources:
        print("\nSources:")
    for s in answer.sources:
        when = s["message_at"][:10] if s["message_at"] else "undated"
        ids = s["message_ids"]
        more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
        print(f"[{s['n']}] {s['title'] or s['conversation_id']} ({when}), messages {', '.join(ids[:3])}{more}")
        print(f"    {s['excerpt']}")
    print(f"{answer.method}, {answer.chunks_used} passages, {answer.latency_ms:.0f} ms", file=sys.stderr)
    return 0


# -- serve and mcp ----------------------------------------------------------------


def cmd_serve(args, settings: Settings) -> int:
    """Workers, query service and HTTP API in one process, until SIGINT or SIGTERM (exit 0).

    The socket is bound before anything starts, so a port in use is one line
    and nothing to clean up. A lost embedded server (or external broker) ends
    the process non-zero in one line, as for a worker.
    """
    from soulprint.services.embedded import Stack

    sock = _listen(args, settings)
    with Stack(settings) as stack:
        asyncio.run(_serve(stack.start(), sock, stack))
    return 0


def _listen(args, settings: Settings):
    """The listening socket of --host/--port (or their settings), bound now: a port in use is one line."""
    from soulprint.services.http.server import ServerError, bind

    host = args.host or settings.service.host
    port = settings.service.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise CliError(f"--port must be a port number (0-65535), got {port}")
    try:
        return bind(host, port)
    except ServerError as exc:
        raise CliError(str(exc)) from None


async def _serve(settings: Settings, sock, stack, run=None) -> None:
    """Run ``run`` (default: the whole service) until SIGINT or SIGTERM, then let its cleanup finish."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    service = asyncio.create_task((run or _run_service)(settings, sock, stack))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({service, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        service.cancel()  # a stop asked for during startup ends the startup too
        try:
            await service  # its cleanup (HTTP, then the workers) runs to the end
        except asyncio.CancelledError:
            pass
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run_service(settings: Settings, sock, stack) -> None:
    from soulprint.runtime import build_api, build_query_service, build_runtime
    from soulprint.services.http.server import ApiServer, ServerError
    from soulprint.services.kafka import watch_broker

    rt = await build_runtime(settings)
    server = None
    try:
        await rt.start()
        server = ApiServer(build_api(rt, build_query_service(rt)), sock)
        try:
            url = await server.start()
        except ServerError as exc:
            raise CliError(str(exc)) from None
        print(f"soulprint serving on {url}", flush=True)
        # An embedded server that dies, or an external broker lost: exit non-zero so a supervisor restarts us.
        lost = await (watch_children(stack) if stack.kafka is not None else watch_broker(settings))
        abandon(stack, lost or stack.dead_child(), EXIT_FAILED_JOB)
    finally:
        if server is not None:
            await server.stop()
        await stop_runtime(rt)
        await rt.db.close()


def cmd_mcp(args, settings: Settings) -> int:
    """The MCP tools for one person on stdin/stdout: stdout carries the protocol and nothing else
    (errors are one line on stderr, logs go to stderr and the data directory's log)."""
    from soulprint.models.access import AccessDenied
    from soulprint.runtime import standalone_query_service
    from soulprint.services.auth import Authenticator
    from soulprint.services.embedded import Stack
    from soulprint.services.embeddings import EmbeddingError
    from soulprint.services.http.mcp import TokenHolder, run_stdio

    token = args.token or settings.service.token
    if not token:
        raise CliError("soulprint mcp needs a token: --token or SOULPRINT_TOKEN (soulprint token create --user U)")

    async def serve(settings):
        try:
            async with standalone_query_service(settings) as query:
                holder = TokenHolder(Authenticator(query.db.tokens, settings.service.admin_token), token, args.user)
                try:
                    await holder.person()  # refused here in one line, before any protocol
                except AccessDenied as exc:
                    raise CliError(str(exc)) from None
                await run_stdio(query, holder)
        except EmbeddingError as exc:
            raise CliError(str(exc)) from exc

    with Stack(settings) as stack:
        _run(serve(stack.start(need_kafka=False, share=True)))
    return 0


# -- token ------------------------------------------------------------------------


def _on_tokens(settings: Settings, work):
    """Run ``work(db.tokens)`` on the stack's Postgres (embedded, shared with a running one, or external)."""
    return _operate(settings, lambda _settings, db: work(db.tokens), need_broker=False)


def cmd_token_create(args, settings: Settings) -> int:
    user, label = args.user.strip(), (args.label or "").strip() or None
    if not user:
        raise CliError("--user must name a person")
    token_id, token = _on_tokens(settings, lambda tokens: tokens.create(user, label))
    if args.json:
        print(json.dumps({"token_id": token_id, "user": user, "label": label, "token": token}))
    else:
        print(token)
        print(f"token {token_id} for {user}: shown once, keep it now (revoke: soulprint token revoke {token_id})",
              file=sys.stderr)
    return 0


def cmd_token_revoke(args, settings: Settings) -> int:
    name = args.token.strip()
    if not name or not _on_tokens(settings, lambda tokens: tokens.revoke(name)):
        raise CliError(f"no such token: {name!r}" if name else "name a token or its id")
    print("revoked")
    return 0


# -- worker -----------------------------------------------------------------------


def cmd_worker(args, settings: Settings) -> int:
    from soulprint.services.embedded import Stack
    from soulprint.services.kafka import watch_broker

    if settings.embedded_kafka:
        raise CliError("`soulprint worker` needs SOULPRINT_KAFKA_BOOTSTRAP (an embedded broker has no publishers)")
    sock = _listen(args, settings) if args.port is not None else None  # a port in use: one line, now

    async def serve(resolved):
        from soulprint.runtime import build_runtime, worker_api
        from soulprint.services.http.server import ApiServer, ServerError

        rt = await build_runtime(resolved)
        server = None
        try:
            await rt.start()
            print(f"soulprint worker {rt.worker_id} consuming from {resolved.kafka_bootstrap}", file=sys.stderr)
            if sock is not None:
                server = ApiServer(worker_api(rt), sock)
                try:
                    url = await server.start()
                except ServerError as exc:
                    raise CliError(str(exc)) from None
                print(f"soulprint worker {rt.worker_id} metrics on {url}/metrics", file=sys.stderr, flush=True)
            # Until SIGTERM / Ctrl-C, or until the broker is lost: then exit
            # non-zero, so that the supervisor starts a fresh worker.
            lost = await watch_broker(resolved)
        except BaseException:
            if server is not None:
                await server.stop()
            await stop_runtime(rt)
            await rt.db.close()
            raise
        abandon(stack, lost, EXIT_FAILED_JOB)

    with Stack(settings) as stack:
        _run(serve(stack.start(need_kafka=False)))
    return 0


# -- upload service (issue 10: uploads) ----------------------------------------------


def cmd_upload_service(args, settings: Settings) -> int:
    """/health and the upload routes alone (no workers, no query service), publishing to an external broker,
    until SIGINT or SIGTERM; a broker lost for SOULPRINT_BROKER_TIMEOUT ends it non-zero, as for a worker."""
    from soulprint.services.embedded import Stack

    if settings.embedded_kafka:
        raise CliError("`soulprint upload-service` needs SOULPRINT_KAFKA_BOOTSTRAP (an embedded broker has no "
                       "workers but this process's: use `soulprint serve`, which takes uploads too)")
    sock = _listen(args, settings)
    with Stack(settings) as stack:
        asyncio.run(_serve(stack.start(need_kafka=False), sock, stack, run=_run_upload_service))
    return 0


async def _run_upload_service(settings: Settings, sock, stack) -> None:
    from soulprint.runtime import upload_service_api
    from soulprint.services.http.server import ApiServer, ServerError
    from soulprint.services.kafka import watch_broker

    async with upload_service_api(settings) as app:
        server = ApiServer(app, sock)
        try:
            url = await server.start()
        except ServerError as exc:
            raise CliError(str(exc)) from None
        try:
            print(f"soulprint upload service on {url}, publishing to {settings.kafka_bootstrap}", flush=True)
            abandon(stack, await watch_broker(settings), EXIT_FAILED_JOB)
        finally:
            await server.stop()


# -- webhooks (issue 10: notifications) --------------------------------------------


def cmd_webhook_add(args, settings: Settings) -> int:
    from soulprint.services.db.notices import NOTICE_TYPES
    from soulprint.services.webhooks import TargetRefused, check_target, new_secret

    url = args.url.strip()
    events = sorted({e.strip() for e in args.events or [] if e.strip()}) or None
    unknown = sorted(set(events or []) - set(NOTICE_TYPES))
    if unknown:
        raise CliError(f"unknown event type {unknown[0]!r}; one of {', '.join(NOTICE_TYPES)}")

    async def add(webhooks):
        try:
            await check_target(url, settings.webhooks.allow_hosts)  # again before every delivery
        except TargetRefused as exc:
            raise CliError(f"refused {url}: {exc}") from None
        return await webhooks.add(url, new_secret(), events)

    endpoint = _on_webhooks(settings, add)
    if args.json:
        print(json.dumps(endpoint.public() | {"secret": endpoint.secret}))
    else:
        print(endpoint.secret)
        print(f"endpoint {endpoint.endpoint_id} for {', '.join(events or ['every event'])}: its signing secret is"
              f" shown once, keep it now (remove: soulprint webhook remove {endpoint.endpoint_id})", file=sys.stderr)
    return 0


def cmd_webhook_list(args, settings: Settings) -> int:
    endpoints = [e.public() for e in _on_webhooks(settings, lambda webhooks: webhooks.endpoints())]
    if args.json:
        print(json.dumps(endpoints))
        return 0
    if not endpoints:
        print("no webhook endpoints (add one: soulprint webhook add URL)")
    for e in endpoints:
        state = "enabled" if e["enabled"] else f"disabled ({e['disabled_reason']})"
        print(f"{e['endpoint_id']}  {e['url']}  {','.join(e['events'] or ['*'])}  {state}")
    return 0


def cmd_webhook_remove(args, settings: Settings) -> int:
    name = args.endpoint_id.strip()
    if not name or not _on_webhooks(settings, lambda webhooks: webhooks.remove(name)):
        raise CliError(f"no such webhook endpoint: {name!r}" if name else "name an endpoint id")
    print("removed")
    return 0


def _on_webhooks(settings: Settings, work):
    """Run ``work(db.webhooks)`` on the stack's Postgres (embedded, shared with a running one, or external)."""
    return _operate(settings, lambda _settings, db: work(db.webhooks), need_broker=False)


# -- dead letters, replay, reprocess (issue 10: operations) ----------------------------


def cmd_dlq_list(args, settings: Settings) -> int:
    async def work(settings, db):
        from soulprint.services.deadletters import DeadLetters

        if settings.kafka_bootstrap is None:  # no broker to ask: what Postgres recorded
            return [row.to_json() | {"on_broker": False} for row in await db.dead_letters.all()]
        return await DeadLetters(settings, db.dead_letters, _no_send).list()

    letters = _operate(settings, work, need_broker=False)
    if args.json:
        print(json.dumps({"dead_letters": letters}))
        return 0
    for d in letters:
        state = "replayed" if d["replayed"] else ("waiting" if d["on_broker"] else "gone from the broker")
        print(f"{d['id']}  {d['failed_at']}  {d['stage']}  {d['topic']}[{d['partition']}]@{d['offset']}"
              f"  job {d['job_id']}  {state}\n    {d['error_class']}: {d['error_message']} ({d['attempts']} attempts)")
    if not letters:
        print("no dead letters")
    return 0


def cmd_dlq_replay(args, settings: Settings) -> int:
    async def work(settings, db):
        from soulprint.services.deadletters import DeadLetterError, DeadLetters, KafkaSender

        async with KafkaSender(settings) as send:
            try:
                return await DeadLetters(settings, db.dead_letters, send).replay(None if args.all else args.letter_id)
            except DeadLetterError as exc:
                raise CliError(str(exc)) from None

    sent = _operate(settings, work)
    print(f"replayed {len(sent)} dead letter(s)" + "".join(f"\n  {i}" for i in sent))
    return 0


async def _no_send(*_):  # listing sends nothing
    raise AssertionError("dlq list does not send")


def cmd_replay(args, settings: Settings) -> int:
    async def work(settings, db):
        from soulprint.services.replay import ReplayError, replay_topic

        try:
            return await replay_topic(settings, args.topic, job=args.job, user=args.user,
                                      from_beginning=args.from_beginning)
        except ReplayError as exc:
            raise CliError(str(exc)) from None

    report = _operate(settings, work)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(f"{args.topic}: sent {report.sent} of {report.read} records read"
              + ("" if report.from_beginning else " (from the consumer groups' committed offsets)"))
    return 0


def cmd_reprocess(args, settings: Settings) -> int:
    async def work(settings, db):
        from soulprint.services.replay import ReplayError, reprocess

        try:
            return await reprocess(settings, db, args.user, args.from_stage)
        except ReplayError as exc:
            raise CliError(str(exc)) from None

    done = _operate(settings, work)
    if args.json:
        print(json.dumps(done))
    else:
        print(f"re-driving import {done['job_id']} of {done['user_id']} from {done['from_stage']}"
              f" (follow it: soulprint status {done['job_id']})")
    return 0


def _operate(settings: Settings, work, *, need_broker: bool = True):
    """Run ``work(settings, db)`` against the configured broker and Postgres, or those of a running
    `soulprint serve` on the embedded stack (attached through the address it recorded)."""
    from soulprint.services.db import Database
    from soulprint.services.embedded import Stack
    from soulprint.services.kafka import BrokerError

    async def run(resolved):
        if need_broker and resolved.kafka_bootstrap is None:
            raise CliError("no broker to work on: set SOULPRINT_KAFKA_BOOTSTRAP, or run this while `soulprint serve`"
                           " runs on this data directory (the embedded broker lives only as long as that process)")
        db = await Database.connect(resolved.database_url)
        try:
            return await work(resolved, db)
        except BrokerError as exc:
            raise CliError(str(exc)) from None
        finally:
            await db.close()

    with Stack(settings) as stack:
        return _run(run(stack.start(need_kafka=False, share=True)))


# -- erasure (issue 10: erasure) ------------------------------------------------------


def cmd_delete_user(args, settings: Settings) -> int:
    from soulprint.services.erasure import FilesRemain

    user = args.user.strip()
    if not user:
        raise CliError("name the person to erase")
    try:
        receipt = _operate(settings, lambda resolved, db: _erase(resolved, db, user), need_broker=False)
    except FilesRemain as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(receipt))
    else:
        rows = sum(receipt["tables"].values())
        tables = sum(1 for n in receipt["tables"].values() if n)
        print(f"erased {user} at {receipt['erased_at']}: {rows} rows from {tables} tables, {receipt['files']} files")
    return 0


async def _erase(settings: Settings, db, user: str) -> dict:
    """The receipt of erasing ``user`` on the stack's Postgres and the configured storage."""
    from soulprint.runtime import build_erasure
    from soulprint.services.storage import build_storage

    return await build_erasure(settings, db, build_storage(settings)).delete_person(user)


if __name__ == "__main__":
    sys.exit(main())
