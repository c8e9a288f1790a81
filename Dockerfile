# The directlb image: `directlb controller` by default; `docker run IMAGE clb-emulator ...` and the
# other subcommands work too. Deployed by deploy/ (docs/deploy.md).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY directlb ./directlb
# pip byte-compiles the package while installing, so nothing needs writing at run time
# (deploy/ mounts the root filesystem read-only).
RUN pip install . \
    && rm -rf /src \
    && groupadd --system --gid 65532 directlb \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin directlb

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# Webhook (HTTPS) and metrics/health.
EXPOSE 9443 8080

ENTRYPOINT ["directlb"]
CMD ["controller"]
