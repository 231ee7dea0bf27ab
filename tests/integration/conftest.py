"""Shared fixtures for the integration tests.

Every test gets real processes on free loopback ports: `redis-server` shards and
the real `build/shardgate` (or $SHARDGATE_BIN), started with a config written to
the test's tmp_path. Every process a test starts is registered with the `procs`
fixture, whose teardown stops it (SIGTERM, bounded wait, SIGKILL) whether the
test passed or not (hermetic tests).
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parents[2]
SHARDGATE_BIN = Path(os.environ.get("SHARDGATE_BIN", REPO / "build" / "shardgate"))

STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


# ---------------------------------------------------------------- ports, sockets


def free_port() -> int:
    """A loopback port nobody listens on right now (bind port 0, then close).

    Only for redis-server, which cannot listen on port 0: its starter retries
    with another port if one is taken in between. shardgate listens on port 0
    and the tests read its ports from its log; an address that must refuse
    connections is `refused_address()`, held for the whole test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None,
                  timeout: float = STARTUP_TIMEOUT_S, describe=lambda: "") -> None:
    """Polls a TCP connect until it succeeds; fails early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process exited with code {proc.returncode} before "
                        f"127.0.0.1:{port} was listening\n{describe()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"127.0.0.1:{port} not listening after {timeout} s\n{describe()}")
        time.sleep(0.05)


def tls_client_context(cafile: Path | str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    ctx.check_hostname = False
    if cafile is None:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_socket(port: int, cafile: Path | str, timeout: float = 5.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return tls_client_context(cafile).wrap_socket(raw, server_hostname="localhost")


def recv_until(sock: socket.socket, needle: bytes, timeout: float = 5.0) -> bytes:
    """Reads until `needle` appears, EOF, or timeout; returns what was read."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = b""
    while needle not in data and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ssl.SSLError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def recv_until_eof(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Reads until the peer closes; returns (data, closed)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


# ---------------------------------------------------------------- processes


class Procs:
    """Registry of started processes; stop_all() runs in fixture teardown."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []

    def start(self, args: list[str], log_path: Path, **kw) -> subprocess.Popen:
        log = open(log_path, "wb")
        try:
            proc = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, **kw)
        finally:
            log.close()  # the child holds its own descriptor
        self._procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self._procs):
            stop_process(proc)
        self._procs.clear()


def stop_process(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass


@pytest.fixture
def procs():
    registry = Procs()
    try:
        yield registry
    finally:
        registry.stop_all()


# ---------------------------------------------------------------- redis-server


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen
    log_path: Path
    password: str | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **kw) -> redis.Redis:
        """redis-py straight to the shard, bypassing shardgate."""
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kw)


def wait_for_blocked_clients(backend_client, count: int = 1, timeout: float = 5.0) -> None:
    """Polls redis-server's INFO clients until `count` clients are blocked
    (BLPOP and friends): a test that wakes a blocked command proves it
    blocked first instead of hoping a sleep was long enough."""
    deadline = time.monotonic() + timeout
    while True:
        blocked = backend_client.info("clients")["blocked_clients"]
        if blocked >= count:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{blocked} blocked client(s) in redis-server after {timeout} s, "
                        f"expected {count}")
        time.sleep(0.01)


# In redis_server(...)'s arguments: a port picked afresh on every attempt.
FREE_PORT = object()


class PortTaken(Exception):
    """redis-server could not bind its port: another process took it."""


def wait_for_redis_ready(proc: subprocess.Popen, log_path: Path, port: int,
                         timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Waits for redis-server's own "Ready to accept connections" (a connect
    probe could reach whoever else holds the port); raises PortTaken when it
    exits because the port was taken."""
    deadline = time.monotonic() + timeout
    while True:
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        if "Ready to accept connections" in log:
            return
        if proc.poll() is not None:
            if "Address already in use" in log:
                raise PortTaken(f"127.0.0.1:{port}")
            pytest.fail(f"redis-server exited with code {proc.returncode} before "
                        f"127.0.0.1:{port} was listening\n{log}")
        if time.monotonic() > deadline:
            pytest.fail(f"redis-server on 127.0.0.1:{port} not ready after {timeout} s\n{log}")
        time.sleep(0.02)


def start_redis_on_port(procs, tmp_path: Path, port: int, *extra_args: str,
                        name: str | None = None) -> RedisServer:
    """Starts redis-server on 127.0.0.1:`port`, registered with `procs` (so the
    test's teardown stops it), with no persistence and its own data dir."""
    name = name or f"redis-port{port}"
    data_dir = tmp_path / name
    suffix = 0
    while data_dir.exists():  # a restart on the same port gets a fresh, empty dir
        suffix += 1
        data_dir = tmp_path / f"{name}-{suffix}"
    data_dir.mkdir()
    log_path = tmp_path / f"{data_dir.name}.log"
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", str(data_dir), *extra_args]
    proc = procs.start(args, log_path)
    wait_for_redis_ready(proc, log_path, port)
    password = None
    if "--requirepass" in extra_args:
        password = extra_args[list(extra_args).index("--requirepass") + 1]
    return RedisServer(port=port, proc=proc, log_path=log_path, password=password)


@pytest.fixture
def redis_server(procs, tmp_path):
    """Factory: redis_server(*extra_args) starts a redis-server and returns it."""
    counter = iter(range(1000))

    def start(*extra_args: str) -> RedisServer:
        # redis-server cannot listen on port 0: a port found free may be
        # taken before it binds, so a taken port is retried with another.
        # FREE_PORT in extra_args (a second port, such as --cluster-port)
        # gets a fresh free port on each attempt too.
        name = f"redis{next(counter)}"

        def args() -> list[str]:
            return [str(free_port()) if a is FREE_PORT else a for a in extra_args]

        for _ in range(4):
            try:
                return start_redis_on_port(procs, tmp_path, free_port(), *args(), name=name)
            except PortTaken:
                continue
        return start_redis_on_port(procs, tmp_path, free_port(), *args(), name=name)

    return start


@dataclass
class TlsRedisServer(RedisServer):
    """A redis-server listening on a TLS port only (`--port 0`): nothing but
    TLS reaches it. `ca` verifies its certificate; `client_cert`/`client_key`
    are what a direct client presents when it runs with tls-auth-clients yes."""
    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def client(self, **kw) -> redis.Redis:
        """redis-py over TLS straight to the shard, bypassing shardgate
        (the certificate checked against `ca`, not its host name)."""
        kw.setdefault("socket_timeout", 10)
        if self.client_cert is not None:
            kw.setdefault("ssl_certfile", str(self.client_cert))
            kw.setdefault("ssl_keyfile", str(self.client_key))
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, ssl=True,
                           ssl_ca_certs=str(self.ca), ssl_cert_reqs="required",
                           ssl_check_hostname=False, **kw)

    def cli(self, *command: str) -> subprocess.CompletedProcess:
        """redis-cli --tls straight to the shard."""
        args = ["redis-cli", "--tls", "--cacert", str(self.ca), "-h", "127.0.0.1",
                "-p", str(self.port)]
        if self.client_cert is not None:
            args += ["--cert", str(self.client_cert), "--key", str(self.client_key)]
        return subprocess.run([*args, *command], capture_output=True, text=True, timeout=10)


def start_tls_redis_on_port(procs, tmp_path: Path, port: int, *, cert: Path, key: Path, ca: Path,
                            server_ca: Path | None = None, auth_clients: str = "no",
                            client_cert: Path | None = None, client_key: Path | None = None,
                            extra: tuple[str, ...] = (), name: str | None = None) -> TlsRedisServer:
    """redis-server with only a TLS port (`--port 0 --tls-port PORT`) serving
    `cert`/`key`. `ca` is its tls-ca-cert-file: what client certificates must
    chain to under `auth_clients` "yes"/"optional". `server_ca` is what the
    returned server's direct clients verify `cert` with (default: `ca`)."""
    args = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", auth_clients, *extra]
    # start_redis_on_port puts "--port <port>" first; the later "--port 0"
    # wins (redis-server applies its arguments in order), so only TLS listens.
    plain = start_redis_on_port(procs, tmp_path, port, *args, name=name or f"tls-redis-port{port}")
    return TlsRedisServer(port=port, proc=plain.proc, log_path=plain.log_path,
                          password=plain.password, ca=server_ca or ca, client_cert=client_cert,
                          client_key=client_key)


@pytest.fixture
def tls_redis_server(procs, tmp_path):
    """Factory: tls_redis_server(cert=, key=, ca=, **start_tls_redis_on_port's
    keywords) starts a TLS-only redis-server on a free port.

    redis-server cannot pick its TLS port itself (`--tls-port 0` turns TLS
    off: "Configured to not listen anywhere"), so, as `redis_server` does for
    the plain port, a port found free is used and a start that fails with
    "Address already in use" is retried on another port."""
    counter = iter(range(1000))

    def start(**kw) -> TlsRedisServer:
        kw.setdefault("name", f"tls-redis{next(counter)}")
        for _ in range(4):
            try:
                return start_tls_redis_on_port(procs, tmp_path, free_port(), **kw)
            except PortTaken:
                continue
        return start_tls_redis_on_port(procs, tmp_path, free_port(), **kw)

    return start


# ---------------------------------------------------------------- config YAML


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent: int = 0) -> str:
    """Block-style YAML for the nested dicts/lists/scalars the tests build."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(value, indent + 2))
            elif isinstance(value, list):
                lines.append(f"{pad}{key}: []")
            elif isinstance(value, dict):
                lines.append(f"{pad}{key}: {{}}")
            else:
                lines.append(f"{pad}{key}: {_scalar(value)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                nested = to_yaml(item, indent + 2).splitlines()
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(obj)}")
    return "\n".join(lines)


def database(name: str, listen_port: int, *shard_addresses: str, tls: bool = True) -> dict:
    return {
        "name": name,
        "listen": f"127.0.0.1:{listen_port}",
        "tls": tls,
        "shards": [{"address": a} for a in shard_addresses],
    }


def write_config(tmp_path: Path, databases: list[dict], tls: dict | None = None,
                 name: str = "shardgate.yaml", **top) -> Path:
    """Writes a config whose cert_dir is ./certs beside it (relative on purpose:
    it must resolve against the config file's directory, not the cwd)."""
    # A short drain keeps teardown fast: clients the test left open would
    # otherwise hold shardgate for the default 10 s after SIGTERM.
    config = {"workers": 2, "log_level": "info", "cert_dir": "./certs",
              "drain_timeout_ms": 1000}
    config.update(top)
    if tls:
        config["tls"] = tls
    config["databases"] = databases
    path = tmp_path / name
    path.write_text(to_yaml(config) + "\n")
    return path


# ---------------------------------------------------------------- shardgate


@dataclass
class Shardgate:
    proc: subprocess.Popen
    config_path: Path
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def cert_dir(self) -> Path:
        return self.config_path.parent / "certs"

    @property
    def ca(self) -> Path:
        """The served certificate; self-signed, so clients use it as their CA."""
        return self.cert_dir / "proxy_cert.pem"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def port(self, name: str | None = None) -> int:
        return self.ports[name] if name else next(iter(self.ports.values()))

    def client(self, name: str | None = None, **kw) -> redis.Redis:
        """redis-py over TLS, verifying the proxy certificate."""
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port(name), ssl=True,
                           ssl_ca_certs=str(self.ca), ssl_cert_reqs="required", **kw)


_LISTENING = re.compile(r"\bdb (\S+) listening on (\S+):(\d+) ")


def wait_for_listening(sg: Shardgate, names: list[str],
                       timeout: float = STARTUP_TIMEOUT_S) -> dict[str, int]:
    """Reads each database's port from shardgate's start-up log; fails early
    if the process exits first."""
    deadline = time.monotonic() + timeout
    while True:
        found = {m.group(1): int(m.group(3)) for m in _LISTENING.finditer(sg.log())}
        if all(n in found for n in names):
            return {n: found[n] for n in names}
        if sg.proc.poll() is not None:
            pytest.fail(f"shardgate exited with code {sg.proc.returncode} before listening\n"
                        f"shardgate log:\n{sg.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"shardgate not listening after {timeout} s\nshardgate log:\n{sg.log()}")
        time.sleep(0.02)


def require_binary() -> None:
    if not SHARDGATE_BIN.is_file() or not os.access(SHARDGATE_BIN, os.X_OK):
        pytest.fail(f"shardgate binary not found at {SHARDGATE_BIN} "
                    f"(build it with `ninja -C build` or set SHARDGATE_BIN)")


@pytest.fixture
def shardgate(procs, tmp_path):
    """Factory: shardgate(databases, tls=..., **top_level_keys) writes the
    config, starts build/shardgate, waits until every database listens."""

    def start(databases: list[dict], tls: dict | None = None, **top) -> Shardgate:
        require_binary()
        config_path = write_config(tmp_path, databases, tls, **top)
        log_path = tmp_path / "shardgate.log"
        # cwd is the repo, not the config dir: cert_dir must resolve against the file.
        proc = procs.start([SHARDGATE_BIN, "--config", config_path], log_path, cwd=REPO)
        sg = Shardgate(proc=proc, config_path=config_path, log_path=log_path)
        # Ports come from shardgate itself: "db NAME listening on HOST:PORT"
        # is logged once every worker listens (port 0 in the config: the
        # kernel picked it), so no test races another process for a port.
        sg.ports = wait_for_listening(sg, [d["name"] for d in databases])
        return sg

    return start


@pytest.fixture
def refused_address():
    """An address that refuses connections for the whole test: a socket bound
    to a loopback port and never listening holds the port, so no other
    process can start listening there."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{held.getsockname()[1]}"
    finally:
        held.close()


@pytest.fixture
def proxied(redis_server, shardgate):
    """The common case: one redis-server behind one TLS database."""
    backend = redis_server()
    sg = shardgate([database("db1", 0, backend.address)])
    return sg, backend


def run_shardgate(args: list, timeout: float = 10.0, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Runs shardgate to completion; a process still running at the timeout is
    killed and the test fails (a bad config must exit, not serve)."""
    require_binary()
    proc = subprocess.Popen([str(SHARDGATE_BIN), *map(str, args)], cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=STOP_TIMEOUT_S)
        pytest.fail(f"shardgate {args} still running after {timeout} s\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# ---------------------------------------------------------------- openssl s_client


def s_client(port: int, *args: str, send: bytes = b"PING\r\n", expect: bytes = b"+PONG",
             timeout: float = 10.0) -> tuple[int, str]:
    """Runs `openssl s_client` against 127.0.0.1:port; returns (exit code, output).

    stdin stays open until `expect` shows up in the output or the client exits
    on its own: s_client quits as soon as stdin hits EOF, which would race the
    handshake (and, with TLS 1.3, the session ticket that arrives after it).
    """
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
           "-servername", "localhost", *args]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    chunks: list[bytes] = []
    seen = threading.Event()

    def reader() -> None:
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            chunks.append(chunk)
            if expect and expect in b"".join(chunks):
                seen.set()
        seen.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        if send:
            proc.stdin.write(send)
            proc.stdin.flush()
        seen.wait(timeout)
        proc.stdin.close()
        proc.wait(timeout=STOP_TIMEOUT_S)
    except (BrokenPipeError, subprocess.TimeoutExpired):
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
        thread.join(timeout=STOP_TIMEOUT_S)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def negotiated_cipher(output: str) -> str | None:
    """The cipher from s_client's "New, TLSv1.3, Cipher is X" line; None for (NONE)."""
    for line in output.splitlines():
        if "Cipher is " in line:
            cipher = line.split("Cipher is ", 1)[1].strip()
            return None if cipher == "(NONE)" else cipher
    return None


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


# ---------------------------------------------------------------- admin API

ADMIN_USER = "admin"
ADMIN_PASSWORD = "correct horse battery staple"

_ADMIN_LISTENING = re.compile(r"\badmin API listening on (\S+):(\d+) ")


def hash_password(password: str) -> str:
    """What `shardgate --hash-password` prints for `password` given on stdin."""
    require_binary()
    proc = subprocess.run([str(SHARDGATE_BIN), "--hash-password"], input=password + "\n",
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert proc.returncode == 0, f"--hash-password failed ({proc.returncode}): {proc.stderr}"
    return proc.stdout.strip()


@pytest.fixture(scope="session")
def admin_password_hash() -> str:
    """One hash of ADMIN_PASSWORD per test session (hashing is slow by design)."""
    return hash_password(ADMIN_PASSWORD)


@dataclass
class CurlResult:
    exit_code: int      # curl's own: 0, or why no answer came (35: TLS, 56: recv, ...)
    status: int | None  # the HTTP status; None when no answer came
    headers: dict[str, str]  # names lower-case
    body: bytes
    stderr: str
    elapsed: float      # seconds, measured around the curl process

    def json(self):
        return json.loads(self.body)

    def __str__(self) -> str:
        return (f"curl exit {self.exit_code}, HTTP {self.status}, {self.elapsed:.2f} s\n"
                f"headers: {self.headers}\nbody: {self.body[:4000]!r}\nstderr: {self.stderr}")


def curl(port: int, method: str, path: str, *, cacert: Path | str, body: bytes | str | None = None,
         user: tuple[str, str] | None = None, cert: Path | None = None, key: Path | None = None,
         extra: tuple[str, ...] = (), timeout: float = 30.0) -> CurlResult:
    """One request with the real curl over HTTPS to 127.0.0.1:port, verifying the
    server with --cacert; basic auth with -u, a client certificate with --cert/--key."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="curl-") as tmp:
        out, hdr = Path(tmp) / "body", Path(tmp) / "headers"
        args = ["curl", "-sS", "--cacert", str(cacert), "-X", method, "-o", str(out),
                "-D", str(hdr), "-w", "%{http_code}", "--max-time", str(timeout)]
        if user is not None:
            args += ["-u", f"{user[0]}:{user[1]}"]
        if cert is not None:
            args += ["--cert", str(cert), "--key", str(key)]
        if body is not None:
            data = Path(tmp) / "request"
            data.write_bytes(body.encode() if isinstance(body, str) else body)
            args += ["-H", "Content-Type: application/json", "--data-binary", f"@{data}"]
        args += [*extra, f"https://127.0.0.1:{port}{path}"]
        started = time.monotonic()
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 10)
        elapsed = time.monotonic() - started
        code = proc.stdout.strip()
        status = int(code) if code.isdigit() and int(code) != 0 else None
        headers: dict[str, str] = {}
        if hdr.exists():
            for line in hdr.read_text(errors="replace").splitlines():
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
        return CurlResult(proc.returncode, status, headers,
                          out.read_bytes() if out.exists() else b"", proc.stderr, elapsed)


@dataclass
class AdminShardgate(Shardgate):
    """A shardgate with the admin API on; api_port is 0 when it has none."""
    api_port: int = 0
    api_ca: Path | None = None  # what clients verify the api certificate with

    def curl(self, method: str, path: str, body=None, *, auth: bool = True,
             user: tuple[str, str] | None = None, **kw) -> CurlResult:
        """curl against this shardgate's admin API; with the configured user's
        password unless auth=False or another user is given."""
        if user is None and auth:
            user = (ADMIN_USER, ADMIN_PASSWORD)
        return curl(self.api_port, method, path, cacert=self.api_ca or self.cert_dir / "api_cert.pem",
                    body=body, user=user, **kw)


def wait_for_admin(sg: Shardgate, timeout: float = STARTUP_TIMEOUT_S) -> int:
    """The admin API's port from shardgate's start-up log."""
    deadline = time.monotonic() + timeout
    while True:
        m = _ADMIN_LISTENING.search(sg.log())
        if m:
            return int(m.group(2))
        if sg.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no 'admin API listening' line (exit code {sg.proc.poll()})\n"
                        f"shardgate log:\n{sg.log()}")
        time.sleep(0.02)


@pytest.fixture
def admin_shardgate(procs, tmp_path, admin_password_hash):
    """Factory: admin_shardgate(databases, admin={...}, api=True, name=..., api_ca=...,
    tls=..., **top) starts a shardgate with the admin API on 127.0.0.1:0 (the
    admin dict merged over listen and the one user ADMIN_USER/ADMIN_PASSWORD;
    api=False: no admin section at all). Every config named in one test shares
    tmp_path/certs; a name started again (a restart) gets a fresh log file."""
    logs: set[str] = set()

    def start(databases: list[dict], admin: dict | None = None, api: bool = True,
              name: str = "shardgate", api_ca: Path | None = None, tls: dict | None = None,
              **top) -> AdminShardgate:
        require_binary()
        if api:
            section = {"listen": "127.0.0.1:0",
                       "users": [{"name": ADMIN_USER, "password_hash": admin_password_hash}]}
            section.update(admin or {})
            top["admin"] = section
        config_path = write_config(tmp_path, databases, tls, name=f"{name}.yaml", **top)
        log_name = f"{name}.log"
        n = 0
        while log_name in logs:
            n += 1
            log_name = f"{name}-{n}.log"
        logs.add(log_name)
        log_path = tmp_path / log_name
        proc = procs.start([SHARDGATE_BIN, "--config", config_path], log_path, cwd=REPO)
        sg = AdminShardgate(proc=proc, config_path=config_path, log_path=log_path, api_ca=api_ca)
        sg.ports = wait_for_listening(sg, [d["name"] for d in databases])
        if api:
            sg.api_port = wait_for_admin(sg)
        return sg

    return start
