# The mce-operator image: the operator installed from this source tree, run as a non-root user.
#   docker build -t mce-operator:0.1.0 .
# Liveness is checked by Kubernetes (deploy/deployment.yaml probes kopf's /healthz on :8080), so there is
# no HEALTHCHECK here.
FROM python:3.11-slim

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

# Only what the package build needs; constraints.txt pins every dependency to the tested versions.
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir -c constraints.txt . \
    && rm -rf /src

WORKDIR /
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["mce-operator", "run"]
