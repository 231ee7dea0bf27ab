"""Client certificates on the data endpoints (client_auth optional/required,
client_ca, client_crl, client_allow), with real clients: redis-cli --tls
--cert/--key, redis-py ssl_certfile, openssl s_client -cert, Python ssl.

Every CA and client certificate is made here with certs.CA (the openssl CLI);
shardgate serves a self-signed proxy certificate it generates, which the
clients use as their CA (sg.ca)."""
from __future__ import annotations

import datetime as dt
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import redis

from certs import CA, Pair
from conftest import STARTUP_TIMEOUT_S, database, run_shardgate, s_client, write_config

DEADLINE_S = 10.0


class Env:
    """Two CAs with their client certificates, and a shardgate factory."""

    def __init__(self, tmp_path: Path, redis_server, shardgate) -> None:
        self.tmp = tmp_path
        self.backend = redis_server()
        self._shardgate = shardgate
        self.ca1 = CA(tmp_path / "ca1", name="client CA one")
        self.ca2 = CA(tmp_path / "ca2", name="client CA two")
        self.c1 = self.ca1.issue_client(0x11, "c1", "app-1.example.com",
                                        ["DNS:app-1.example.com", "URI:spiffe://example.org/ns/prod/sa/app"])
        self.c2 = self.ca2.issue_client(0x21, "c2", "app-2.example.com", ["DNS:app-2.example.com"])
        self.cert_dir = tmp_path / "certs"
        self.cert_dir.mkdir()
        self.sg = None

    def trust(self, *cas: CA, name: str = "mtls_trusted_ca.pem") -> None:
        """Writes the CA bundle atomically (rename), as an operator's tooling does."""
        tmp = self.cert_dir / (name + ".tmp")
        tmp.write_bytes(b"".join(ca.cert.read_bytes() for ca in cas))
        tmp.rename(self.cert_dir / name)

    def start(self, client_auth: str = "required", multiplex: bool = False, metrics: bool = False,
              **keys):
        db = database("db1", 0, self.backend.address)
        db["client_auth"] = client_auth
        if multiplex:
            db["multiplex"] = True
        db.update(keys)
        top = {"metrics": {"listen": "127.0.0.1:0", "tls": False}} if metrics else {}
        self.sg = self._shardgate([db], log_level="debug", **top)
        return self.sg

    @property
    def port(self) -> int:
        return self.sg.port("db1")

    def context(self, pair: Pair | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.sg.ca))
        ctx.check_hostname = False
        if pair is not None:
            ctx.load_cert_chain(str(pair.cert), str(pair.key))
        return ctx

    def ping(self, pair: Pair | None, ctx: ssl.SSLContext | None = None, command: bytes = b"PING\r\n",
             session=None) -> tuple[bytes, ssl.SSLSocket | None]:
        """PING over a fresh TLS connection. Returns (reply, socket) on
        success, or (b"refused: <reason>", None) when the server refused the
        certificate: with TLS 1.3 the client's handshake ends before the
        server's verdict, which arrives as an alert on the first read."""
        ctx = ctx or self.context(pair)
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        try:
            s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
            s.sendall(command)
            data = b""
            deadline = time.monotonic() + 5
            while not data.endswith(b"\r\n") and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    return b"refused: closed", None
                data += chunk
            return data, s
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
            raw.close()
            return f"refused: {e}".encode(), None

    def redis_cli(self, pair: Pair | None, *command: str) -> subprocess.CompletedProcess:
        args = ["redis-cli", "--tls", "--cacert", str(self.sg.ca), "-h", "127.0.0.1", "-p", str(self.port)]
        if pair is not None:
            args += ["--cert", str(pair.cert), "--key", str(pair.key)]
        return subprocess.run([*args, *command], capture_output=True, text=True, timeout=15)

    def wait_log(self, pattern: str, count: int = 1) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while len(re.findall(pattern, self.sg.log())) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"no {count}x {pattern!r} in the log:\n{self.sg.log()}")
            time.sleep(0.05)

    def reload(self, trigger: str = "SIGHUP") -> None:
        """SIGHUP, then waits for the database's context to be rebuilt."""
        before = len(re.findall(r"db db1: client certificates \(", self.sg.log()))
        self.sg.proc.send_signal(signal.SIGHUP)
        self.wait_log(r"db db1: client certificates \(", before + 1)

    def metrics(self) -> str:
        m = re.search(r"\bmetrics listening on (\S+):(\d+) ", self.sg.log())
        assert m, self.sg.log()
        return subprocess.run(["curl", "--silent", "--max-time", "10", f"http://127.0.0.1:{m.group(2)}/metrics"],
                              capture_output=True, text=True, timeout=15).stdout


@pytest.fixture
def env(tmp_path, redis_server, shardgate, monkeypatch):
    e = Env(tmp_path, redis_server, shardgate)
    # shardgate's fixture writes ./certs beside the config: that is e.cert_dir.
    return e


def sample(metrics: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in metrics.splitlines():
        if line.startswith(name + "{" + want + "}") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{want}}} in\n{metrics}")


# ---------------------------------------------------------------- required / optional


def test_required_redis_cli_with_and_without_a_certificate(env):
    env.trust(env.ca1)
    env.start("required")
    ok = env.redis_cli(env.c1, "PING")
    assert ok.stdout.strip() == "PONG", ok
    without = env.redis_cli(None, "PING")
    assert "PONG" not in without.stdout, without
    other_ca = env.redis_cli(env.c2, "PING")
    assert "PONG" not in other_ca.stdout, other_ca


def test_required_refusals_have_the_right_alert_and_are_counted_by_reason(env):
    env.trust(env.ca1)
    expired = env.ca1.issue_client(0x12, "old", "old.example.com",
                                   not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10),
                                   not_after=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1))
    env.start("required", metrics=True)

    rc, out = s_client(env.port, "-CAfile", str(env.sg.ca))
    assert "+PONG" not in out and "alert certificate required" in out, out
    reply, _ = env.ping(env.c2)
    assert reply.startswith(b"refused") and b"UNKNOWN_CA" in reply.upper().replace(b" ", b"_"), reply
    reply, _ = env.ping(expired)
    assert reply.startswith(b"refused") and b"EXPIRED" in reply.upper(), reply
    reply, s = env.ping(env.c1)
    assert reply == b"+PONG\r\n", reply
    s.close()

    deadline = time.monotonic() + DEADLINE_S
    while True:
        m = env.metrics()
        got = {r: sample(m, "shardgate_tls_handshake_failures_total", reason=r)
               for r in ("no_client_cert", "bad_client_cert", "client_cert_expired", "client_not_allowed")}
        verified = sample(m, "shardgate_tls_client_cert_handshakes_total", result="verified")
        if got == {"no_client_cert": 1, "bad_client_cert": 1, "client_cert_expired": 1,
                   "client_not_allowed": 0} and verified == 1:
            break
        assert time.monotonic() < deadline, (got, verified, m)
        time.sleep(0.1)
    assert sample(m, "shardgate_tls_client_cert_handshakes_total", result="refused") == 3
    # Warned (rate-limited per worker: the first refusal on a worker at least).
    env.wait_log(r"db db1: client 127\.0\.0\.1:\d+ refused at the handshake \((no_client_cert|bad_client_cert|"
                 r"client_cert_expired)\): ")


def test_s_client_with_a_certificate_is_served(env):
    env.trust(env.ca1)
    env.start("required")
    rc, out = s_client(env.port, "-CAfile", str(env.sg.ca), "-cert", str(env.c1.cert), "-key", str(env.c1.key))
    assert "+PONG" in out, out
    env.wait_log(r'certificate verified: subject "CN=app-1\.example\.com"')


def test_optional_lets_a_client_without_a_certificate_in_and_refuses_a_bad_one(env):
    env.trust(env.ca1)
    env.start("optional")
    plain = redis.Redis(host="127.0.0.1", port=env.port, ssl=True, ssl_ca_certs=str(env.sg.ca),
                        ssl_check_hostname=False, socket_timeout=5)
    assert plain.ping() is True
    plain.close()
    good = redis.Redis(host="127.0.0.1", port=env.port, ssl=True, ssl_ca_certs=str(env.sg.ca),
                       ssl_check_hostname=False, ssl_certfile=str(env.c1.cert), ssl_keyfile=str(env.c1.key),
                       socket_timeout=5)
    assert good.set("k", "v") is True and good.get("k") == b"v"
    good.close()
    bad = redis.Redis(host="127.0.0.1", port=env.port, ssl=True, ssl_ca_certs=str(env.sg.ca),
                      ssl_check_hostname=False, ssl_certfile=str(env.c2.cert), ssl_keyfile=str(env.c2.key),
                      socket_timeout=5)
    with pytest.raises(redis.exceptions.ConnectionError):
        bad.ping()
    bad.close()


def test_client_ca_of_the_database_instead_of_mtls_trusted_ca(env):
    env.trust(env.ca1)
    env.trust(env.ca2, name="db1_clients.pem")
    env.start("required", client_ca="db1_clients.pem")
    assert env.ping(env.c2)[0] == b"+PONG\r\n"
    assert env.ping(env.c1)[0].startswith(b"refused")


# ---------------------------------------------------------------- live CA changes


def test_ca_rotation_keeps_an_open_connection_and_new_handshakes_use_the_new_cas(env):
    env.trust(env.ca1)
    env.start("required")
    held = redis.Redis(host="127.0.0.1", port=env.port, ssl=True, ssl_ca_certs=str(env.sg.ca),
                       ssl_check_hostname=False, ssl_certfile=str(env.c1.cert), ssl_keyfile=str(env.c1.key),
                       socket_timeout=5, single_connection_client=True)
    assert held.set("held", "1") is True
    assert env.ping(env.c2)[0].startswith(b"refused")

    # Add CA two (file change: the directory watcher applies it).
    before = len(re.findall(r"db db1: client certificates \(file change\)", env.sg.log()))
    env.trust(env.ca1, env.ca2)
    env.wait_log(r"db db1: client certificates \(file change\): 2 trusted CA", before + 1)
    assert env.ping(env.c2)[0] == b"+PONG\r\n"
    assert env.ping(env.c1)[0] == b"+PONG\r\n"

    # Remove CA one: new handshakes with its certificate are refused, the
    # connection opened before keeps working.
    env.trust(env.ca2)
    env.wait_log(r"db db1: client certificates \(file change\): 1 trusted CA", 1)
    assert env.ping(env.c1)[0].startswith(b"refused")
    assert env.ping(env.c2)[0] == b"+PONG\r\n"
    assert held.get("held") == b"1"
    assert held.incr("n") == 1
    held.close()


def test_resumption_works_then_is_refused_once_the_ca_is_removed(env, tmp_path):
    env.trust(env.ca1, env.ca2)
    env.start("required", multiplex=True)
    session = tmp_path / "c1.session"
    cert = ["-cert", str(env.c1.cert), "-key", str(env.c1.key)]
    rc, out = s_client(env.port, "-CAfile", str(env.sg.ca), *cert, "-sess_out", str(session),
                       send=b"CLIENT INFO\r\n", expect=b"cert-subject=")
    assert "New, TLSv1.3" in out and "cert-subject=CN=app-1.example.com" in out, out
    # Resumed: no certificate exchanged this time, the identity verified at
    # the full handshake is kept.
    rc, out = s_client(env.port, "-CAfile", str(env.sg.ca), *cert, "-sess_in", str(session),
                       send=b"CLIENT INFO\r\n", expect=b"cert-subject=")
    assert "Reused, TLSv1.3" in out and "cert-subject=CN=app-1.example.com" in out, out

    # CA one removed (SIGHUP): the session sealed before must not resume,
    # and the full handshake then refuses the certificate.
    env.trust(env.ca2)
    env.reload()
    rc, out = s_client(env.port, "-CAfile", str(env.sg.ca), *cert, "-sess_in", str(session),
                       send=b"CLIENT INFO\r\n", expect=b"cert-subject=")
    assert "Reused" not in out, out
    assert "cert-subject=" not in out and "unknown ca" in out, out


def test_python_session_reuse_keeps_the_identity_and_stops_after_a_ca_change(env):
    env.trust(env.ca1)
    env.start("required", multiplex=True)
    ctx = env.context(env.c1)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the session is known right after the handshake
    reply, s = env.ping(env.c1, ctx)
    assert reply == b"+PONG\r\n"
    sess = s.session
    s.close()
    reply, s = env.ping(env.c1, ctx, command=b"CLIENT INFO\r\n", session=sess)
    assert s is not None and s.session_reused, reply
    data = reply
    while b"resp=" not in data:
        data += s.recv(65536)
    assert b"cert-subject=CN=app-1.example.com" in data
    s.close()
    # The same CA, now with a second one beside it: a new trust set, so the
    # old session does not resume (the full handshake still passes).
    env.trust(env.ca1, env.ca2)
    env.reload()
    reply, s = env.ping(env.c1, ctx, session=sess)
    assert reply == b"+PONG\r\n" and not s.session_reused
    s.close()


# ---------------------------------------------------------------- allow-list, CRL


def test_allow_list_admits_matching_names_and_refuses_others_naming_the_subject(env):
    env.trust(env.ca1)
    other = env.ca1.issue_client(0x13, "other", "batch.example.com", ["email:batch@example.com"])
    prod_uri = env.ca1.issue_client(0x14, "uri", "svc", ["URI:spiffe://example.org/ns/prod/sa/batch"])
    env.start("required", metrics=True,
              client_allow=["cn:app-*.example.com", "uri:spiffe://example.org/ns/prod/*"])
    assert env.ping(env.c1)[0] == b"+PONG\r\n"          # cn matches
    assert env.ping(prod_uri)[0] == b"+PONG\r\n"         # uri matches
    reply, _ = env.ping(other)
    assert reply.startswith(b"refused"), reply
    env.wait_log(r'db db1: client 127\.0\.0\.1:\d+ refused: certificate subject "CN=batch\.example\.com" '
                 r'\(CN batch\.example\.com, email batch@example\.com\) matches no client_allow entry')
    assert sample(env.metrics(), "shardgate_tls_handshake_failures_total", reason="client_not_allowed") == 1


def test_crl_revokes_a_client_and_is_reloaded_live(env):
    env.trust(env.ca1)
    victim = env.ca1.issue_client(0x15, "victim", "victim.example.com")
    env.ca1.crl(env.cert_dir / "clients.crl.pem")
    env.start("required", client_crl="clients.crl.pem")
    assert env.ping(victim)[0] == b"+PONG\r\n"
    assert env.ping(env.c1)[0] == b"+PONG\r\n"

    env.ca1.revoke(victim)
    before = len(re.findall(r"CRL \S+clients\.crl\.pem", env.sg.log()))
    tmp = env.tmp / "new.crl.pem"
    env.ca1.crl(tmp)
    tmp.rename(env.cert_dir / "clients.crl.pem")
    env.wait_log(r"db db1: client certificates \(file change\).*CRL \S+clients\.crl\.pem", 1)
    reply, _ = env.ping(victim)
    assert reply.startswith(b"refused") and b"REVOKED" in reply.upper(), reply
    assert env.ping(env.c1)[0] == b"+PONG\r\n"


def test_client_list_shows_the_certificate_subject(env):
    env.trust(env.ca1)
    env.start("optional", multiplex=True)
    r = redis.Redis(host="127.0.0.1", port=env.port, ssl=True, ssl_ca_certs=str(env.sg.ca),
                    ssl_check_hostname=False, ssl_certfile=str(env.c1.cert), ssl_keyfile=str(env.c1.key),
                    socket_timeout=5)
    clients = r.client_list()
    assert clients[0]["cert-subject"] == "CN=app-1.example.com", clients
    r.close()
    anonymous = redis.Redis(host="127.0.0.1", port=env.port, ssl=True, ssl_ca_certs=str(env.sg.ca),
                            ssl_check_hostname=False, socket_timeout=5)
    line = anonymous.execute_command("CLIENT", "INFO").decode()
    assert re.search(r" cert-subject=\n?$", line), line
    anonymous.close()


# ---------------------------------------------------------------- config


def test_bad_allow_list_entry_is_named_at_config_load(tmp_path):
    db = database("db1", 0, "127.0.0.1:7000")
    db["client_auth"] = "required"
    db["client_allow"] = ["cn:ok", "host:web-1"]
    config = write_config(tmp_path, [db])
    r = run_shardgate(["--config", config, "--check-config"])
    assert r.returncode != 0
    assert "databases[0].client_allow[1]" in r.stderr and "cn:, dns:, email: or uri:" in r.stderr, r.stderr


def test_client_auth_without_trusted_cas_is_refused_naming_the_database(tmp_path):
    db = database("db1", 0, "127.0.0.1:7000")
    db["client_auth"] = "required"
    config = write_config(tmp_path, [db])
    r = run_shardgate(["--config", config])
    assert r.returncode != 0
    assert "database db1: client certificates: no trusted CA" in r.stderr, r.stderr


# ---------------------------------------------------------------- admin API


def test_admin_api_update_cert_of_mtls_trusted_ca_applies_to_the_database(env):
    from test_admin_api import Admin, admin_section, wait_for_admin, PASSWORD  # noqa: F401
    hashed = subprocess.run([str(__import__("conftest").SHARDGATE_BIN), "--hash-password"], input=PASSWORD + "\n",
                            capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    env.trust(env.ca1)
    db = database("db1", 0, env.backend.address)
    db["client_auth"] = "required"
    env.sg = env._shardgate([db], admin=admin_section(hashed))
    a = Admin(env.sg, wait_for_admin(env.sg))
    assert env.ping(env.c1)[0] == b"+PONG\r\n"
    assert env.ping(env.c2)[0].startswith(b"refused")
    status, body, _ = a.curl("PUT", "/v1/cluster/update_cert",
                             {"name": "mtls_trusted_ca", "certificate": env.ca2.cert.read_text()})
    assert status == 200, body
    assert env.ping(env.c2)[0] == b"+PONG\r\n"
    assert env.ping(env.c1)[0].startswith(b"refused")


def test_optional_with_an_allow_list_checks_certificates_only(env):
    env.trust(env.ca1)
    stranger = env.ca1.issue_client(0x16, "stranger", "stranger.example.com")
    env.start("optional", client_allow=["dns:app-*.example.com"])
    assert env.ping(None)[0] == b"+PONG\r\n"            # no certificate: optional lets it in
    assert env.ping(env.c1)[0] == b"+PONG\r\n"          # DNS SAN app-1.example.com
    assert env.ping(stranger)[0].startswith(b"refused")  # verified, but not on the list
