# syntax=docker/dockerfile:1
# flowfence container image: docker build -t flowfence:0.1.0 .   (or podman build / buildah bud)
#
# Stage 1 builds the flowfence wheel (sql/ ships inside it as flowfence/sql) and downloads the
# wheels of its runtime closure at the versions pinned in requirements/runtime.txt (the runtime
# lock: the runtime dependencies and the s3 extra, so one image serves every deploy/ overlay;
# no other extra, no dev tools). Stage 2 installs them from that folder only (--no-index): the
# final stage needs no network, and the image downloads nothing when it runs (no DuckDB
# extensions, no data). To have the builder enforce it, build stage 1 first, then the rest with
# the network off (stage 1 comes from the cache):
#   docker build --target build . && docker build --network=none -t flowfence:0.1.0 .
# (`RUN --network=none` would say it here, but buildah 1.28 and podman 4, Debian 12's, reject
# it.) tests/test_image.py runs these stages' commands in order, the final one offline.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/runtime.txt requirements/
COPY jobs/ jobs/
COPY sql/ sql/
# Only binary wheels: the final stage has no compiler and builds nothing. The pip cache is a
# build cache, so a rebuild does not download the same wheels again.
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m pip download --only-binary :all: --no-deps --dest /wheels \
      --requirement requirements/runtime.txt

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
# The wheels, the lock and sql/ are bind-mounted for this one step, so none stays in a layer.
# Then the proof: the entry point answers, and the installed package holds every query of the
# checkout's sql/ (the list read from there, the queries from the package), loadable by name.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=requirements/runtime.txt,target=/tmp/runtime.txt \
    --mount=type=bind,source=sql,target=/tmp/sql \
    python -m pip install --no-index --find-links /wheels --constraint /tmp/runtime.txt \
      'flowfence[s3]' \
 && flowfence --version \
 && python -c "import pathlib, flowfence, flowfence.core.sql as s; \
want = sorted(p.stem for p in pathlib.Path('/tmp/sql').glob('*.sql')); \
got = s.names(); \
assert want and got == want, ('shipped', got, 'expected', want); \
assert s.sql_dir() == pathlib.Path(flowfence.__file__).resolve().parent / 'sql', s.sql_dir(); \
[s.load(name) for name in got]"
WORKDIR /tmp
# Numeric, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["flowfence"]
CMD ["--help"]
