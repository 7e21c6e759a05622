# syntax=docker/dockerfile:1
# M2GRL candidate retrieval: three images from one file (docs/deploy.md, section 1).
#   docker build -t m2grl-service:0.1.0 .                              serve (default): the slim service image,
#                                                                      no training stack, no sample data
#   docker build --target offline -t m2grl-offline:0.1.0 .             the daily chain (prepare, train, build-index)
#   docker build --target demo -t m2grl-service:0.1.0-demo .           serve + the index built from the bundled
#                                                                      MovieLens sample (research use only)
#   --build-arg EXTRAS=gpu --build-arg TORCH_INDEX_URL=                faiss-gpu-cu12 (and PyPI's CUDA torch offline)
#   --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...      the base image pinned by digest
#                                                                      (scripts/pin_base_image.sh writes it below)
# Every install step is scripts/container_build.sh, which tests/deploy runs in a temporary virtualenv;
# the start step is scripts/container_start.sh.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---- requirements: the dependency lists, read from pyproject.toml alone. The stages below copy only
# these files, so a source change (or a version bump) never re-runs their dependency installs ----
FROM base AS requirements
ARG EXTRAS=""
WORKDIR /src
COPY scripts/container_build.sh scripts/container_build.sh
COPY pyproject.toml ./
RUN bash scripts/container_build.sh requirements /src /reqs/serve.txt "${EXTRAS}" \
    && bash scripts/container_build.sh requirements /src /reqs/offline.txt "offline,${EXTRAS}"

# ---- serve-deps: /opt/venv with the serving dependencies (no torch, duckdb, ibis, gensim, numba...) ----
FROM base AS serve-deps
WORKDIR /src
COPY scripts/container_build.sh scripts/container_build.sh
COPY --from=requirements /reqs/serve.txt /reqs/serve.txt
RUN bash scripts/container_build.sh deps /opt/venv /reqs/serve.txt

# ---- serve-venv: + the serving packages, installed --no-deps ----
FROM serve-deps AS serve-venv
COPY pyproject.toml README.md ./
COPY core/ core/
COPY index/ index/
COPY app/ app/
COPY cli/ cli/
RUN bash scripts/container_build.sh project /opt/venv /src

# ---- offline-deps: + torch (its own layer, rebuilt only when TORCH_SPEC changes), then the training stack ----
FROM serve-deps AS offline-deps
ARG TORCH_SPEC=torch==2.13.0
# PyTorch's CPU-only wheels (about 200 MB instead of several GB of CUDA libraries); empty = PyPI only
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN bash scripts/container_build.sh torch /opt/venv
COPY --from=requirements /reqs/offline.txt /reqs/offline.txt
RUN bash scripts/container_build.sh deps /opt/venv /reqs/offline.txt

# ---- offline-venv: + every package ----
FROM offline-deps AS offline-venv
COPY pyproject.toml README.md ./
COPY core/ core/
COPY model/ model/
COPY index/ index/
COPY offline/ offline/
COPY app/ app/
COPY cli/ cli/
RUN bash scripts/container_build.sh project /opt/venv /src

# ---- demo-index: the daily chain on the bundled sample (only built for the demo target) ----
FROM offline-venv AS demo-index
ARG SAMPLE_SOURCE=movielens
ARG SAMPLE_EPOCHS=2
ENV PATH=/opt/venv/bin:$PATH
COPY data/ /src/data/
RUN bash scripts/container_build.sh sample-index /opt/m2grl/sample-index /src/data

# ---- runtime: what every image shares: no compilers, no pip cache, no source tree; a non-root user ----
FROM base AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    M2GRL_HOME=/opt/m2grl \
    M2GRL_INDEX_ROOT=/data/index \
    OMP_NUM_THREADS=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN groupadd --system --gid 10001 m2grl \
    && useradd --system --no-log-init --uid 10001 --gid m2grl --home-dir /opt/m2grl --shell /usr/sbin/nologin m2grl \
    && mkdir -p /data/index \
    && chown -R m2grl:m2grl /data
COPY scripts/container_build.sh scripts/container_start.sh /opt/m2grl/scripts/
WORKDIR /opt/m2grl
VOLUME ["/data"]

# ---- offline: the training stack and every package, for the daily chain (the CronJob's command) ----
FROM runtime AS offline
COPY --from=offline-venv /opt/venv /opt/venv
USER 10001:10001
CMD ["m2grl", "--help"]

# ---- serve-runtime: the service; healthy = ready (an index version loaded and validated) ----
FROM runtime AS serve-runtime
ENV M2GRL_PORT=8000 \
    M2GRL_WORKERS=2
COPY --from=serve-venv /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('M2GRL_PORT', '8000'), timeout=2)"]
CMD ["bash", "/opt/m2grl/scripts/container_start.sh"]

# ---- demo: serve + the sample index, seeded into an empty volume at start (opt-in: research data) ----
FROM serve-runtime AS demo
ENV M2GRL_SEED_SAMPLE=1
COPY --from=demo-index /opt/m2grl/sample-index /opt/m2grl/sample-index
COPY data/README.md /opt/m2grl/data/README.md

# ---- serve: the production image, and the default target (last) ----
FROM serve-runtime AS serve
LABEL org.opencontainers.image.title="m2grl-service" \
      org.opencontainers.image.description="M2GRL item-to-item candidate retrieval service (serving only)"
