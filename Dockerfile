# syntax=docker/dockerfile:1.7
# One image for every Atelier process; the Deployment picks the module through its args:
#   args: ["services.ledger"]            a gRPC service
#   args: ["services.ledger", "migrate"] its migrations
#   args: ["services.generation.worker"] the generation worker
#   args: ["gateway"]                    the HTTP gateway (the default)
# Build: docker build -t atelier:$(git rev-parse --short HEAD) .

# Pin by digest in your registry mirror for reproducible builds (python:3.11-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml ./
# Install the pinned runtime dependencies only: no extras, so neither the dev tools nor the `embedded` servers
# of the one-command run (PostgreSQL, nats-server and SeaweedFS binaries, ~200 MB): production gets those as
# services, so the image stays slim. This layer is cached until pyproject.toml changes.
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
PY
RUN pip install --require-virtualenv -r /tmp/requirements.txt
# The code runs from /app (not installed as a package) so that each service's migrations/ folder
# ships exactly as it is in the repository.
COPY atelier/ /app/atelier/
COPY kit/ /app/kit/
COPY services/ /app/services/
COPY gateway/ /app/gateway/
# Bytecode is compiled at build time (pip already compiled the dependencies): the root filesystem
# is read-only at run time.
RUN python -m compileall -q /app

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="atelier" \
      org.opencontainers.image.description="Atelier gateway, services and generation worker" \
      org.opencontainers.image.licenses="Proprietary"
# A fixed numeric uid/gid so that Kubernetes can verify runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 atelier \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin atelier
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    ATELIER_ENVIRONMENT=production \
    ATELIER_LOG_JSON=true
WORKDIR /app
USER 10001:10001
EXPOSE 8000 50051 50052 50053 50054 50055 50056 9090
# python is PID 1: the services and uvicorn install their own SIGTERM handlers (drain, then stop).
ENTRYPOINT ["python", "-m"]
CMD ["gateway"]
