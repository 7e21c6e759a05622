# syntax=docker/dockerfile:1
# M2GRL candidate-retrieval service.
#   docker build -t m2grl .                          CPU torch + faiss-cpu (default)
#   docker build --build-arg EXTRAS=gpu --build-arg TORCH_INDEX_URL= -t m2grl .
#                                                    GPU: the `gpu` extra (faiss-gpu-cu12) and PyPI's CUDA torch
#   docker run -p 8000:8000 m2grl                    serves the bundled sample index out of the box
# Every install step is scripts/container_build.sh, which tests/deploy runs in a temporary virtualenv;
# the start step is scripts/container_start.sh.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---- builder: the virtualenv (torch in its own layer, rebuilt only when TORCH_SPEC changes) ----
FROM base AS builder
ARG TORCH_SPEC=torch==2.13.0
# PyTorch's CPU-only wheels (about 200 MB instead of several GB of CUDA libraries); empty = PyPI only
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG EXTRAS=""
WORKDIR /src
COPY scripts/container_build.sh scripts/container_build.sh
RUN bash scripts/container_build.sh torch /opt/venv
COPY pyproject.toml README.md ./
COPY core/ core/
COPY model/ model/
COPY index/ index/
COPY offline/ offline/
COPY app/ app/
COPY cli/ cli/
RUN bash scripts/container_build.sh project /opt/venv /src "${EXTRAS}"

# ---- sample: the daily chain on the bundled sample, so the image serves without any volume ----
FROM builder AS sample
ARG SAMPLE_SOURCE=movielens
ARG SAMPLE_EPOCHS=2
ENV PATH=/opt/venv/bin:$PATH
COPY data/ /src/data/
RUN bash scripts/container_build.sh sample-index /opt/m2grl/sample-index /src/data

# ---- runtime: no compilers, no pip cache, no source tree; a non-root user ----
FROM base AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    M2GRL_HOME=/opt/m2grl \
    M2GRL_INDEX_ROOT=/data/index \
    M2GRL_PORT=8000 \
    M2GRL_WORKERS=2 \
    OMP_NUM_THREADS=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN groupadd --system --gid 10001 m2grl \
    && useradd --system --no-log-init --uid 10001 --gid m2grl --home-dir /opt/m2grl --shell /usr/sbin/nologin m2grl \
    && mkdir -p /data/index \
    && chown -R m2grl:m2grl /data
COPY --from=builder /opt/venv /opt/venv
COPY --from=sample /opt/m2grl/sample-index /opt/m2grl/sample-index
COPY data/ /opt/m2grl/data/
COPY scripts/container_build.sh scripts/container_start.sh /opt/m2grl/scripts/
USER 10001:10001
WORKDIR /opt/m2grl
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('M2GRL_PORT', '8000'), timeout=2)"]
CMD ["bash", "/opt/m2grl/scripts/container_start.sh"]
