# flowfence container image: docker build -t flowfence:0.1.0 .
#
# Stage 1 builds the flowfence wheel (sql/ ships inside it as flowfence/sql) and collects the
# wheels of every dependency at the versions pinned in constraints.txt. Stage 2 installs them
# from that local folder only (--no-index): the runtime stage never reaches a package index,
# and the image downloads nothing when it runs (no DuckDB extensions, no data).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY jobs/ jobs/
COPY sql/ sql/
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m pip wheel --constraint constraints.txt --wheel-dir /wheels /wheels/flowfence-*.whl

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="flowfence" \
      org.opencontainers.image.description="Least-privilege Calico namespace-isolation policies learned from flow logs" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN groupadd --system --gid 10001 flowfence \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin flowfence
# Wheels and constraints are bind-mounted for this one step, so neither stays in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=constraints.txt,target=/tmp/constraints.txt \
    python -m pip install --no-index --find-links /wheels --constraint /tmp/constraints.txt flowfence \
 && flowfence --version \
 && python -c "import flowfence.core.sql as s; assert 'edges' in s.names(), s.names()"
WORKDIR /tmp
# Numeric, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["flowfence"]
CMD ["--help"]
