"""docker-compose.yml and the Dockerfile, checked without building an image.

Spec (issue 6): services `far` (farserver) and `cache` (kvcache --far
far:11311, 11211 published on the host's loopback), the far node's secret
through a compose secret, healthchecks, a restart policy, memory limits that
match the -m flags, and `locust` under the `load` profile pointed at
`cache`. The Dockerfile: an official Python slim base, a non-root user,
`kvcache` as entry point, a HEALTHCHECK. Issue 11: two stages FROM the same
`BASE` (an ARG, python:3.11-slim by default); the builder installs a C
compiler, builds the wheel with KVCACHE_REQUIRE_EXTENSIONS=1, installs it
into the venv /opt/venv and checks that it runs compiled; the final stage
copies that venv and has no compiler; nothing built on the host enters the
build context.

Building the image takes minutes and a base image (there is no registry
here; README "Docker compose" says how it was built and run by hand), so no
image is built and no container run. Instead: `docker-compose config`
validates the file (docker-compose 1.29.2 from PyPI, in the test extra: the
venv's own, never a system one, and never skipped), and every command line
the file and the Dockerfile run (entry point + command, each healthcheck)
runs here as a local process with only the addresses substituted: 0.0.0.0 ->
127.0.0.1, fixed ports -> ephemeral ones, service names -> 127.0.0.1:PORT,
/run/secrets/far_secret -> a temporary file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml  # docker-compose's own dependency (PyYAML 5.4.1)
from oracle import Proc, free_port
from pymemcache.client.base import Client

from kvcache import compiled

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPOSE = os.path.join(ROOT, "docker-compose.yml")
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
BIN = os.path.dirname(sys.executable)  # the venv's scripts: kvcache, farserver, locust, compose
DOCKER_COMPOSE = os.path.join(BIN, "docker-compose")
SECRET_IN_CONTAINER = "/run/secrets/far_secret"
CERT_SECRETS = {  # compose secret -> the file of docker/make-certs.sh it holds
    "tls_ca": "ca.crt",
    "far_tls_cert": "server.crt",
    "far_tls_key": "server.key",
    "cache_tls_cert": "client.crt",
    "cache_tls_key": "client.key",
}
MIB = 1 << 20

# The memory rule of README "Tuning", from RSS measured on the dev machine
# (CPython 3.11, items set with replies; README gives the commands).
FAR_HEADROOM_MIB = 96  # over -m: interpreter ~25 MB; 516 MB RSS at -m 512 full of 100-B items,
#                        294 MB at -m 256 full of 64 KiB values
CACHE_BASE_MIB = 32  # kvcache's RSS before any item (31 MB)
CACHE_INDEX_PER_HEAP = 1.0  # resident index per heap byte: 0.55 (100-B values), 0.8 (10-B)
FAR_ITEM_COST = 384 + 116  # farserver's charge for a 16-byte key + 100-byte value
CACHE_PER_FAR_KEY = 4  # the cuckoo filter, bytes per key held far (~2.6 measured)
CACHE_CONN_MIB = 64  # connection buffers: replies in flight, requests read ahead


def _compose(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    if not os.access(DOCKER_COMPOSE, os.X_OK):
        pytest.fail(f"{DOCKER_COMPOSE} is missing: pip install -e '.[test]' (make test does)")
    return subprocess.run(
        [DOCKER_COMPOSE, "-f", COMPOSE, *args], capture_output=True, timeout=60, env=env, cwd=ROOT
    )


@pytest.fixture(scope="module")
def config() -> dict:
    """`docker-compose config` (the file as docker-compose resolves it) as a dict."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KVCACHE_")}
    done = _compose("config", env=env)
    assert done.returncode == 0, done.stderr.decode()
    return yaml.safe_load(done.stdout)


def _flag(argv: list[str], *names: str) -> str:
    for i, arg in enumerate(argv[:-1]):
        if arg in names:
            return argv[i + 1]
    raise AssertionError(f"none of {names} in {argv}")


def _bytes(limit: str) -> int:
    m = re.fullmatch(r"(\d+)([bkmg]?)", str(limit).lower())
    assert m, limit
    return int(m.group(1)) * {"": 1, "b": 1, "k": 1024, "m": MIB, "g": 1 << 30}[m.group(2)]


def test_config_is_valid_and_has_the_services(config):
    assert set(config["services"]) == {"far", "cache", "locust"}
    assert config["services"]["locust"]["profiles"] == ["load"]
    assert "profiles" not in config["services"]["far"]
    assert "profiles" not in config["services"]["cache"]
    assert _compose("config", "--profiles").stdout.split() == [b"load"]
    assert _compose("config", "-q").returncode == 0


def test_cache_points_at_far_and_is_published_on_loopback(config):
    cache = config["services"]["cache"]
    assert _flag(cache["command"], "--far") == "far:11311"
    assert _flag(config["services"]["far"]["command"], "-p", "--port") == "11311"
    assert cache["ports"] == ["127.0.0.1:11211:11211/tcp"]
    assert cache["depends_on"] == {"far": {"condition": "service_healthy"}}
    assert "ports" not in config["services"]["far"]  # reachable only on the compose network
    locust = config["services"]["locust"]
    assert _flag(locust["command"], "--host") == "cache:11211"
    assert locust["ports"] == ["127.0.0.1:8089:8089/tcp"]


def test_bind_address_can_be_overridden():
    env = dict(os.environ, KVCACHE_BIND="0.0.0.0", KVCACHE_PORT="22122")
    done = _compose("config", env=env)
    assert done.returncode == 0
    assert b"0.0.0.0:22122:11211/tcp" in done.stdout


def test_secret_goes_through_a_compose_secret(config):
    assert config["secrets"]["far_secret"]["file"] == os.path.join(ROOT, "secrets", "far_secret")
    for name in ("far", "cache"):
        svc = config["services"][name]
        assert {"source": "far_secret"} in svc["secrets"]
        assert _flag(svc["command"], "--secret-file") == SECRET_IN_CONTAINER
        assert not any("secret" in k.lower() for k in svc.get("environment", {}))


def test_cache_and_far_authenticate_each_other_over_tls(config):
    certs = os.path.join(ROOT, "certs")
    for name, file in CERT_SECRETS.items():
        assert config["secrets"][name]["file"] == os.path.join(certs, file)
    far, cache = config["services"]["far"], config["services"]["cache"]
    held = {s["source"] for s in far["secrets"]}
    assert {"far_tls_cert", "far_tls_key", "tls_ca"} <= held
    assert _flag(far["command"], "--tls-cert") == "/run/secrets/far_tls_cert"
    assert _flag(far["command"], "--tls-ca") == "/run/secrets/tls_ca"  # clients need certificates
    assert {"tls_ca", "cache_tls_cert", "cache_tls_key"} <= {s["source"] for s in cache["secrets"]}
    assert _flag(cache["command"], "--far-tls-ca") == "/run/secrets/tls_ca"
    assert _flag(cache["command"], "--far-tls-cert") == "/run/secrets/cache_tls_cert"
    assert _flag(far["healthcheck"]["test"], "--tls-cert") == "/run/secrets/cache_tls_cert"


def test_healthchecks_and_restart_policy(config):
    services = config["services"]
    for name in ("far", "cache"):
        svc = services[name]
        assert svc["restart"] == "unless-stopped"
        assert svc["healthcheck"]["test"][:4] == ["CMD", "python", "-m", "kvcache.healthcheck"]
    assert "--far" in services["far"]["healthcheck"]["test"]
    assert services["locust"]["healthcheck"]["test"] == ["NONE"]  # the image's is for kvcache


def test_memory_limits_match_the_flags(config):
    far, cache = config["services"]["far"], config["services"]["cache"]
    far_mib = int(_flag(far["command"], "-m", "--memory-limit"))
    heap_mib = int(_flag(cache["command"], "-m", "--memory-limit"))
    far_limit, cache_limit = _bytes(far["mem_limit"]), _bytes(cache["mem_limit"])
    # The far node: its accounted objects plus the interpreter and buffers, not much more.
    assert far_mib * MIB + FAR_HEADROOM_MIB * MIB <= far_limit <= 1.5 * far_mib * MIB
    # The cache: heap + resident index + filter for every key the far node can hold.
    far_keys = far_mib * MIB // FAR_ITEM_COST
    need = (CACHE_BASE_MIB + heap_mib * (1 + CACHE_INDEX_PER_HEAP) + CACHE_CONN_MIB) * MIB
    need += far_keys * CACHE_PER_FAR_KEY
    assert need <= cache_limit <= 2 * need, (need / MIB, cache_limit / MIB)


def _dockerfile() -> tuple[dict[str, str], list[dict[str, list[str]]]]:
    """The ARGs before the first FROM (name -> default), and each stage: instruction -> args."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = re.sub(r"\\\n\s*", " ", f.read())  # join continued lines
    args: dict[str, str] = {}
    stages: list[dict[str, list[str]]] = []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if not word.isupper():
            continue
        if word == "FROM":
            stages.append({})
        elif not stages:
            assert word == "ARG", line
            name, _, default = rest.partition("=")
            args[name] = default
            continue
        stages[-1].setdefault(word, []).append(rest.strip())
    return args, stages


def _env(stage: dict[str, list[str]]) -> dict[str, str]:
    """A stage's ENV settings (the KEY=VALUE form), name -> value."""
    pairs = (item.partition("=") for env in stage.get("ENV", []) for item in env.split())
    return {name: value for name, _, value in pairs}


def _final() -> dict[str, str]:
    """The final stage's instructions (the last of each), as the image runs them."""
    return {word: found[-1] for word, found in _dockerfile()[1][-1].items()}


def _ignore_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as Docker matches it: `**` any directories, `*` within one."""
    out = ""
    for token in re.split(r"(\*\*/|/\*\*$|\*\*|\*|\?)", pattern.strip("/")):
        out += {"**/": "(.*/)?", "/**": "(/.*)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        )
    return re.compile(out)


def _ignore_lines() -> list[str]:
    """The patterns of .dockerignore."""
    with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def _ignored(path: str) -> bool:
    """Whether .dockerignore keeps path out of the build context (a parent matching counts)."""
    patterns = _ignore_lines()
    assert not any(p.startswith("!") for p in patterns), "exceptions: extend _ignored"
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(_ignore_regex(p).fullmatch(prefix) for p in patterns for prefix in prefixes)


def test_dockerfile_has_a_builder_and_a_final_stage_on_one_base():
    args, stages = _dockerfile()
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", args["BASE"]), args
    assert [stage["FROM"] for stage in stages] == [["${BASE} AS builder"], ["${BASE}"]]


def test_dockerfile_builder_compiles_and_refuses_a_pure_build():
    builder = _dockerfile()[1][0]
    runs = builder["RUN"]
    apt = next(run for run in runs if "apt-get install" in run)
    assert "--no-install-recommends" in apt
    assert {"gcc", "libc6-dev"} <= set(apt.split())
    assert "python3-dev" in apt  # only where the base lacks Python.h (Debian's python3)
    # pip in a venv of its own; /opt/venv (the one shipped) gets no packaging tools.
    assert any("python3 -m venv --without-pip /opt/venv" in run for run in runs)
    assert _env(builder)["PATH"] == "/opt/venv/bin:/opt/build/bin:$PATH"
    assert any("setup.py" in copy.split()[:-1] for copy in builder["COPY"])
    build = next(run for run in runs if "pip wheel" in run)
    env, _, command = build.partition("pip wheel")
    assert "KVCACHE_REQUIRE_EXTENSIONS=1" in env.split() and command.startswith(" --no-deps")
    install = next(
        run for run in runs if run.startswith("pip --python /opt/venv/bin/python install")
    )
    assert "${EXTRAS:+[$EXTRAS]}" in install.split("&&")[0]  # the locust image's extra
    assert runs.index(build) < runs.index(install)
    assert builder["ARG"] == ['EXTRAS=""']  # after the wheel: every image shares its build
    # The installed package (not /src's sources) imports compiled and up to date.
    check = install[install.index("cd / && python -c") :]
    assert "compiled.status()" in check and "compiled.stale()" in check and "assert" in check


def test_dockerfile_final_stage_ships_the_venv_without_a_compiler():
    final = _dockerfile()[1][-1]
    assert "COPY" in final and "RUN" in final
    assert "--from=builder /opt/venv /opt/venv" in final["COPY"]
    assert not any("--from" in copy for copy in final["COPY"][1:])  # no wheel, no build tree
    for run in final["RUN"]:
        assert not re.search(r"apt-get|gcc|pip ", run), run
    assert _env(final)["PATH"] == "/opt/venv/bin:$PATH"
    # compose's locust runs this path; every other source stays in the builder.
    assert final["COPY"][1:] == ["loadtest/locustfile.py ./loadtest/"]
    assert final["WORKDIR"] == ["/app"]


def test_dockerfile_runs_kvcache_as_a_user_with_a_healthcheck():
    d = _final()
    assert d["USER"] not in ("root", "0")
    assert "useradd" in d["RUN"] and "--uid 10001" in d["RUN"]
    assert json.loads(d["ENTRYPOINT"]) == ["kvcache"]
    assert "CMD [" in d["HEALTHCHECK"]
    assert d["EXPOSE"].split() == ["11211", "11311"]


def test_dockerignore_keeps_host_builds_out_and_sources_in():
    assert {".venv", ".git", "secrets"} <= {p.strip("/") for p in _ignore_lines()}
    for path in (".venv/bin/python", "build/lib/x.so", "secrets/far_secret", "tests/oracle.py"):
        assert _ignored(path), path
    for module in compiled.MODULES:
        stem = module[: -len(".py")]
        assert _ignored(f"{stem}.c") and _ignored(f"{stem}.cpython-311-x86_64-linux-gnu.so")
        assert _ignored(f"{os.path.dirname(module)}/__pycache__/x.cpython-311.pyc")
        assert not _ignored(module) and not _ignored(f"{stem}.pxd"), module
    assert not _ignored("loadtest/cloadgen.c")  # ours, not generated
    for stage in _dockerfile()[1]:
        for copy in stage["COPY"]:
            if not copy.startswith("--from"):
                for source in copy.split()[:-1]:
                    assert not _ignored(source), copy


# -- the command lines, run locally ------------------------------------------------


def _local(argv: list[str], subst: dict[str, str]) -> list[str]:
    """The container command line as run here: programs from the venv, local addresses."""
    out = []
    for i, arg in enumerate(argv):
        if i == 0 and arg in ("kvcache", "farserver", "locust"):
            arg = os.path.join(BIN, arg)
        elif i == 0 and arg == "python":
            arg = sys.executable
        elif i and argv[i - 1] in ("-p", "--port") and arg.isdigit():
            arg = "0"  # an ephemeral port, read back from the startup line
        else:
            arg = subst.get(arg, arg)
            if arg.startswith("/app/"):
                arg = os.path.join(ROOT, arg[len("/app/") :])
        out.append(arg)
    return out


def _healthy(test: list[str], subst: dict[str, str]) -> subprocess.CompletedProcess:
    assert test[0] == "CMD"
    return subprocess.run(_local(test[1:], subst), capture_output=True, timeout=30)


def _certs_subst(where) -> dict[str, str]:
    """Test certificates (docker/make-certs.sh) for the compose file's TLS secrets."""
    subprocess.run(
        ["sh", os.path.join(ROOT, "docker", "make-certs.sh"), str(where)],
        check=True,
        capture_output=True,
    )
    return {f"/run/secrets/{name}": str(where / file) for name, file in CERT_SECRETS.items()}


def test_compose_command_lines_run(config, tmp_path):
    secret = tmp_path / "far_secret"
    secret.write_text("a-compose-secret\n")
    subst = {"0.0.0.0": "127.0.0.1", SECRET_IN_CONTAINER: str(secret)}
    subst |= _certs_subst(tmp_path / "certs")
    services = config["services"]
    far_cmd = services["far"]["entrypoint"] + services["far"]["command"]
    far = Proc(_local(far_cmd, subst))
    cache = locust = None
    try:
        subst |= {"far:11311": f"127.0.0.1:{far.port}", "127.0.0.1:11311": f"127.0.0.1:{far.port}"}
        check = _healthy(services["far"]["healthcheck"]["test"], subst)
        assert check.returncode == 0, check.stderr
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-secret\n")
        refused = _healthy(
            services["far"]["healthcheck"]["test"], subst | {SECRET_IN_CONTAINER: str(wrong)}
        )
        assert refused.returncode == 1  # the node really requires the secret

        # The cache service has no entrypoint of its own: the image's, `kvcache`.
        cache = Proc(_local(["kvcache", *services["cache"]["command"]], subst))
        subst |= {
            "127.0.0.1:11211": f"127.0.0.1:{cache.port}",
            "cache:11211": f"127.0.0.1:{cache.port}",
        }
        check = _healthy(services["cache"]["healthcheck"]["test"], subst)
        assert check.returncode == 0, check.stderr
        client = Client(("127.0.0.1", cache.port), default_noreply=False, timeout=5)
        assert client.set("compose", b"works")
        assert client.get("compose") == b"works"
        settings = client.stats("settings")
        assert settings[b"far"] == f"127.0.0.1:{far.port}".encode()
        deadline = time.monotonic() + 10
        while client.stats()[b"far_available"] != 1:  # authenticated with the secret
            assert time.monotonic() < deadline, b"\n".join(cache.lines[-5:])
            time.sleep(0.1)
        client.close()

        web = free_port()
        subst |= {"8089": str(web)}
        locust = Proc(
            _local(services["locust"]["entrypoint"] + services["locust"]["command"], subst),
            ready=None,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=2) as page:
                    assert page.status == 200
                    break
            except OSError:
                assert locust.proc.poll() is None, b"".join(locust.lines[-10:])
                assert time.monotonic() < deadline, b"".join(locust.lines[-10:])
                time.sleep(0.2)
    finally:
        for proc in (locust, cache, far):
            if proc is not None:
                proc.stop()
    assert cache.proc.returncode == 0 and far.proc.returncode == 0


def test_dockerfile_command_line_runs(tmp_path):
    d = _final()
    argv = json.loads(d["ENTRYPOINT"]) + json.loads(d["CMD"])
    subst = {"0.0.0.0": "127.0.0.1"}
    server = Proc(_local(argv, subst))  # kvcache with its embedded far node
    try:
        health = json.loads(d["HEALTHCHECK"][d["HEALTHCHECK"].index("CMD [") + 4 :])
        subst["127.0.0.1:11211"] = f"127.0.0.1:{server.port}"
        check = subprocess.run(_local(health, subst), capture_output=True, timeout=30)
        assert check.returncode == 0, check.stderr
        assert check.stdout.startswith(b"VERSION ")
    finally:
        assert server.stop() == 0


def _config_of(file: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KVCACHE_")}
    done = subprocess.run(
        [DOCKER_COMPOSE, "-f", os.path.join(ROOT, file), "config"],
        capture_output=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr.decode()
    return yaml.safe_load(done.stdout)


def _same_far(far: dict, base: dict) -> None:
    """A far node of another file: docker-compose.yml's far (extended; secrets reordered)."""
    key = lambda svc: {**svc, "secrets": sorted(s["source"] for s in svc["secrets"])}  # noqa: E731
    assert key(far) == key(base)


def _node_like_cache(node: dict, cache: dict, far: str) -> None:
    """A kvcache service of another file: docker-compose.yml's cache with another --far."""
    assert _flag(node["command"], "--far") == far
    for flag in ("-m", "--secret-file", "--far-tls-ca", "--far-tls-cert", "--far-tls-key"):
        assert _flag(node["command"], flag) == _flag(cache["command"], flag), flag
    for key in ("healthcheck", "restart", "mem_limit", "stop_grace_period"):
        assert node[key] == cache[key], key
    assert sorted(map(str, node["secrets"])) == sorted(map(str, cache["secrets"]))


def test_replicated_file_is_three_far_nodes_and_two_replicas(config):
    rep = _config_of("docker-compose.replicated.yml")
    assert set(rep["services"]) == {"far1", "far2", "far3", "cache"}
    for name in ("far1", "far2", "far3"):
        _same_far(rep["services"][name], config["services"]["far"])
    cache = rep["services"]["cache"]
    _node_like_cache(cache, config["services"]["cache"], "far1:11311,far2:11311,far3:11311")
    assert _flag(cache["command"], "--far-replicas") == "2"
    assert cache["ports"] == ["127.0.0.1:11211:11211/tcp"]
    assert cache["depends_on"] == {
        f: {"condition": "service_healthy"} for f in ("far1", "far2", "far3")
    }
    assert rep["secrets"] == config["secrets"]


def test_cluster_file_is_two_nodes_behind_twemproxy(config):
    cl = _config_of("docker-compose.cluster.yml")
    assert set(cl["services"]) == {"far1", "far2", "kvcache1", "kvcache2", "twemproxy"}
    for name in ("far1", "far2"):
        _same_far(cl["services"][name], config["services"]["far"])
    for i in (1, 2):
        node = cl["services"][f"kvcache{i}"]
        _node_like_cache(node, config["services"]["cache"], f"far{i}:11311")
        assert node["ports"] == [f"127.0.0.1:{11211 + i}:11211/tcp"]
        assert node["depends_on"] == {f"far{i}": {"condition": "service_healthy"}}
    proxy = cl["services"]["twemproxy"]
    assert proxy["image"] == "kvcache-twemproxy:local"
    assert proxy["build"]["context"] == os.path.join(ROOT, "docker", "twemproxy")
    assert proxy["ports"] == ["127.0.0.1:11211:11211/tcp"]
    assert set(proxy["depends_on"]) == {"kvcache1", "kvcache2"}
    with open(os.path.join(ROOT, "docker", "twemproxy", "nutcracker.yml")) as f:
        pool = yaml.safe_load(f)["kvcache"]
    assert pool["listen"] == "0.0.0.0:11211" and pool["distribution"] == "ketama"
    assert pool["auto_eject_hosts"] is False  # a node's keys never move to the other node
    assert pool["servers"] == ["kvcache1:11211:1 kvcache1", "kvcache2:11211:1 kvcache2"]


def test_test_certificate_names_every_far_node(tmp_path):
    _certs_subst(tmp_path)
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", tmp_path / "server.crt"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    names = {n.strip() for n in text.splitlines()[1].split(",")}
    for host in ("far", "far1", "far2", "far3", "cache", "kvcache", "localhost"):
        assert f"DNS:{host}" in names, host


def test_tls_override_adds_client_tls_to_the_cache(config):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KVCACHE_")}
    done = subprocess.run(
        [DOCKER_COMPOSE, "-f", COMPOSE, "-f", os.path.join(ROOT, "docker-compose.tls.yml")]
        + ["config"],
        capture_output=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr.decode()
    tls = yaml.safe_load(done.stdout)
    cache, plain = tls["services"]["cache"], config["services"]["cache"]
    extra = ["-Z", "--tls-cert", "/run/secrets/far_tls_cert", "--tls-key"]
    assert cache["command"] == plain["command"] + extra + ["/run/secrets/far_tls_key"]
    assert {"far_tls_cert", "far_tls_key"} <= {s["source"] for s in cache["secrets"]}
    assert _flag(cache["healthcheck"]["test"], "--tls-ca") == "/run/secrets/tls_ca"
    for key in ("ports", "depends_on", "mem_limit", "restart"):
        assert cache[key] == plain[key], key
    _same_far(tls["services"]["far"], config["services"]["far"])
