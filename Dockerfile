# Build stage: turn the project into a wheel and install it with its dependencies into /opt/venv.
# Build tools (setuptools, pip itself) stay here; the final image gets only the virtualenv.
FROM python:3.12-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The build backend is pinned and installed up front (rather than fetched by build isolation)
# so that the same source always builds the same wheel.
RUN pip install --no-cache-dir setuptools==84.2.1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/

# The venv has no pip of its own: the build stage's pip installs into it through --python.
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install --no-cache-dir /wheels/*.whl

# Final stage: the same base (the venv's python links to its interpreter), the venv, nothing else.
FROM python:3.12-slim

# Where the source lives is given at build time (docker build --build-arg SOURCE_URL=https://...),
# so that forks and mirrors label their own images correctly.
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="vod-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Huawei Cloud VOD editing tasks" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed UID/GID so that mounted credential files and Kubernetes securityContext can refer to it.
# The home directory is where the SDK credentials file is looked for by default:
# mount it at /home/exporter/.huaweicloud/credentials, or set HUAWEICLOUD_SDK_CREDENTIALS_FILE.
RUN groupadd --gid 65532 exporter \
    && useradd --uid 65532 --gid 65532 --no-log-init --create-home --home-dir /home/exporter \
       --shell /usr/sbin/nologin exporter

COPY --from=build /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 65532:65532
WORKDIR /home/exporter

EXPOSE 9881

# The slim image has neither curl nor wget, so the probe is Python. It ignores any *_proxy
# variables given to the container: the exporter is on loopback, never behind a proxy.
# It assumes the default --web.listen-address (:9881); override HEALTHCHECK when changing it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request as r; r.build_opener(r.ProxyHandler({})).open('http://127.0.0.1:9881/-/healthy', timeout=4)"]

ENTRYPOINT ["vod-exporter"]
CMD ["serve"]
