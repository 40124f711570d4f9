# The mce-operator image: a wheel built from this source tree, installed with the operator's runtime
# dependencies only (no `demo` extra: no in-memory Kubernetes API, no kmock), run as a non-root user.
#   docker build -t mce-operator:0.1.0 .
# Liveness is checked by Kubernetes (deploy/ probes kopf's /healthz on :8080), so there is no HEALTHCHECK.
# tests/e2e/test_installed_wheel.py builds the wheel from exactly what the build stage copies and runs it.

# --- build: the wheel ----------------------------------------------------------------------------------
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# The examples ship inside the package (mce_operator.examples) for `mce-operator demo`.
COPY examples ./examples
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- runtime -------------------------------------------------------------------------------------------
FROM python:3.11.13-slim-bookworm

LABEL org.opencontainers.image.title="mce-operator" \
      org.opencontainers.image.description="Kubernetes operator (kopf) for SageMaker multi-container endpoints (MultiContainerEndpoint, sagemaker.mce.dev/v1alpha1)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed numeric uid/gid so that the pod's runAsUser/runAsNonRoot checks can verify it.
RUN groupadd --system --gid 10001 mce \
    && useradd --system --uid 10001 --gid mce --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin mce

# constraints.txt pins every dependency to the tested versions.
COPY constraints.txt /tmp/constraints.txt
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir -c /tmp/constraints.txt /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels /tmp/constraints.txt

USER 10001:10001
# 8080: kopf's liveness endpoint (/healthz); 8081: Prometheus metrics (/metrics).
EXPOSE 8080 8081
ENTRYPOINT ["mce-operator", "run"]
