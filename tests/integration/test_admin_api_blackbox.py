"""The HTTPS admin API, from the outside: the real binary driven with the real
curl (--cacert, -u user:pass, --cert/--key), openssl s_client for what new
handshakes are served, and redis-py / redis-cli connections held open across
every change.

Every certificate comes from throwaway CAs (certs.py): `server_ca` issues the
proxy and api leaves (so one ca.pem verifies every rotation), `client_ca` is
written to cert_dir/mtls_trusted_ca.pem and issues the certificates that log
in without a password, and `stranger_ca` issues certificates nobody trusts.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from certs import CA, Pair, run_openssl
from conftest import (ADMIN_PASSWORD, ADMIN_USER, AdminShardgate, database, recv_until,
                      run_shardgate, s_client, stop_process)

PROXY_FILES = ("proxy_cert.pem", "proxy_key.pem")
API_FILES = ("api_cert.pem", "api_key.pem")
# The other shardgate sharing cert_dir serves an update within this long
# (a directory event, ~100 ms of settling; the 2 s stat() poll as fallback).
SHARED_DIR_WITHIN_S = 5.0
WAIT_S = 5.0


# ---------------------------------------------------------------- certificates

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

def pem_blocks(text: str, kind: str = "CERTIFICATE") -> list[str]:
    return re.findall(rf"-----BEGIN {kind}-----\n.*?\n-----END {kind}-----\n?", text, re.S)


def fingerprint(pem: bytes | str) -> str:
    """SHA-256 of the first certificate's DER, lower-case hex without colons."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    der = ssl.PEM_cert_to_DER_cert(pem_blocks(text)[0])
    return hashlib.sha256(der).hexdigest()


def norm_fingerprint(value: str) -> str:
    return value.replace(":", "").lower()


def cert_dates(pem_path: Path) -> tuple[dt.datetime, dt.datetime]:
    out = run_openssl("x509", "-noout", "-startdate", "-enddate", "-in", pem_path, cwd=Path("/"))
    found = dict(line.split("=", 1) for line in out.strip().splitlines())

    def parse(text: str) -> dt.datetime:
        return dt.datetime.strptime(text.strip(), "%b %d %H:%M:%S %Y %Z").replace(
            tzinfo=dt.timezone.utc)

    return parse(found["notBefore"]), parse(found["notAfter"])


def parse_api_time(text: str) -> dt.datetime:
    """The API's times: ISO 8601 in UTC ("2026-11-24T08:00:00Z")."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def key_material(key_pem: bytes) -> list[str]:
    """Pieces of a private key that must never appear in an answer or a log:
    every base64 line of its PEM body."""
    lines = [ln.strip() for ln in key_pem.decode().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("-----") and len(ln) >= 16]


def assert_no_key_material(text: str, keys: list[bytes], where: str) -> None:
    assert "PRIVATE KEY" not in text, f"{where} holds a PEM private key:\n{text[:4000]}"
    for key in keys:
        for piece in key_material(key):
            assert piece not in text, f"{where} holds private key material {piece!r}"


def update_body(name: str, pair: Pair | None = None, *, cert: bytes | str | None = None,
                key: bytes | str | None = None) -> str:
    cert = cert if cert is not None else pair.cert_pem
    key = key if key is not None else pair.key_pem
    item = {"name": name,
            "certificate": cert.decode() if isinstance(cert, bytes) else cert,
            "key": key.decode() if isinstance(key, bytes) else key}
    return json.dumps(item)


def sent_keys_of(body: str) -> list[bytes]:
    """The private key a request body carries, if it is JSON with one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return []
    key = doc.get("key") if isinstance(doc, dict) else None
    return [key.encode()] if isinstance(key, str) and "PRIVATE KEY" in key else []


# ---------------------------------------------------------------- what is served


def served_cert(port: int, cafile: Path, *args: str, proxy: bool = True) -> str:
    """The leaf certificate (PEM) a new `openssl s_client` handshake is given,
    verified against cafile. On the proxy port the connection also proves it
    carries Redis traffic (PING -> +PONG)."""
    if proxy:
        rc, out = s_client(port, "-CAfile", str(cafile), *args)
        ok = "+PONG" in out
    else:
        rc, out = s_client(port, "-CAfile", str(cafile), *args, send=b"",
                           expect=b"Verify return code")
        ok = "Verify return code" in out
    assert ok, f"s_client against 127.0.0.1:{port} (exit {rc}):\n{out}"
    assert "Verify return code: 0 (ok)" in out, out
    blocks = pem_blocks(out)
    assert blocks, f"no server certificate in s_client's output:\n{out}"
    return blocks[0]


def served_fingerprint(port: int, cafile: Path, proxy: bool = True) -> str:
    return fingerprint(served_cert(port, cafile, proxy=proxy))


def wait_served(port: int, cafile: Path, expected_fp: str, within: float,
                proxy: bool = True, log=lambda: "") -> float:
    """Polls new s_client handshakes until one is served expected_fp; returns how long it took."""
    start = time.monotonic()
    while True:
        seen = served_fingerprint(port, cafile, proxy=proxy)
        elapsed = time.monotonic() - start
        if seen == expected_fp:
            return elapsed
        if elapsed > within:
            pytest.fail(f"127.0.0.1:{port} still serves {seen} {elapsed:.1f} s later, "
                        f"expected {expected_fp}\n{log()[-4000:]}")
        time.sleep(0.05)


def snapshot(cert_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in cert_dir: its bytes and mode."""
    return {p.name: (p.read_bytes(), p.stat().st_mode & 0o777)
            for p in sorted(cert_dir.iterdir()) if p.is_file()}


def tls_data_socket(port: int, cafile: Path, max_version=None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False
    if max_version is not None:
        ctx.maximum_version = max_version
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def ping(sock: ssl.SSLSocket) -> None:
    sock.sendall(b"PING\r\n")
    reply = recv_until(sock, b"\r\n")
    assert reply == b"+PONG\r\n", reply


class HeldRedisPy:
    """One redis-py connection (no pool: the same socket all along) over TLS."""

    def __init__(self, port: int, cafile: Path) -> None:
        self.conn = redis.connection.SSLConnection(
            host="127.0.0.1", port=port, socket_timeout=10, ssl_ca_certs=str(cafile),
            ssl_cert_reqs="required", ssl_check_hostname=False)
        self.conn.connect()
        self.sock = self.conn._sock
        self.peer_fp = hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()

    def command(self, *args):
        assert self.conn._sock is self.sock, "redis-py reconnected: the held connection was lost"
        self.conn.send_command(*args)
        reply = self.conn.read_response()
        assert self.conn._sock is self.sock, "redis-py reconnected: the held connection was lost"
        return reply

    def close(self) -> None:
        self.conn.disconnect()


class HeldRedisCli:
    """`redis-cli --tls` reading commands from a pipe, one connection all along."""

    def __init__(self, port: int, cafile: Path) -> None:
        self.proc = subprocess.Popen(
            ["redis-cli", "--tls", "--cacert", str(cafile), "-h", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1)

    def command(self, line: str, timeout: float = 10.0) -> str:
        assert self.proc.poll() is None, f"redis-cli exited ({self.proc.returncode})"
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        assert result, f"redis-cli gave no answer to {line!r} within {timeout} s"
        return result[0].rstrip("\n")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=5)


# ---------------------------------------------------------------- the rig


@dataclass
class Env:
    sg: AdminShardgate
    server_ca: CA
    client_ca: CA
    proxy_pair: Pair
    api_pair: Pair
    backend: object
    next_serial: int = 0xA000

    @property
    def cert_dir(self) -> Path:
        return self.sg.cert_dir

    @property
    def data_port(self) -> int:
        return self.sg.port("db1")

    def new_pair(self, **kw) -> Pair:
        self.next_serial += 1
        return self.server_ca.issue(self.next_serial, **kw)

    def log(self) -> str:
        return self.sg.log()

    def served_proxy_fp(self) -> str:
        return served_fingerprint(self.data_port, self.server_ca.cert)

    def served_api_fp(self) -> str:
        return served_fingerprint(self.sg.api_port, self.server_ca.cert, proxy=False)


def populate_cert_dir(cert_dir: Path, proxy: Pair, api: Pair, client_ca: CA | None) -> None:
    cert_dir.mkdir(parents=True, exist_ok=True)
    for pair, (cert_name, key_name) in ((proxy, PROXY_FILES), (api, API_FILES)):
        (cert_dir / cert_name).write_bytes(pair.cert_pem)
        (cert_dir / key_name).write_bytes(pair.key_pem)
        (cert_dir / key_name).chmod(0o600)
    if client_ca is not None:
        (cert_dir / "mtls_trusted_ca.pem").write_bytes(client_ca.cert.read_bytes())


@pytest.fixture
def env(tmp_path, redis_server, admin_shardgate):
    """Factory: env(admin={...}, databases=None, **top) starts one redis-server
    and one shardgate (db1: TLS, in front of it) with the admin API, serving
    leaves of one server CA, trusting client_ca for client certificates."""

    def start(admin: dict | None = None, databases: list[dict] | None = None,
              trust_clients: bool = True, **top) -> Env:
        server_ca = CA(tmp_path / "server-ca", name="shardgate test server CA")
        client_ca = CA(tmp_path / "client-ca", name="shardgate operators CA")
        proxy_pair = server_ca.issue(0x1100, name="proxy0")
        api_pair = server_ca.issue(0x1200, name="api0")
        populate_cert_dir(tmp_path / "certs", proxy_pair, api_pair,
                          client_ca if trust_clients else None)
        backend = redis_server()
        dbs = databases or [database("db1", 0, backend.address)]
        sg = admin_shardgate(dbs, admin=admin, api_ca=server_ca.cert, **top)
        return Env(sg=sg, server_ca=server_ca, client_ca=client_ca, proxy_pair=proxy_pair,
                   api_pair=api_pair, backend=backend)

    return start


def assert_error(result, status: int) -> dict:
    """An error answer: this status and a JSON {error_code, description}."""
    assert result.status == status, str(result)
    body = result.json()
    assert isinstance(body.get("error_code"), str) and body["error_code"], body
    assert isinstance(body.get("description"), str) and body["description"], body
    return body


def field_with(obj: dict, word: str):
    """The value of the one key of obj whose name contains word ("fingerprint")."""
    keys = [k for k in obj if word in k.lower()]
    assert len(keys) == 1, f"expected one field naming {word!r} in {obj}"
    return obj[keys[0]]


# ---------------------------------------------------------------- authentication


ENDPOINTS = [("GET", "/v1/cluster"), ("PUT", "/v1/cluster"),
             ("GET", "/v1/cluster/certificates"), ("PUT", "/v1/cluster/certificates"),
             ("PUT", "/v1/cluster/update_cert"), ("GET", "/v1/bdbs")]


def test_no_credentials_is_401_on_every_endpoint(env):
    e = env()
    before = snapshot(e.cert_dir)
    new = e.new_pair()
    bodies = {"/v1/cluster": json.dumps({"min_data_TLS_version": "1.3"}),
              "/v1/cluster/certificates": json.dumps({"certificates": [
                  json.loads(update_body("proxy", new))]}),
              "/v1/cluster/update_cert": update_body("proxy", new)}
    for method, path in ENDPOINTS:
        r = e.sg.curl(method, path, bodies.get(path) if method == "PUT" else None, auth=False)
        assert_error(r, 401)
        assert r.headers.get("www-authenticate", "").lower().startswith("basic"), str(r)
    # Nothing a refused request carried was applied.
    assert snapshot(e.cert_dir) == before
    assert e.served_proxy_fp() == fingerprint(e.proxy_pair.cert_pem)
    r = e.sg.curl("GET", "/v1/cluster")
    assert r.status == 200, str(r)
    assert r.json()["min_data_TLS_version"] == "1.2"


def test_wrong_password_and_unknown_user_are_401_right_password_is_200(env):
    e = env()
    r = e.sg.curl("GET", "/v1/cluster", user=(ADMIN_USER, ADMIN_PASSWORD + "x"))
    assert_error(r, 401)
    r = e.sg.curl("GET", "/v1/cluster", user=("nobody", ADMIN_PASSWORD))
    assert_error(r, 401)
    r = e.sg.curl("GET", "/v1/cluster", user=(ADMIN_USER, ""))
    assert_error(r, 401)
    r = e.sg.curl("GET", "/v1/cluster", extra=("-H", "Authorization: Basic !!!notbase64"),
                  auth=False)
    assert_error(r, 401)
    r = e.sg.curl("GET", "/v1/cluster")
    assert r.status == 200, str(r)
    # The password is never logged.
    assert ADMIN_PASSWORD not in e.log()


def test_repeated_failures_from_one_address_are_slowed_down(env):
    e = env()
    # The first failure costs one password verification; each one after it
    # waits longer than the one before, up to a bound.
    times = []
    for _ in range(5):
        r = e.sg.curl("GET", "/v1/cluster", user=(ADMIN_USER, "wrong"), timeout=30)
        assert_error(r, 401)
        times.append(r.elapsed)
    # Measured against the first one (a password check alone, however slow
    # this machine is right now): the added wait grows, and stays bounded.
    added = [round(t - times[0], 2) for t in times]
    assert all(t < 20 for t in times), f"a failure took unbounded time: {times}"
    assert added[-1] >= 1.0, f"no slowing down after 4 failures: added waits {added}"
    assert added[-1] > added[2] + 0.3, f"the wait does not grow: added waits {added}"
    # The right password still gets in (after its wait), and clears the count.
    r = e.sg.curl("GET", "/v1/cluster", timeout=30)
    assert r.status == 200, str(r)
    r = e.sg.curl("GET", "/v1/cluster", timeout=30)
    assert r.status == 200, str(r)
    assert r.elapsed < times[-1], f"a success did not clear the failures: {r.elapsed} {times}"


def test_parallel_failures_from_one_address_are_slowed_down_too(env):
    # The same guesses sent at once over parallel connections: one address's
    # failures are slowed down however they arrive, so the answers to six
    # parallel wrong passwords are spread out in time (one after another,
    # each waiting longer), or the excess is turned away at once (429). The
    # spread, not the absolute time, is measured: a loaded machine makes
    # every password verification slow, which is no slowing down.
    e = env()
    results: list = [None] * 6

    def guess(i: int) -> None:
        results[i] = e.sg.curl("GET", "/v1/cluster", user=(ADMIN_USER, f"guess-{i}"), timeout=60)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert all(r is not None for r in results), "a guess got no answer within 90 s"
    assert all(r.status in (401, 429) for r in results), [str(r) for r in results]
    verified = sorted(r.elapsed for r in results if r.status == 401)
    if len(verified) >= 3:
        spread = verified[-1] - verified[0]
        assert spread >= 4.0, (
            f"{len(verified)} parallel wrong passwords from one address were all answered "
            f"401 within {spread:.2f} s of each other: parallel guesses are not slowed down "
            f"({[(r.status, round(r.elapsed, 2)) for r in results]})")
    # The right password still gets in afterwards.
    r = e.sg.curl("GET", "/v1/cluster", timeout=60)
    assert r.status == 200, str(r)


def test_client_certificate_from_trusted_ca_needs_no_password(env):
    e = env()
    client = e.client_ca.issue_client(0x77, "ops", "ops-automation")
    r = e.sg.curl("GET", "/v1/cluster", auth=False, cert=client.cert, key=client.key)
    assert r.status == 200, str(r)
    assert r.json()["min_data_TLS_version"] == "1.2"
    # It may change things too, and the audit line names the certificate.
    new = e.new_pair()
    r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", new), auth=False,
                  cert=client.cert, key=client.key)
    assert r.status == 200, str(r)
    audit = [ln for ln in e.log().splitlines() if "audit" in ln and "update_cert" in ln]
    assert audit and "ops-automation" in audit[-1], e.log()[-3000:]


def test_client_certificate_not_chaining_to_trusted_ca_is_401(env, tmp_path):
    e = env()
    stranger = CA(tmp_path / "stranger-ca", name="shardgate stranger CA")
    # Same subject as a trusted one would have: only the chain decides.
    client = stranger.issue_client(0x77, "ops", "ops-automation")
    before = snapshot(e.cert_dir)
    r = e.sg.curl("GET", "/v1/cluster", auth=False, cert=client.cert, key=client.key)
    assert_error(r, 401)
    r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", e.new_pair()),
                  auth=False, cert=client.cert, key=client.key)
    assert_error(r, 401)
    assert snapshot(e.cert_dir) == before
    # The proxy's own certificate is no client certificate of the API either
    # (issued by the server CA, which mtls_trusted_ca.pem does not hold).
    r = e.sg.curl("GET", "/v1/cluster", auth=False, cert=e.proxy_pair.cert,
                  key=e.proxy_pair.key)
    assert_error(r, 401)
    # An untrusted certificate is ignored, not held against the password.
    r = e.sg.curl("GET", "/v1/cluster", cert=client.cert, key=client.key)
    assert r.status == 200, str(r)


def test_hash_password_is_salted_and_never_the_password(admin_password_hash):
    from conftest import hash_password
    again = hash_password(ADMIN_PASSWORD)
    assert ADMIN_PASSWORD not in again
    assert again != admin_password_hash, "two hashes of one password are equal: no salt"


# ---------------------------------------------------------------- update_cert


def test_update_cert_proxy_applies_to_new_handshakes_and_keeps_held_connections(env):
    e = env()
    old_fp = fingerprint(e.proxy_pair.cert_pem)
    assert e.served_proxy_fp() == old_fp
    files_before = set(snapshot(e.cert_dir))
    held = HeldRedisPy(e.data_port, e.server_ca.cert)
    cli = HeldRedisCli(e.data_port, e.server_ca.cert)
    tls12 = tls_data_socket(e.data_port, e.server_ca.cert, ssl.TLSVersion.TLSv1_2)
    try:
        assert held.peer_fp == old_fp
        assert held.command("SET", "k:held", "before") in (b"OK", "OK", True)
        assert cli.command("SET k:cli before") == "OK"
        ping(tls12)

        new = e.new_pair()
        r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", new))
        assert r.status == 200, str(r)
        body = r.json()
        # generation, subject, not_after, fingerprint of the new certificate
        assert isinstance(body.get("generation"), int) and body["generation"] >= 2, body
        assert "localhost" in body["subject"], body
        _, not_after = cert_dates(new.cert)
        assert parse_api_time(body["not_after"]) == not_after, body
        assert norm_fingerprint(field_with(body, "fingerprint")) == fingerprint(new.cert_pem), body
        assert_no_key_material(r.body.decode(), [new.key_pem], "the update_cert answer")

        # New handshakes get the new certificate.
        wait_served(e.data_port, e.server_ca.cert, fingerprint(new.cert_pem), within=0.5,
                    log=e.log)
        # The held connections carry on, on their old session.
        assert held.command("GET", "k:held") == b"before"
        assert held.command("SET", "k:held", "after") in (b"OK", "OK", True)
        assert held.command("GET", "k:held") == b"after"
        assert hashlib.sha256(held.sock.getpeercert(binary_form=True)).hexdigest() == old_fp
        assert cli.command("GET k:cli") == "before"
        assert cli.command("GET k:held") == "after"
        ping(tls12)

        # The files in cert_dir are the new ones; the key is 0600.
        assert fingerprint((e.cert_dir / "proxy_cert.pem").read_bytes()) == fingerprint(
            new.cert_pem)
        assert (e.cert_dir / "proxy_key.pem").read_bytes().strip() == new.key_pem.strip()
        assert (e.cert_dir / "proxy_key.pem").stat().st_mode & 0o777 == 0o600
        # The same files as before (no temporary file left behind).
        assert set(snapshot(e.cert_dir)) == files_before
        # A second update moves the generation on.
        newer = e.new_pair()
        r2 = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", newer))
        assert r2.status == 200, str(r2)
        assert r2.json()["generation"] > body["generation"]
        assert held.command("GET", "k:held") == b"after"
        assert_no_key_material(e.log(), [new.key_pem, newer.key_pem], "shardgate's log")
    finally:
        held.close()
        cli.close()
        tls12.close()


def test_update_cert_api_rotates_the_admin_listener(env):
    e = env()
    assert e.served_api_fp() == fingerprint(e.api_pair.cert_pem)
    new = e.new_pair()
    r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("api", new))
    assert r.status == 200, str(r)
    wait_served(e.sg.api_port, e.server_ca.cert, fingerprint(new.cert_pem), within=0.5,
                proxy=False, log=e.log)
    assert (e.cert_dir / "api_key.pem").stat().st_mode & 0o777 == 0o600
    # The proxy certificate is untouched, and the API still answers.
    assert e.served_proxy_fp() == fingerprint(e.proxy_pair.cert_pem)
    assert e.sg.curl("GET", "/v1/cluster").status == 200


_INTERMEDIATE_EXT = """\
[ intermediate ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def intermediate_ca(root: CA, directory: Path) -> CA:
    """A CA whose certificate is issued by root (its leaves need the chain)."""
    inter = CA(directory, name="shardgate test intermediate CA")
    (inter.dir / "inter_ext.cnf").write_text(_INTERMEDIATE_EXT)
    run_openssl("req", "-new", "-key", "ca.key", "-subj", "/CN=shardgate test intermediate CA",
                "-out", "inter.csr", cwd=inter.dir)
    run_openssl("x509", "-req", "-in", "inter.csr", "-CA", root.cert, "-CAkey", root.key,
                "-set_serial", "4242", "-days", "365", "-extfile", "inter_ext.cnf",
                "-extensions", "intermediate", "-out", "ca.pem", cwd=inter.dir)
    return inter


def test_update_cert_with_a_chain_serves_the_chain(env, tmp_path):
    e = env()
    inter = intermediate_ca(e.server_ca, tmp_path / "intermediate-ca")
    leaf = inter.issue(0x3001)
    chained = leaf.cert_pem + inter.cert.read_bytes()
    r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", leaf, cert=chained))
    assert r.status == 200, str(r)
    # A client trusting only the root verifies the leaf: the intermediate is sent.
    rc, out = s_client(e.data_port, "-CAfile", str(e.server_ca.cert), "-showcerts")
    assert "+PONG" in out and "Verify return code: 0 (ok)" in out, out
    sent = pem_blocks(out)
    assert len(sent) == 2 and fingerprint(sent[0]) == fingerprint(leaf.cert_pem), out
    assert fingerprint(sent[1]) == fingerprint(inter.cert.read_bytes()), out
    # The files hold the chain; GET lists the leaf.
    assert len(pem_blocks((e.cert_dir / "proxy_cert.pem").read_text())) == 2 or \
        (e.cert_dir / "chain_certs.pem").exists()
    listed = {c["name"]: c for c in e.sg.curl("GET", "/v1/cluster/certificates").json()[
        "certificates"]}["proxy"]
    assert norm_fingerprint(field_with(listed, "fingerprint")) == fingerprint(leaf.cert_pem)


def test_update_cert_metrics_exporter_writes_its_files(env):
    e = env()
    new = e.new_pair()
    r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("metrics_exporter", new))
    assert r.status == 200, str(r)
    assert norm_fingerprint(field_with(r.json(), "fingerprint")) == fingerprint(new.cert_pem)
    cert, key = e.cert_dir / "metrics_exporter_cert.pem", e.cert_dir / "metrics_exporter_key.pem"
    assert fingerprint(cert.read_bytes()) == fingerprint(new.cert_pem)
    assert key.read_bytes().strip() == new.key_pem.strip()
    assert key.stat().st_mode & 0o777 == 0o600
    assert e.served_proxy_fp() == fingerprint(e.proxy_pair.cert_pem)


def test_update_cert_with_the_served_certificate_answers_the_same_shape(env):
    # An operator's script that runs twice gets the same kind of answer:
    # generation, subject, not_after and fingerprint of what is served.
    e = env()
    r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", e.proxy_pair))
    assert r.status == 200, str(r)
    body = r.json()
    for f in ("generation", "subject", "not_after"):
        assert f in body, f"no {f} in {body}"
    assert norm_fingerprint(field_with(body, "fingerprint")) == fingerprint(e.proxy_pair.cert_pem)


def _garbage_pem() -> str:
    return "-----BEGIN CERTIFICATE-----\nTUlJQm5vdCBhIGNlcnRpZmljYXRl\n-----END CERTIFICATE-----\n"


def _out_of_order(e: Env) -> str:
    """The intermediate first, then the leaf it issued."""
    inter = intermediate_ca(e.server_ca, e.server_ca.dir.parent / "inter-ca")
    leaf = inter.issue(0x3002)
    return update_body("proxy", leaf, cert=inter.cert.read_bytes() + leaf.cert_pem)


# (case, expected status, body maker)
ERROR_CASES = [
    ("malformed_pem", 400, lambda e: update_body("proxy", cert=_garbage_pem(),
                                                 key=e.new_pair().key_pem)),
    ("not_pem_at_all", 400, lambda e: update_body("proxy", cert="hello", key="world")),
    ("truncated_key", 400, lambda e: (lambda p: update_body(
        "proxy", p, key=p.key_pem[: len(p.key_pem) // 2]))(e.new_pair())),
    ("key_mismatch", 400, lambda e: update_body("proxy", cert=e.new_pair().cert_pem,
                                                key=e.new_pair().key_pem)),
    ("encrypted_key", 400, lambda e: (lambda p: update_body("proxy", p, key=run_openssl(
        "pkey", "-in", p.key, "-aes256", "-passout", "pass:secret", cwd=p.key.parent)))(
        e.new_pair())),
    ("chain_out_of_order", 400, lambda e: _out_of_order(e)),
    ("missing_key", 400, lambda e: json.dumps({"name": "proxy",
                                               "certificate": e.new_pair().cert_pem.decode()})),
    ("not_json", 400, lambda e: "{\"name\": \"proxy\", "),
    ("unknown_name", 403, lambda e: update_body("database", e.new_pair())),
    ("expired", 406, lambda e: update_body("proxy", e.new_pair(
        not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30),
        not_after=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)))),
    ("not_yet_valid", 406, lambda e: update_body("proxy", e.new_pair(
        not_before=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1),
        not_after=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=90)))),
    ("expired_api", 406, lambda e: update_body("api", e.new_pair(
        not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30),
        not_after=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)))),
]


@pytest.mark.parametrize("case,status,make", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_update_cert_refusals_change_nothing(env, case, status, make):
    e = env()
    before = snapshot(e.cert_dir)
    proxy_fp, api_fp = e.served_proxy_fp(), e.served_api_fp()
    held = HeldRedisPy(e.data_port, e.server_ca.cert)
    try:
        assert held.command("SET", "k", "v") in (b"OK", "OK", True)
        body = make(e)
        r = e.sg.curl("PUT", "/v1/cluster/update_cert", body)
        assert_error(r, status)
        sent_keys = sent_keys_of(body)
        assert_no_key_material(r.body.decode(), sent_keys, "the error answer")
        # Nothing applied: the same files, the same certificates served.
        assert snapshot(e.cert_dir) == before
        assert e.served_proxy_fp() == proxy_fp
        assert e.served_api_fp() == api_fp
        assert held.command("GET", "k") == b"v"
        # The refusal is audited, with its status.
        audit = [ln for ln in e.log().splitlines() if "audit" in ln and "update_cert" in ln]
        assert audit and str(status) in audit[-1] and ADMIN_USER in audit[-1], e.log()[-3000:]
        assert_no_key_material(e.log(), sent_keys, "shardgate's log")
        # The API still works after the refusal: a good certificate goes in.
        good = e.new_pair()
        r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", good))
        assert r.status == 200, str(r)
        assert e.served_proxy_fp() == fingerprint(good.cert_pem)
    finally:
        held.close()


def test_parallel_update_certs_leave_files_and_served_certificate_in_agreement(env):
    # Eight updates at once, each with its own leaf: whichever is applied
    # last, the files, the served certificate and the listing agree on it.
    e = env()
    robot = e.client_ca.issue_client(0x99, "robot", "rotation-robot")
    pairs = [e.new_pair() for _ in range(8)]
    results: list = [None] * len(pairs)

    def update(i: int) -> None:
        results[i] = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", pairs[i]),
                               auth=False, cert=robot.cert, key=robot.key)

    threads = [threading.Thread(target=update, args=(i,)) for i in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r is not None and r.status == 200 for r in results), [str(r) for r in results]
    generations = [r.json()["generation"] for r in results]
    assert len(set(generations)) == len(generations), generations
    last = pairs[generations.index(max(generations))]
    # Let the directory watch see the last writes, then compare.
    time.sleep(0.5)
    assert fingerprint((e.cert_dir / "proxy_cert.pem").read_bytes()) == fingerprint(last.cert_pem)
    assert (e.cert_dir / "proxy_key.pem").read_bytes().strip() == last.key_pem.strip()
    assert e.served_proxy_fp() == fingerprint(last.cert_pem)
    listed = {c["name"]: c for c in e.sg.curl("GET", "/v1/cluster/certificates").json()[
        "certificates"]}["proxy"]
    assert norm_fingerprint(field_with(listed, "fingerprint")) == fingerprint(last.cert_pem)
    assert listed["generation"] == max(generations), listed


# ---------------------------------------------------------------- PUT/GET certificates


def test_put_certificates_all_valid_applies_all(env):
    e = env()
    proxy_new, api_new = e.new_pair(), e.new_pair()
    body = json.dumps({"certificates": [json.loads(update_body("proxy", proxy_new)),
                                        json.loads(update_body("api", api_new))]})
    r = e.sg.curl("PUT", "/v1/cluster/certificates", body)
    assert r.status == 200, str(r)
    assert_no_key_material(r.body.decode(), [proxy_new.key_pem, api_new.key_pem], "the answer")
    wait_served(e.data_port, e.server_ca.cert, fingerprint(proxy_new.cert_pem), within=0.5,
                log=e.log)
    wait_served(e.sg.api_port, e.server_ca.cert, fingerprint(api_new.cert_pem), within=0.5,
                proxy=False, log=e.log)
    for pair, (cert_name, key_name) in ((proxy_new, PROXY_FILES), (api_new, API_FILES)):
        assert fingerprint((e.cert_dir / cert_name).read_bytes()) == fingerprint(pair.cert_pem)
        assert (e.cert_dir / key_name).read_bytes().strip() == pair.key_pem.strip()
        assert (e.cert_dir / key_name).stat().st_mode & 0o777 == 0o600


def _expired(e: Env) -> Pair:
    now = dt.datetime.now(dt.timezone.utc)
    return e.new_pair(not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1))


BATCH_CASES = [
    # (case, items maker): exactly one item is bad; it is first, or last.
    ("bad_api_last", lambda e: [json.loads(update_body("proxy", e.new_pair())),
                                json.loads(update_body("api", _expired(e)))]),
    ("bad_proxy_first", lambda e: [json.loads(update_body("proxy", cert=e.new_pair().cert_pem,
                                                          key=e.new_pair().key_pem)),
                                   json.loads(update_body("api", e.new_pair()))]),
    ("unknown_name_last", lambda e: [json.loads(update_body("proxy", e.new_pair())),
                                     json.loads(update_body("api", e.new_pair())),
                                     json.loads(update_body("nonsense", e.new_pair()))]),
]


@pytest.mark.parametrize("case,make", BATCH_CASES, ids=[c[0] for c in BATCH_CASES])
def test_put_certificates_one_bad_applies_none(env, case, make):
    e = env()
    before = snapshot(e.cert_dir)
    proxy_fp, api_fp = e.served_proxy_fp(), e.served_api_fp()
    r = e.sg.curl("PUT", "/v1/cluster/certificates", json.dumps({"certificates": make(e)}))
    assert r.status is not None and 400 <= r.status < 500, str(r)
    assert_error(r, r.status)
    assert snapshot(e.cert_dir) == before
    assert e.served_proxy_fp() == proxy_fp
    assert e.served_api_fp() == api_fp
    # And a moment later too (no watcher picks up half of it).
    time.sleep(0.3)
    assert snapshot(e.cert_dir) == before
    assert e.served_proxy_fp() == proxy_fp


def test_get_certificates_describes_each_and_never_a_key(env):
    e = env()
    r = e.sg.curl("GET", "/v1/cluster/certificates")
    assert r.status == 200, str(r)
    text = r.body.decode()
    keys = [(e.cert_dir / f).read_bytes() for f in ("proxy_key.pem", "api_key.pem")]
    assert_no_key_material(text, keys, "GET /v1/cluster/certificates")
    assert '"key"' not in text, text
    body = r.json()
    items = body["certificates"] if isinstance(body, dict) else body
    by_name = {c["name"]: c for c in items}
    assert {"proxy", "api", "metrics_exporter", "mtls_trusted_ca"} <= set(by_name), by_name.keys()
    for name, pair in (("proxy", e.proxy_pair), ("api", e.api_pair)):
        c = by_name[name]
        for f in ("subject", "sans", "issuer", "serial", "not_before", "not_after", "days_left",
                  "generation"):
            assert f in c, f"{name}: no {f} in {c}"
        assert "localhost" in c["subject"], c
        assert "shardgate test server CA" in c["issuer"], c
        assert any("localhost" in s for s in c["sans"]), c
        assert any("127.0.0.1" in s for s in c["sans"]), c
        assert c["serial"].replace(":", "").upper().lstrip("0") == pair.serial, c
        not_before, not_after = cert_dates(pair.cert)
        assert parse_api_time(c["not_before"]) == not_before, c
        assert parse_api_time(c["not_after"]) == not_after, c
        assert c["days_left"] in (88, 89, 90), c
        assert norm_fingerprint(field_with(c, "fingerprint")) == fingerprint(pair.cert_pem), c
        assert isinstance(c["generation"], int) and c["generation"] >= 1, c
        assert any("connection" in k for k in c), f"{name}: no live connections in {c}"
    # What is listed is what is served.
    assert norm_fingerprint(field_with(by_name["proxy"], "fingerprint")) == e.served_proxy_fp()


def test_get_certificates_counts_live_connections_per_generation(env):
    e = env()
    held = tls_data_socket(e.data_port, e.server_ca.cert)
    try:
        ping(held)
        r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", e.new_pair()))
        assert r.status == 200, str(r)
        new_gen = r.json()["generation"]
        deadline = time.monotonic() + WAIT_S
        while True:
            c = {c["name"]: c for c in e.sg.curl("GET", "/v1/cluster/certificates").json()[
                "certificates"]}["proxy"]
            assert c["generation"] == new_gen, c
            live = {g["generation"]: g["connections"] for g in c["live_connections"]}
            older = sum(n for g, n in live.items() if g < new_gen)
            if older >= 1:
                break
            assert time.monotonic() < deadline, f"the held connection is not counted: {c}"
            time.sleep(0.05)
        ping(held)
    finally:
        held.close()


# ---------------------------------------------------------------- GET/PUT /v1/cluster


def test_cluster_min_data_tls_version_applies_to_new_handshakes_only_and_persists(
        env, admin_shardgate):
    e = env()
    r = e.sg.curl("GET", "/v1/cluster")
    assert r.status == 200, str(r)
    settings = r.json()
    for f in ("min_data_TLS_version", "min_control_TLS_version", "data_cipher_list",
              "data_cipher_suites_tls_1_3"):
        assert f in settings, settings
    assert settings["min_data_TLS_version"] == "1.2"
    # TLS 1.2 works before the change; a TLS 1.2 connection is held across it.
    rc, out = s_client(e.data_port, "-tls1_2", "-CAfile", str(e.server_ca.cert))
    assert "+PONG" in out, out
    held = tls_data_socket(e.data_port, e.server_ca.cert, ssl.TLSVersion.TLSv1_2)
    redis_held = HeldRedisPy(e.data_port, e.server_ca.cert)
    try:
        assert held.version() == "TLSv1.2"
        ping(held)
        assert redis_held.command("SET", "k", "1") in (b"OK", "OK", True)
        r = e.sg.curl("PUT", "/v1/cluster", json.dumps({"min_data_TLS_version": "1.3"}))
        assert r.status == 200, str(r)
        assert r.json()["min_data_TLS_version"] == "1.3", r.json()
        assert e.sg.curl("GET", "/v1/cluster").json()["min_data_TLS_version"] == "1.3"
        # A new TLS 1.2 handshake is refused; TLS 1.3 is served.
        rc, out = s_client(e.data_port, "-tls1_2", "-CAfile", str(e.server_ca.cert))
        assert rc != 0 and "+PONG" not in out, out
        rc, out = s_client(e.data_port, "-tls1_3", "-CAfile", str(e.server_ca.cert))
        assert "+PONG" in out, out
        # The established TLS 1.2 connection carries on.
        ping(held)
        assert redis_held.command("GET", "k") == b"1"
        # The admin API (control side) is not the data side: it still speaks TLS 1.2.
        r = e.sg.curl("GET", "/v1/cluster", extra=("--tlsv1.2", "--tls-max", "1.2"))
        assert r.status == 200, str(r)
    finally:
        held.close()
        redis_held.close()
    # --check-config shows the effective value and where it comes from.
    check = run_shardgate(["--config", e.sg.config_path, "--check-config"])
    assert check.returncode == 0, check.stdout + check.stderr
    assert re.search(r"min_data_TLS_version\s*[=:]\s*\"?1\.3", check.stdout + check.stderr), \
        check.stdout + check.stderr
    # A restart keeps it.
    stop_process(e.sg.proc)
    sg2 = admin_shardgate([database("db1", 0, e.backend.address)], api_ca=e.server_ca.cert)
    r = sg2.curl("GET", "/v1/cluster")
    assert r.status == 200, str(r)
    assert r.json()["min_data_TLS_version"] == "1.3", r.json()
    rc, out = s_client(sg2.port("db1"), "-tls1_2", "-CAfile", str(e.server_ca.cert))
    assert rc != 0 and "+PONG" not in out, out
    rc, out = s_client(sg2.port("db1"), "-tls1_3", "-CAfile", str(e.server_ca.cert))
    assert "+PONG" in out, out


@pytest.mark.parametrize("field,value", [
    ("min_data_TLS_version", "1.7"),
    ("min_data_TLS_version", 13),
    ("min_control_TLS_version", "TLSv9"),
    ("data_cipher_list", "NO-SUCH-CIPHER"),
    ("data_cipher_suites_tls_1_3", "TLS_NO_SUCH_SUITE"),
])
def test_put_cluster_invalid_value_is_400_naming_the_field(env, field, value):
    e = env()
    before_settings = e.sg.curl("GET", "/v1/cluster").json()
    before = snapshot(e.cert_dir)
    r = e.sg.curl("PUT", "/v1/cluster", json.dumps({field: value}))
    err = assert_error(r, 400)
    assert field in err["description"], err
    assert e.sg.curl("GET", "/v1/cluster").json() == before_settings
    assert snapshot(e.cert_dir) == before  # nothing persisted
    rc, out = s_client(e.data_port, "-tls1_2", "-CAfile", str(e.server_ca.cert))
    assert "+PONG" in out, out


def test_put_cluster_unknown_setting_is_400_naming_it(env):
    e = env()
    r = e.sg.curl("PUT", "/v1/cluster", json.dumps({"min_data_tls_versoin": "1.3"}))
    err = assert_error(r, 400)
    assert "min_data_tls_versoin" in err["description"], err


def test_cluster_min_control_tls_version_applies_to_the_admin_api(env):
    e = env()
    r = e.sg.curl("GET", "/v1/cluster", extra=("--tlsv1.2", "--tls-max", "1.2"))
    assert r.status == 200, str(r)
    r = e.sg.curl("PUT", "/v1/cluster", json.dumps({"min_control_TLS_version": "1.3"}))
    assert r.status == 200, str(r)
    r = e.sg.curl("GET", "/v1/cluster", extra=("--tlsv1.2", "--tls-max", "1.2"))
    assert r.status is None and r.exit_code != 0, str(r)
    r = e.sg.curl("GET", "/v1/cluster", extra=("--tlsv1.3",))
    assert r.status == 200, str(r)
    assert r.json()["min_control_TLS_version"] == "1.3"
    # The data side is not the control side.
    rc, out = s_client(e.data_port, "-tls1_2", "-CAfile", str(e.server_ca.cert))
    assert "+PONG" in out, out


def test_cluster_settings_survive_sighup(env):
    e = env()
    r = e.sg.curl("PUT", "/v1/cluster", json.dumps({"min_data_TLS_version": "1.3"}))
    assert r.status == 200, str(r)
    e.sg.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + WAIT_S
    while "SIGHUP" not in e.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert e.sg.curl("GET", "/v1/cluster").json()["min_data_TLS_version"] == "1.3"
    rc, out = s_client(e.data_port, "-tls1_2", "-CAfile", str(e.server_ca.cert))
    assert rc != 0 and "+PONG" not in out, out


def test_cluster_null_removes_the_override_and_changes_are_audited(env):
    e = env()
    r = e.sg.curl("PUT", "/v1/cluster", json.dumps({"min_data_TLS_version": "1.3"}))
    assert r.status == 200, str(r)
    audit = [ln for ln in e.log().splitlines() if "audit" in ln and "/v1/cluster" in ln]
    assert audit, e.log()[-3000:]
    assert all(w in audit[-1] for w in (ADMIN_USER, "127.0.0.1", "min_data_TLS_version",
                                        "200")), audit[-1]
    r = e.sg.curl("PUT", "/v1/cluster", json.dumps({"min_data_TLS_version": None}))
    assert r.status == 200, str(r)
    assert r.json()["min_data_TLS_version"] == "1.2", r.json()
    rc, out = s_client(e.data_port, "-tls1_2", "-CAfile", str(e.server_ca.cert))
    assert "+PONG" in out, out


def test_malformed_persisted_settings_stop_the_start_naming_the_file(env):
    e = env()
    r = e.sg.curl("PUT", "/v1/cluster", json.dumps({"min_data_TLS_version": "1.3"}))
    assert r.status == 200, str(r)
    stop_process(e.sg.proc)
    persisted = [p for p in e.cert_dir.iterdir() if p.suffix == ".json"]
    assert len(persisted) == 1, sorted(p.name for p in e.cert_dir.iterdir())
    persisted[0].write_text("{ not json")
    for args in (["--config", e.sg.config_path, "--check-config"], ["--config", e.sg.config_path]):
        done = run_shardgate(args, timeout=15)
        assert done.returncode != 0, done.stdout + done.stderr
        assert persisted[0].name in done.stdout + done.stderr, done.stdout + done.stderr


def test_get_certificates_shows_a_failed_reload_next_to_the_certificate_in_use(env):
    e = env()
    # A pair whose halves do not match, written into cert_dir by hand.
    (e.cert_dir / "proxy_cert.pem").write_bytes(e.new_pair().cert_pem)
    (e.cert_dir / "proxy_key.pem").write_bytes(e.new_pair().key_pem)
    deadline = time.monotonic() + WAIT_S
    while True:
        body = e.sg.curl("GET", "/v1/cluster/certificates").json()
        failure = body.get("last_reload_failure") if isinstance(body, dict) else None
        if failure:
            break
        assert time.monotonic() < deadline, f"no failed reload shown: {body}"
        time.sleep(0.1)
    proxy = {c["name"]: c for c in body["certificates"]}["proxy"]
    assert norm_fingerprint(field_with(proxy, "fingerprint")) == fingerprint(
        e.proxy_pair.cert_pem), proxy
    assert e.served_proxy_fp() == fingerprint(e.proxy_pair.cert_pem)


def test_unknown_path_is_404_and_wrong_method_is_405(env):
    e = env()
    assert_error(e.sg.curl("GET", "/v1/nothing-here"), 404)
    r = e.sg.curl("DELETE", "/v1/cluster/update_cert")
    assert_error(r, 405)
    assert "PUT" in r.headers.get("allow", ""), str(r)
    assert_error(e.sg.curl("GET", "/v1/cluster/update_cert"), 405)


# ---------------------------------------------------------------- GET /v1/bdbs


def test_bdbs_lists_each_database(env, redis_server):
    other = redis_server()
    backend_a = redis_server()
    e = env(databases=[database("db1", 0, backend_a.address),
                       database("plain", 0, other.address, tls=False)])
    r = e.sg.curl("GET", "/v1/bdbs")
    assert r.status == 200, str(r)
    body = r.json()
    items = body["bdbs"] if isinstance(body, dict) else body
    assert isinstance(items, list) and len(items) == 2, body
    by_name = {d["name"]: d for d in items}
    assert set(by_name) == {"db1", "plain"}, body
    for name, backend, tls in (("db1", backend_a, True), ("plain", other, False)):
        d = by_name[name]
        assert d["endpoint"].endswith(f":{e.sg.port(name)}"), d
        tls_field = d["tls"]
        tls_on = tls_field.get("tls") if isinstance(tls_field, dict) else tls_field
        assert tls_on is tls, d
        assert d["mode"] in ("transparent", "multiplexed", "routed"), d
        assert d["mode"] == "transparent", d
        addresses = [s["address"] for s in d["shards"]]
        assert addresses == [backend.address], d
        assert "connections" in d, d


def _utc(text: str) -> float:
    """An ISO 8601 UTC time as the API gives it ("2026-12-05T23:02:11Z")."""
    import calendar
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def _bdb(e, name: str) -> dict:
    r = e.sg.curl("GET", "/v1/bdbs")
    assert r.status == 200, str(r)
    return {d["name"]: d for d in r.json()}[name]


def test_bdbs_shows_shard_state_and_connections(env):
    started = time.time()
    e = env()
    d = _bdb(e, "db1")
    assert d["connections"] == 0, d
    [shard] = d["shards"]
    assert shard["state"] == "up", d
    # Never failed: up since the process started.
    assert started - 1 <= _utc(shard["since"]) <= time.time() + 1, d

    held = [HeldRedisPy(e.data_port, e.server_ca.cert) for _ in range(3)]
    try:
        for h in held:
            assert h.command("PING") == b"PONG"
        assert _bdb(e, "db1")["connections"] == 3
        held.pop().close()
        deadline = time.monotonic() + 5
        while _bdb(e, "db1")["connections"] != 2:
            assert time.monotonic() < deadline, "a closed client is still counted"
            time.sleep(0.05)

        # The shard goes away: the next client's connection to it fails, and
        # the shard is down since then.
        e.backend.proc.terminate()
        e.backend.proc.wait(timeout=10)
        stopped = time.time()
        late = HeldRedisPy(e.data_port, e.server_ca.cert)
        try:
            with pytest.raises(redis.exceptions.ResponseError, match="unavailable"):
                late.command("PING")
        except redis.exceptions.ConnectionError:
            pass  # the error line and the close may race in redis-py
        finally:
            late.close()
        deadline = time.monotonic() + 5
        while (shard := _bdb(e, "db1")["shards"][0])["state"] != "down":
            assert time.monotonic() < deadline, f"shard still {shard} after its redis-server stopped"
            time.sleep(0.05)
        assert stopped - 1 <= _utc(shard["since"]) <= time.time() + 1, shard
    finally:
        for h in held:
            h.close()


# ---------------------------------------------------------------- limits


def test_oversized_body_is_413_and_the_api_carries_on(env):
    e = env(admin={"max_body_bytes": 2048})
    before = snapshot(e.cert_dir)
    pair = e.new_pair()
    item = json.loads(update_body("proxy", pair))
    item["padding"] = "x" * 8192
    r = e.sg.curl("PUT", "/v1/cluster/update_cert", json.dumps(item))
    assert_error(r, 413)
    assert snapshot(e.cert_dir) == before
    # Under the bound, the same certificate goes in.
    r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", pair))
    assert r.status == 200, str(r)


def test_oversized_headers_are_431(env):
    e = env()
    r = e.sg.curl("GET", "/v1/cluster", extra=("-H", "X-Filler: " + "a" * 40000))
    assert r.status == 431, str(r)
    assert e.sg.curl("GET", "/v1/cluster").status == 200


def test_slow_client_is_closed_after_request_timeout(env):
    timeout_ms = 1000
    e = env(admin={"request_timeout_ms": timeout_ms})
    sock = tls_data_socket(e.sg.api_port, e.server_ca.cert)
    # Readable may mean a TLS 1.3 session ticket and no data: a short timeout
    # on recv is "nothing yet", not "closed".
    sock.settimeout(0.05)
    # Headers trickle in a byte every 50 ms and never end: only a
    # whole-request timeout (not an idle one) closes this.
    trickle = b"GET /v1/cluster HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 400
    limit = timeout_ms / 1000 + 5
    data, closed, sent = b"", False, 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < limit:
            if sent < len(trickle):
                try:
                    sock.sendall(trickle[sent:sent + 1])
                except OSError:
                    closed = True
                    break
                sent += 1
            if sent == 5:
                # Meanwhile the API answers others.
                r = e.sg.curl("GET", "/v1/cluster")
                assert r.status == 200, str(r)
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable or sock.pending():
                try:
                    chunk = sock.recv(65536)
                except (ssl.SSLWantReadError, TimeoutError):
                    continue
                except (OSError, ssl.SSLError):
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                data += chunk
        elapsed = time.monotonic() - started
        assert closed, f"a slow client is still connected after {elapsed:.1f} s ({sent} bytes sent)"
        assert elapsed >= timeout_ms / 1000 * 0.8, f"closed too early: {elapsed:.2f} s {data!r}"
        assert elapsed <= timeout_ms / 1000 + 2.0, f"closed too late: {elapsed:.2f} s"
        assert 5 < sent < len(trickle), f"{sent} bytes of the trickle sent: the test proved nothing"
        assert not data or b" 408 " in data.split(b"\r\n", 1)[0], data
    finally:
        sock.close()


def test_silent_connection_is_closed_after_request_timeout(env):
    # A TCP connection that never starts its TLS handshake holds a slot of
    # max_connections: it too is closed once the request time is up.
    timeout_ms = 1000
    e = env(admin={"request_timeout_ms": timeout_ms})
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", e.sg.api_port), timeout=timeout_ms / 1000 + 5) as s:
        try:
            data = s.recv(1024)
        except ConnectionResetError:
            data = b""
        elapsed = time.monotonic() - started
    assert data == b"", data
    assert timeout_ms / 1000 * 0.8 <= elapsed <= timeout_ms / 1000 + 2.0, \
        f"a silent connection was closed after {elapsed:.2f} s"


def test_chunked_body_is_read_and_bounded_like_any_other(env):
    e = env(admin={"max_body_bytes": 4096})
    before = snapshot(e.cert_dir)
    chunked = ("-H", "Transfer-Encoding: chunked")
    item = json.loads(update_body("proxy", e.new_pair()))
    item["padding"] = "x" * 16384
    r = e.sg.curl("PUT", "/v1/cluster/update_cert", json.dumps(item), extra=chunked)
    assert_error(r, 413)
    assert snapshot(e.cert_dir) == before
    good = e.new_pair()
    r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", good), extra=chunked)
    assert r.status == 200, str(r)
    assert e.served_proxy_fp() == fingerprint(good.cert_pem)


def test_pipelined_requests_are_answered_in_order(env):
    e = env()
    auth = base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()
    one = (f"GET /v1/cluster HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Authorization: Basic {auth}\r\n\r\n")
    two = (f"GET /v1/bdbs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Authorization: Basic {auth}\r\n\r\n")
    with tls_data_socket(e.sg.api_port, e.server_ca.cert) as sock:
        sock.sendall((one + two).encode())
        data = b""
        deadline = time.monotonic() + 20
        while data.count(b"HTTP/1.1 ") < 2 or not data.rstrip().endswith(b"]"):
            assert time.monotonic() < deadline, f"two answers expected, got {data!r}"
            chunk = recv_until(sock, b"]", timeout=2)
            if not chunk:
                continue
            data += chunk
    first, second = data.split(b"HTTP/1.1 ")[1:3]
    assert first.startswith(b"200") and b"min_data_TLS_version" in first, data
    assert second.startswith(b"200") and b'"db1"' in second, data


def _raw_status(e: Env, request: bytes) -> int | None:
    """Sends one raw request over a new TLS connection; the answer's status."""
    with tls_data_socket(e.sg.api_port, e.server_ca.cert) as sock:
        sock.sendall(request)
        head = recv_until(sock, b"\r\n", timeout=20)
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    return int(m.group(1)) if m else None


def test_hostile_input_gets_4xx_and_the_api_carries_on(env):
    e = env()
    good_auth = base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode())
    bad_user = base64.b64encode(b"\xff\xfe\x1b[31m\n\x00evil:" + ADMIN_PASSWORD.encode())
    bad_json = '{"name": "\xff\xfe", "certificate": "\x00", "key": "\xc3\x28"}'
    cases = [
        ("user name of invalid UTF-8 and control characters",
         b"GET /v1/cluster HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + bad_user + b"\r\n\r\n",
         (401,)),
        ("path of invalid UTF-8",
         b"GET /v1/\xff\xfe%00 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + good_auth +
         b"\r\n\r\n", (400, 404)),
        ("body of invalid UTF-8",
         b"PUT /v1/cluster/update_cert HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + good_auth +
         b"\r\nContent-Type: application/json\r\nContent-Length: " +
         str(len(bad_json.encode("latin-1"))).encode() + b"\r\n\r\n" + bad_json.encode("latin-1"),
         (400, 403)),
        ("cluster setting of invalid UTF-8",
         b"PUT /v1/cluster HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + good_auth +
         b"\r\nContent-Length: 26\r\n\r\n" + b'{"data_cipher_list": "\xff\xfe"}',
         (400,)),
        ("not HTTP at all", b"\x16\x03\x01 hello\r\n\r\n", (400,)),
    ]
    for what, request, expected in cases:
        status = _raw_status(e, request)
        assert status in expected, f"{what}: HTTP {status}, expected one of {expected}"
        assert e.sg.proc.poll() is None, f"shardgate exited after {what}\n{e.log()[-3000:]}"
    r = e.sg.curl("GET", "/v1/cluster")
    assert r.status == 200, str(r)
    # What clients sent is logged escaped: no raw escape sequence reaches the log.
    assert "\x1b[31m" not in e.log()


def test_connections_over_max_connections_are_refused_others_fine(env):
    cap = 3
    e = env(admin={"max_connections": cap, "request_timeout_ms": 30000})
    held = [tls_data_socket(e.sg.api_port, e.server_ca.cert) for _ in range(cap)]
    auth = base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()
    request = (f"GET /v1/cluster HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Basic {auth}\r\n\r\n").encode()
    try:
        # One more is refused (closed at once: curl gets no answer)...
        r = e.sg.curl("GET", "/v1/cluster", timeout=10)
        assert r.status is None and r.exit_code != 0, str(r)
        assert r.elapsed < 5, str(r)
        # ...while those within the cap are served.
        for sock in held:
            sock.sendall(request)
            reply = recv_until(sock, b"}", timeout=10)
            assert reply.startswith(b"HTTP/1.1 200"), reply
        # One leaves: a new one is served again.
        held.pop().close()
        deadline = time.monotonic() + WAIT_S
        while True:
            r = e.sg.curl("GET", "/v1/cluster", timeout=10)
            if r.status == 200:
                break
            assert time.monotonic() < deadline, f"no room after a connection left: {r}"
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()


# ---------------------------------------------------------------- shared cert_dir


def test_two_shardgates_sharing_cert_dir_both_serve_an_update(env, admin_shardgate, redis_server):
    e = env()
    other_backend = redis_server()
    # The second one has no admin API: it learns of the update from the files.
    b = admin_shardgate([database("db1", 0, other_backend.address)], api=False, name="second")
    assert served_fingerprint(b.port("db1"), e.server_ca.cert) == fingerprint(
        e.proxy_pair.cert_pem)
    held = HeldRedisPy(b.port("db1"), e.server_ca.cert)
    try:
        held.command("SET", "k", "v")
        new = e.new_pair()
        r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", new))
        assert r.status == 200, str(r)
        wait_served(e.data_port, e.server_ca.cert, fingerprint(new.cert_pem), within=0.5,
                    log=e.log)
        took = wait_served(b.port("db1"), e.server_ca.cert, fingerprint(new.cert_pem),
                           within=SHARED_DIR_WITHIN_S, log=b.log)
        assert took <= SHARED_DIR_WITHIN_S
        assert held.command("GET", "k") == b"v"
    finally:
        held.close()


# ---------------------------------------------------------------- soak


def test_soak_100_rotations_with_a_held_client(env):
    rotations, deadline_s = 100, 120.0
    e = env()
    # 20 distinct leaves in turn: every call replaces the one served.
    distinct = [e.new_pair() for _ in range(20)]
    pairs = [distinct[i % len(distinct)] for i in range(rotations)]
    # Automation logs in with its client certificate (a password check costs
    # a deliberate scrypt, up to a second each on a loaded machine).
    robot = e.client_ca.issue_client(0x99, "robot", "rotation-robot")
    held = HeldRedisPy(e.data_port, e.server_ca.cert)
    stop = threading.Event()
    errors: list[str] = []
    done = [0]

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            key, value = f"soak:{i % 50}", f"value-{i}"
            try:
                if held.command("SET", key, value) not in (b"OK", "OK", True):
                    errors.append(f"SET {key} failed")
                got = held.command("GET", key)
                if got != value.encode():
                    errors.append(f"GET {key}: {got!r}, expected {value!r}")
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            i += 1
            done[0] = i

    worker = threading.Thread(target=traffic, daemon=True)
    started = time.monotonic()
    worker.start()
    generations = []
    try:
        for n, pair in enumerate(pairs):
            assert time.monotonic() - started < deadline_s, f"only {n} rotations in {deadline_s} s"
            r = e.sg.curl("PUT", "/v1/cluster/update_cert", update_body("proxy", pair),
                          auth=False, cert=robot.cert, key=robot.key, timeout=30)
            assert r.status == 200, f"rotation {n}: {r}"
            generations.append(r.json()["generation"])
            assert not errors, errors[:5]
    finally:
        stop.set()
        worker.join(timeout=15)
        held.close()
    assert not errors, errors[:5]
    assert done[0] > rotations, f"only {done[0]} SET/GET pairs during {rotations} rotations"
    assert generations == sorted(set(generations)), generations
    assert e.served_proxy_fp() == fingerprint(pairs[-1].cert_pem)
    assert fingerprint((e.cert_dir / "proxy_cert.pem").read_bytes()) == fingerprint(
        pairs[-1].cert_pem)
