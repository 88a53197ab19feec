# kvcache and its far-memory node in one image, compiled in a builder stage.
#
#   docker build -t kvcache .
#   docker run --rm -p 127.0.0.1:11211:11211 kvcache      # embedded far node
#   docker build --build-arg BASE=kvcache-base:bookworm -t kvcache .   # docker/make-base.sh's base
#
# builder  BASE + gcc, libc6-dev (and python3-dev where BASE lacks Python.h) builds a wheel of
#          the package with its hot modules compiled (kvcache/compiled.py), installs it with its
#          dependencies into the venv /opt/venv and checks that they import compiled.
#          KVCACHE_REQUIRE_EXTENSIONS=1 makes setup.py fail instead of falling back to pure Python.
# final    the same BASE with no compiler: /opt/venv copied from the builder, a non-root user.
#
# Why a venv: python:3.11-slim's pip installs anywhere, but Debian's own python3 refuses
# `pip install` outside a venv (PEP 668); a venv works on both. Both stages start FROM the same
# BASE, so the venv's interpreter link (/usr/local/bin/python3 on python:slim, /usr/bin/python3
# on Debian's) holds in the final stage.
# Why copy the venv rather than the wheel: the final stage gets one layer of installed files.
# Installing the wheel there would leave a layer holding the wheel (a COPY stays in the image
# even when a later RUN deletes it) and download the dependencies a second time.
# Why two venvs in the builder: /opt/build has pip (and setuptools) to build with; /opt/venv is
# made without pip and `pip --python` installs only the package and its dependencies into it,
# so the image carries no packaging tools (25 MB). A derived image that needs pip in /opt/venv
# runs `python -m ensurepip`.
#
# The entry point is `kvcache`; docker-compose.yml runs `farserver` from the same image for the
# separate far node, and (with EXTRAS=loadtest) locust.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && if ! python3 -c 'import os, sys, sysconfig; \
            sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))'; then \
        apt-get install -y --no-install-recommends python3-dev; \
    fi \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/build \
    && python3 -m venv --without-pip /opt/venv
# `pip` is /opt/build's, `python` /opt/venv's.
ENV PATH=/opt/venv/bin:/opt/build/bin:$PATH

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY protocol ./protocol
COPY runtime ./runtime
COPY kvcache ./kvcache
COPY farserver ./farserver
COPY loadtest ./loadtest
# CFLAGS=-g0: extensions without debug information (Python's own CFLAGS say -g): 24 MB -> 5 MB.
RUN CFLAGS=-g0 KVCACHE_REQUIRE_EXTENSIONS=1 pip wheel --no-deps --wheel-dir /wheels .

# Optional extras of the package, e.g. "loadtest" for the locust image. Declared only here, so
# that images with other extras share the layers above (the compiled wheel among them).
ARG EXTRAS=""
# The check runs from / so that it imports the installed package, not the sources in /src.
RUN pip --python /opt/venv/bin/python install \
        "$(echo /wheels/kvcache-*.whl)${EXTRAS:+[$EXTRAS]}" \
    && cd / && python -c 'from kvcache import compiled; \
        pure = [m for m, ok in compiled.status().items() if not ok]; \
        assert not pure and not compiled.stale(), ("not compiled", pure, compiled.stale())'

FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

COPY --from=builder /opt/venv /opt/venv
# compose's locust service runs `locust -f /app/loadtest/locustfile.py` (the file imports the
# installed package); nothing else of the sources is in this stage.
WORKDIR /app
COPY loadtest/locustfile.py ./loadtest/
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin kvcache

USER kvcache
EXPOSE 11211 11311

# `version` must answer within 5 s; compose overrides it for the far node.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-m", "kvcache.healthcheck", "127.0.0.1:11211"]

ENTRYPOINT ["kvcache"]
CMD ["-l", "0.0.0.0", "-p", "11211"]
