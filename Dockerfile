# syntax=docker/dockerfile:1
# serval's container image: `serval serve /models --host 0.0.0.0`, as a non-root user.
#   docker build -t serval:0.1.0 .
#   docker build --build-arg EXTRAS=onnx,grpc,redis,postgresql -t serval:0.1.0-onnx .
#   docker run -p 8080:8080 -p 8081:8081 -v "$PWD/models:/models:ro" serval:0.1.0
# Two stages: the build stage installs serval and its extras into a virtual environment; the
# final stage copies only that environment onto a fresh base, so no pip, wheel cache or build
# tool reaches the image. deploy/container/build-without-registry.sh builds this same file
# from a Debian base made by debootstrap (PYTHON_IMAGE), without a registry.

# Any image with python3 >= 3.11 (and its venv module) at the same path in both stages.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Extras (pyproject.toml) installed with serval: the runtimes, gRPC, the shared state's
# clients. Add s3 for an s3:// repository, observability for tracing, monitoring for drift.
ARG EXTRAS=onnx,grpc,sklearn,xgboost,lightgbm,redis,postgresql,s3
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the package build reads (.dockerignore keeps the rest of the context out).
COPY pyproject.toml README.md ./
COPY src ./src
RUN python3 -m venv /opt/serval \
 && /opt/serval/bin/pip install --no-cache-dir "/src[${EXTRAS}]" \
 # Compile once here: the final image's root file system is read-only in Kubernetes, so
 # Python could not write its caches at run time.
 && /opt/serval/bin/python -m compileall -q -j 0 /opt/serval/lib \
 # pip and setuptools are not needed to run serval.
 && /opt/serval/bin/pip uninstall -y -q pip setuptools \
 && rm -rf /root/.cache

FROM ${PYTHON_IMAGE}
ARG EXTRAS=onnx,grpc,sklearn,xgboost,lightgbm,redis,postgresql,s3
LABEL org.opencontainers.image.title="serval" \
      org.opencontainers.image.description="Model server: Open Inference Protocol (V2) REST and gRPC" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.serval.extras="${EXTRAS}"
# A fixed numeric uid/gid (10001) so that Kubernetes' runAsNonRoot can check it, and files on
# volumes have a known owner. /models is where the model repository is mounted;
# /var/lib/serval is serval's state (SQLite store, spills, the s3 cache): a volume in Kubernetes.
RUN groupadd --system --gid 10001 serval \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/serval --no-create-home \
        --shell /usr/sbin/nologin serval \
 && mkdir -p /models /var/lib/serval \
 && chown 10001:10001 /var/lib/serval
COPY --from=build /opt/serval /opt/serval
ENV PATH=/opt/serval/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/serval \
    SERVAL_STATE_DIR=/var/lib/serval
USER 10001:10001
WORKDIR /var/lib/serval
EXPOSE 8080 8081
# Ready, not just live: a container whose models failed to load is unhealthy. Plain HTTP on
# SERVAL_HTTP_PORT (with TLS, probe through your orchestrator instead). Kubernetes ignores
# HEALTHCHECK and uses the Deployment's probes (deploy/kubernetes).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; port = os.environ.get('SERVAL_HTTP_PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/v2/health/ready', timeout=2).status == 200 else 1)"]
# SIGTERM (docker stop, Kubernetes) drains: not ready, requests in flight finish, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["serval"]
CMD ["serve", "/models", "--host", "0.0.0.0"]
