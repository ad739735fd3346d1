# syntax=docker/dockerfile:1
#
# linkgate container image.
#
#   docker build -t linkgate/linkgate:0.1.0 .
#   docker run --rm -v linkgate-data:/var/lib/linkgate linkgate/linkgate:0.1.0 migrate
#   docker run --rm -p 8000:8000 -v linkgate-data:/var/lib/linkgate linkgate/linkgate:0.1.0
#
# (SQLite in a volume, for a look; docs/deploy.md has the real deployment.)
#
# Two stages: "build" installs the dependencies and the package into a venv
# at /opt/venv; "runtime" copies only that venv onto a fresh slim base, so no
# pip cache, build backend or source tree reaches the final image. Every
# runtime dependency ships manylinux wheels (asyncpg, hiredis, uvloop,
# httptools), so neither stage needs a compiler, and the slim base has none.
# Both stages use the same base so the venv's interpreter path stays valid.

FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, exactly as requirements.lock pins them (the versions
# the tests ran with; `make lock` writes it): this layer is rebuilt only when
# the lock changes, not on every code change, and two builds of one commit
# get the same packages. --no-deps: the lock is the whole closure, and pip
# check fails the build if it ever is not.
COPY pyproject.toml requirements.lock ./
RUN pip install --no-cache-dir --no-deps -r requirements.lock \
    && pip check

# Then the package itself, without touching the dependencies again.
# README.m[d] is a glob so the build still works before README.md exists;
# pyproject.toml is named again so the COPY always has a source.
COPY service/ ./service/
COPY pyproject.toml README.m[d] ./
RUN pip install --no-cache-dir --no-deps . \
    && python -m compileall -q /opt/venv/lib


FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="linkgate" \
      org.opencontainers.image.description="URL shortener microservice with a gateway-style query filter" \
      org.opencontainers.image.ref.name="linkgate/linkgate"

# A fixed, numeric, non-root UID/GID: Kubernetes' runAsNonRoot can only
# verify a numeric user, and deploy/k8s sets runAsUser to the same 10001.
# The working directory is the only place the user may write, so the SQLite
# default (./linkgate.db) works in a plain `docker run`; on Kubernetes the
# root filesystem is read-only and the database is PostgreSQL.
RUN groupadd --system --gid 10001 linkgate \
    && useradd --system --uid 10001 --gid linkgate --no-create-home \
       --home-dir /var/lib/linkgate --shell /usr/sbin/nologin linkgate \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/linkgate

COPY --from=build /opt/venv /opt/venv

# The bytecode was compiled at build time; a read-only root filesystem
# could not take new .pyc files anyway.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LINKGATE_HOST=0.0.0.0 \
    LINKGATE_PORT=8000

WORKDIR /var/lib/linkgate
USER 10001:10001
EXPOSE 8000

# Docker and Compose use this; Kubernetes ignores it and uses the probes in
# deploy/k8s. Python's own urllib: the image has no curl.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LINKGATE_PORT', '8000'), timeout=2)"]

# `serve` runs uvicorn (uvloop + httptools) with host, port and worker count
# from LINKGATE_HOST / LINKGATE_PORT / LINKGATE_WORKERS. Other subcommands
# replace CMD, e.g. `docker run ... linkgate/linkgate:0.1.0 migrate`.
ENTRYPOINT ["python", "-m", "service"]
CMD ["serve"]
