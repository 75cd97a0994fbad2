# SoulPrint Stream worker / CLI image.
#
#   docker build -t soulprint-stream .
#   docker run --rm -e SOULPRINT_KAFKA_BOOTSTRAP=... -e SOULPRINT_DATABASE_URL=... soulprint-stream
#
# Two stages: wheels are built with a compiler at hand (in case a dependency
# has no wheel for this platform), the runtime image gets only the wheels.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The repository root is the `soulprint` package (pyproject maps it), so the
# whole tree is the build context; .dockerignore keeps .git, .venv and tests out.
COPY . .
RUN pip wheel --wheel-dir /wheels .


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SOULPRINT_DATA_DIR=/var/lib/soulprint

COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels soulprint-stream \
    && rm -rf /wheels \
    && useradd --create-home --uid 10001 soulprint \
    && mkdir -p /var/lib/soulprint/uploads \
    && chown -R soulprint:soulprint /var/lib/soulprint

USER soulprint
WORKDIR /home/soulprint

# Default: a long-running worker for external Kafka and Postgres
# (SOULPRINT_KAFKA_BOOTSTRAP, SOULPRINT_DATABASE_URL). Any other subcommand:
#   docker run ... soulprint-stream soulprint import /data/export.zip --user me --no-wait
CMD ["soulprint", "worker"]
