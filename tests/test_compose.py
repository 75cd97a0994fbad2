"""docker-compose.yml and the Dockerfile, checked without Docker.

Docker cannot run here, so this checks what can go wrong on paper: services
that are missing or not scalable, commands the project does not have,
health-check dependencies on services without a health check, environment
variables the settings module does not read, and a Dockerfile that does not
install the project.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")  # PyYAML, in the test extra

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"

# The CLI's subcommands as documented; checked against the real parser too when it imports.
KNOWN_SUBCOMMANDS = {"import", "status", "worker", "export", "serve", "upload-service"}
# Variables the worker may take that are not SOULPRINT_ settings.
NON_PREFIXED_ENV = {"ANTHROPIC_API_KEY"}
# Commands shipped inside the images, as their documentation gives them.
KAFKA_TOPICS_SH = "/opt/kafka/bin/kafka-topics.sh"

_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose-style ${VAR:-default} with the defaults (no environment)."""
    return _VAR.sub(lambda m: m.group(2) or "", value)


def as_argv(command) -> list[str]:
    if isinstance(command, str):
        return interpolate(command).split()
    return [interpolate(str(part)) for part in command]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def healthcheck_text(service: dict) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, list):
        return " ".join(test[1:] if test and test[0] in ("CMD", "CMD-SHELL") else test)
    return test or ""


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def real_subcommands() -> set[str] | None:
    try:
        from soulprint import cli
    except Exception:  # noqa: BLE001 - the CLI is optional for this test
        return None
    build = getattr(cli, "build_parser", None)
    if build is None:
        return None
    parser = build()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return None


def soulprint_commands(services) -> list[tuple[str, list[str]]]:
    out = []
    for name, svc in services.items():
        if "command" in svc:
            argv = as_argv(svc["command"])
            if argv and argv[0] == "soulprint":
                out.append((name, argv))
    return out


# ---------------------------------------------------------------- services

def test_the_three_services_exist(services):
    assert {"kafka", "postgres", "worker"} <= set(services)


def test_worker_is_scalable(services):
    worker = services["worker"]
    # `docker compose up --scale worker=N` fails on a fixed name or host port.
    assert "container_name" not in worker
    assert "hostname" not in worker
    for port in worker.get("ports") or []:
        published = port.get("published") if isinstance(port, dict) else (str(port).split(":")[:-1] or None)
        assert not published, f"worker publishes a host port: {port}"
    assert "build" in worker


def test_worker_runs_the_worker_command(services):
    argv = as_argv(services["worker"]["command"])
    assert argv[:2] == ["soulprint", "worker"]
    # Its metrics port is the one its healthcheck asks, inside the network only (see test_worker_is_scalable).
    port = argv[argv.index("--metrics-port") + 1]
    assert f"http://127.0.0.1:{port}/health" in healthcheck_text(services["worker"])


def test_soulprint_is_a_console_script():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["soulprint"] == "soulprint.cli:main"


def test_commands_are_subcommands_of_the_cli(services):
    commands = soulprint_commands(services)
    assert commands, "no service runs soulprint"
    for name, argv in commands:
        assert argv[1] in KNOWN_SUBCOMMANDS, f"{name}: unknown subcommand {argv[1]!r}"
    real = real_subcommands()
    if real is None:
        pytest.skip("soulprint.cli.build_parser not importable yet")
    from soulprint import cli

    for name, argv in commands:
        assert argv[1] in real, f"{name}: {argv[1]!r} is not a subcommand of soulprint.cli"
        # The whole command line must parse (options exist, required ones given).
        cli.build_parser().parse_args(argv[1:])


def test_kafka_is_single_node_kraft(services):
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = str(env["KAFKA_NODE_ID"])
    listeners = dict(re.match(r"(\w+)://[^:]*:(\d+)", item).groups() for item in env["KAFKA_LISTENERS"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:{listeners[controller]}"
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols)
    advertised = dict(re.match(r"(\w+)://(.+)", item).groups() for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert controller not in advertised
    assert "kafka:9092" in advertised.values()  # what the other containers dial
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"
    assert int(env["KAFKA_NUM_PARTITIONS"]) >= 1


def test_image_commands_are_the_documented_ones(services):
    kafka_check = healthcheck_text(services["kafka"])
    assert KAFKA_TOPICS_SH in kafka_check
    assert "--bootstrap-server localhost:9092" in kafka_check and "--list" in kafka_check
    postgres = services["postgres"]
    assert postgres["image"].startswith("pgvector/pgvector:pg")
    assert healthcheck_text(postgres).split()[0] == "pg_isready"
    assert {"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB"} <= set(env_of(postgres))
    assert postgres.get("volumes"), "postgres data must live in a volume"


def test_depends_on_healthy_services_only_with_healthchecks(services):
    for name, svc in services.items():
        depends = svc.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            if spec.get("condition") == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target}, which has no healthcheck"
    for dep in ("kafka", "postgres"):
        assert services["worker"]["depends_on"][dep]["condition"] == "service_healthy"


def test_worker_env_points_at_the_compose_services(services):
    env = env_of(services["worker"])
    assert env["SOULPRINT_KAFKA_BOOTSTRAP"] == "kafka:9092"
    url = env["SOULPRINT_DATABASE_URL"]
    m = re.fullmatch(r"postgresql://(\w+):([^@]+)@(\w+):(\d+)/(\w+)", url)
    assert m, url
    user, password, host, port, db = m.groups()
    pg = env_of(services["postgres"])
    assert (user, password, host, port, db) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], "postgres", "5432",
                                                 pg["POSTGRES_DB"])


def test_worker_env_names_are_settings(services):
    names = set(env_of(services["worker"]))
    for name in names:
        assert name.startswith("SOULPRINT_") or name in NON_PREFIXED_ENV, name
    try:
        import inspect

        from soulprint import settings
    except Exception:  # noqa: BLE001
        pytest.skip("soulprint.settings not importable yet")
    source = inspect.getsource(settings)
    for name in sorted(n for n in names if n.startswith("SOULPRINT_")):
        assert f'"{name}"' in source, f"{name} is not read by soulprint/settings.py"


def test_import_service_reads_the_same_files_as_the_workers(services):
    if "import" not in services:
        pytest.skip("no import service")
    imp = services["import"]
    assert imp.get("profiles"), "the one-shot import must not start with a plain `up`"
    argv = as_argv(imp["command"])
    path = argv[2]
    mounts = [interpolate(v).split(":")[1] for v in services["worker"].get("volumes", []) if isinstance(v, str)]
    assert any(path.startswith(m.rstrip("/") + "/") for m in mounts), "workers cannot read the export the import names"
    assert "--no-wait" in argv


# ---------------------------------------------------------------- Dockerfile

def test_dockerfile_installs_the_project():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    direct = re.search(r"pip install\b[^\n]*\s\.(\s|$)", text)
    via_wheels = re.search(r"pip wheel\b[^\n]*\s\.(\s|$)", text) and re.search(rf"pip install\b[^\n]*\b{name}\b", text)
    assert direct or via_wheels, "the Dockerfile does not install the project"
    assert re.search(r'^(CMD|ENTRYPOINT) \["soulprint"', text, re.M)


def test_dockerignore_keeps_what_the_build_needs():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv"} <= ignored
    for needed in ("pyproject.toml", "README.md", "samples", "__init__.py", "*.py", "*.md"):
        assert needed not in ignored


def test_the_upload_service_shares_storage_with_the_workers(services):
    """Uploads land where the workers read them: one volume mounted at SOULPRINT_STORAGE in each."""
    upload = services["upload"]
    assert as_argv(upload["command"])[:2] == ["soulprint", "upload-service"]
    for name in ("upload", "worker", "serve", "import"):
        storage = env_of(services[name])["SOULPRINT_STORAGE"]
        mounts = {interpolate(v).split(":")[1]: interpolate(v).split(":")[0]
                  for v in services[name].get("volumes", []) if isinstance(v, str)}
        assert mounts.get(storage) == "uploads", f"{name} does not mount the uploads volume at {storage}"
    assert "uploads" in compose_file_volumes()


def compose_file_volumes() -> set[str]:
    return set(yaml.safe_load(COMPOSE.read_text())["volumes"])
