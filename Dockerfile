# syntax=docker/dockerfile:1
# smtp-canary-exporter: build a wheel, install it into a venv, copy the venv into a clean
# slim image that runs as a fixed non-root UID.
#
#   docker build -t smtp-canary-exporter .
#   docker run --rm -p 9925:9925 smtp-canary-exporter demo --web.listen-address=:9925
#
# Offline builds: put every wheel in ./wheelhouse and pass
#   --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheelhouse

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG PIP_NO_INDEX=
ARG PIP_FIND_LINKS=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INDEX=${PIP_NO_INDEX} \
    PIP_FIND_LINKS=${PIP_FIND_LINKS}
WORKDIR /src
COPY . /src
# A venv, the wheel of this package, then the wheel and its dependencies into the venv
# (binary wheels only: no compiler is needed here, and none reaches the final image).
RUN python3 -m venv /opt/smtp-canary-exporter \
 && /opt/smtp-canary-exporter/bin/pip wheel --no-deps --wheel-dir /dist /src \
 && /opt/smtp-canary-exporter/bin/pip install --only-binary=:all: /dist/*.whl \
 && /opt/smtp-canary-exporter/bin/smtp-canary-exporter --version

FROM ${PYTHON_IMAGE}
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="smtp-canary-exporter" \
      org.opencontainers.image.description="Prometheus exporter and synthetic probe for outgoing mail relays" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/smtp-canary-exporter/smtp-canary-exporter" \
      org.opencontainers.image.documentation="https://github.com/smtp-canary-exporter/smtp-canary-exporter#readme"

# A fixed UID/GID so Kubernetes' runAsNonRoot can check it and volumes can be chowned to it.
RUN groupadd --system --gid 10001 smtp-canary \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/smtp-canary-exporter --shell /usr/sbin/nologin smtp-canary \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/smtp-canary-exporter \
 && install -d -m 0755 /etc/smtp-canary-exporter

COPY --from=build /opt/smtp-canary-exporter /opt/smtp-canary-exporter
ENV PATH=/opt/smtp-canary-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    STATE_DIRECTORY=/var/lib/smtp-canary-exporter

USER 10001:10001
WORKDIR /var/lib/smtp-canary-exporter
EXPOSE 9925
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9925/-/healthy', timeout=4)"]
ENTRYPOINT ["smtp-canary-exporter"]
CMD ["run", "--config.file=/etc/smtp-canary-exporter/config.yaml"]
