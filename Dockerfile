# kvcache and its far-memory node in one image.
#
#   docker build -t kvcache .
#   docker run --rm -p 127.0.0.1:11211:11211 kvcache      # embedded far node
#
# The entry point is `kvcache`; docker-compose.yml runs `farserver` from the
# same image for the separate far node, and (with EXTRAS=loadtest) locust.
FROM python:3.11-slim-bookworm

# Optional extras of the package, e.g. "loadtest" for the locust image.
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY protocol ./protocol
COPY runtime ./runtime
COPY kvcache ./kvcache
COPY farserver ./farserver
COPY loadtest ./loadtest
RUN pip install ".${EXTRAS:+[$EXTRAS]}" \
    && useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin kvcache

USER kvcache
EXPOSE 11211 11311

# `version` must answer within 5 s; compose overrides it for the far node.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-m", "kvcache.healthcheck", "127.0.0.1:11211"]

ENTRYPOINT ["kvcache"]
CMD ["-l", "0.0.0.0", "-p", "11211"]
