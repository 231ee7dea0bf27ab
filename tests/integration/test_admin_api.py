"""The admin API with real curl: every endpoint and every error code it
answers, authentication (basic auth, client certificates, the slow-down
after failures), the HTTP bounds, persistence across a restart, a client
connection kept across certificate and policy changes, and two shardgates
sharing one cert_dir.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import socket
import ssl
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from certs import CA, der_serial
from conftest import (SHARDGATE_BIN, Shardgate, database, require_binary, run_shardgate, s_client,
                      wait_for_listening, write_config)

PASSWORD = "correct horse"
_ADMIN_LISTENING = re.compile(r"admin API listening on 127\.0\.0\.1:(\d+)")


@pytest.fixture(scope="module")
def password_hash() -> str:
    require_binary()
    out = subprocess.run([str(SHARDGATE_BIN), "--hash-password"], input=PASSWORD + "\n",
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


@dataclass
class Admin:
    sg: Shardgate
    port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def api_ca(self) -> Path:
        # Self-signed on first start: clients trust it as its own CA.
        return self.sg.cert_dir / "api_cert.pem"

    def curl(self, method: str, path: str, body=None, user: str | None = "admin",
             password: str = PASSWORD, extra: list[str] | None = None) -> tuple[int, object, str]:
        """(status, parsed JSON body or None, response headers)."""
        cmd = ["curl", "-sS", "--max-time", "20", "--cacert", str(self.api_ca), "-X", method,
               "-D", "-", "-o", "-", "-w", "\n%{http_code}"]
        if user is not None:
            cmd += ["-u", f"{user}:{password}"]
        data = None
        if body is not None:
            data = body if isinstance(body, str) else json.dumps(body)
            cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        cmd += (extra or []) + [self.url + path]
        out = subprocess.run(cmd, input=data, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        text, status = out.stdout.rsplit("\n", 1)
        head, _, payload = text.partition("\n\n")  # text mode: CRLF reads as LF
        while payload.startswith("HTTP/1.1 100"):  # a 100 Continue before the answer
            head, _, payload = payload.partition("\n\n")
        try:
            parsed = json.loads(payload) if payload else None
        except json.JSONDecodeError:
            parsed = payload
        return int(status), parsed, head


def wait_for_admin(sg: Shardgate, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _ADMIN_LISTENING.search(sg.log())
        if m:
            return int(m.group(1))
        if sg.proc.poll() is not None:
            pytest.fail(f"shardgate exited:\n{sg.log()}")
        time.sleep(0.02)
    pytest.fail(f"admin API not listening:\n{sg.log()}")


def admin_section(password_hash: str, **extra) -> dict:
    section = {"listen": "127.0.0.1:0", "users": [{"name": "admin", "password_hash": password_hash}]}
    section.update(extra)
    return section


@pytest.fixture
def admin(redis_server, shardgate, password_hash):
    def start(**extra) -> Admin:
        backend = redis_server()
        sg = shardgate([database("db1", 0, backend.address)], admin=admin_section(password_hash, **extra))
        return Admin(sg, wait_for_admin(sg))
    return start


def served_serial(port: int, ca: Path) -> str:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as conn:
            return der_serial(conn.getpeercert(binary_form=True))


def dir_snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def pem(pair_path: Path) -> str:
    return pair_path.read_text()


def client_cert(ca: CA, cn: str) -> tuple[Path, Path]:
    """A client certificate (extendedKeyUsage clientAuth) issued by ca."""
    key, csr, cert = ca.dir / f"{cn}.key.pem", ca.dir / f"{cn}.csr", ca.dir / f"{cn}.cert.pem"
    ext = ca.dir / f"{cn}.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=clientAuth\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-subj", f"/CN={cn}", "-keyout", key, "-out", csr],
                   check=True, capture_output=True, timeout=30)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
                    "-CAcreateserial", "-days", "30", "-extfile", ext, "-out", cert],
                   check=True, capture_output=True, timeout=30)
    return cert, key


# ---------------------------------------------------------------- authentication


def test_no_credentials_401_with_www_authenticate(admin):
    a = admin()
    status, body, head = a.curl("GET", "/v1/cluster", user=None)
    assert status == 401
    assert body["error_code"] == "unauthorized"
    assert re.search(r"(?im)^WWW-Authenticate: Basic realm=\"shardgate\"", head)


def test_wrong_password_401_and_repeated_failures_slow_down(admin):
    a = admin()
    status, body, _ = a.curl("GET", "/v1/cluster", password="wrong")
    assert status == 401 and body["error_code"] == "unauthorized"
    status, _, _ = a.curl("GET", "/v1/cluster", user="nobody")
    assert status == 401
    # Two failures from this address: the next verification waits 500 ms.
    started = time.monotonic()
    status, _, _ = a.curl("GET", "/v1/cluster", password="wrong again")
    assert status == 401
    assert time.monotonic() - started >= 0.45
    assert "failed login for user \"admin\" from 127.0.0.1 (3 failure(s)" in a.sg.log()
    # The right password still works, and clears the count.
    assert a.curl("GET", "/v1/cluster")[0] == 200
    assert a.curl("GET", "/v1/cluster", password="wrong")[0] == 401
    assert "from 127.0.0.1 (1 failure(s) in a row" in a.sg.log().split("(3 failure(s)")[1]
    assert PASSWORD not in a.sg.log()


def test_client_certificate_from_mtls_trusted_ca_needs_no_password(admin, tmp_path):
    a = admin()
    ops_ca = CA(tmp_path / "ops-ca", name="ops CA")
    cert, key = client_cert(ops_ca, "ops")
    status, body, _ = a.curl("PUT", "/v1/cluster/update_cert",
                             {"name": "mtls_trusted_ca", "certificate": pem(ops_ca.cert)})
    assert status == 200, body
    assert body["ca_certificates"] == 1
    status, body, _ = a.curl("GET", "/v1/cluster", user=None, extra=["--cert", str(cert), "--key", str(key)])
    assert status == 200, body
    # A certificate from another CA is no credential.
    stranger_ca = CA(tmp_path / "stranger-ca", name="stranger CA")
    s_cert, s_key = client_cert(stranger_ca, "stranger")
    status, _, _ = a.curl("GET", "/v1/cluster", user=None, extra=["--cert", str(s_cert), "--key", str(s_key)])
    assert status == 401
    status, _, _ = a.curl("PUT", "/v1/cluster", {"data_cipher_suites_tls_1_3": "TLS_AES_256_GCM_SHA384"},
                          user=None, extra=["--cert", str(cert), "--key", str(key)])
    assert status == 200
    assert re.search(r"audit: cert CN=ops from 127\.0\.0\.1:\d+: PUT /v1/cluster .*: 200", a.sg.log())


# ---------------------------------------------------------------- certificates


def test_get_certificates_describes_each_and_never_a_key(admin):
    a = admin()
    status, body, _ = a.curl("GET", "/v1/cluster/certificates")
    assert status == 200
    by_name = {c["name"]: c for c in body["certificates"]}
    assert set(by_name) == {"proxy", "api", "metrics_exporter", "mtls_trusted_ca"}
    proxy = by_name["proxy"]
    for field in ("subject", "sans", "issuer", "serial", "not_before", "not_after", "days_left",
                  "sha256_fingerprint", "generation", "live_connections"):
        assert field in proxy, field
    assert "DNS:localhost" in proxy["sans"]
    assert 360 <= proxy["days_left"] <= 366
    assert proxy["generation"] == 1
    # This very request is a live connection on the api certificate.
    assert by_name["api"]["live_connections"] == [{"generation": 1, "connections": 1}]
    assert by_name["metrics_exporter"]["configured"] is False
    text = json.dumps(body)
    assert "PRIVATE KEY" not in text and "key" not in {k.lower() for c in body["certificates"] for k in c}


def test_update_cert_applies_writes_atomically_and_keeps_open_connections(admin, tmp_path):
    a = admin()
    client = a.sg.client()
    assert client.ping()
    ca = CA(tmp_path / "ca")
    pair = ca.issue(0xA11CE0)
    status, body, _ = a.curl("PUT", "/v1/cluster/update_cert",
                             {"name": "proxy", "key": pem(pair.key), "certificate": pem(pair.cert)})
    assert status == 200, body
    assert body["name"] == "proxy" and body["generation"] == 2
    assert body["subject"] == "CN=localhost" and body["serial"] == pair.serial
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", body["sha256_fingerprint"])
    assert body["not_after"].endswith("Z")
    # The files are the new pair; the key is 0600; no temporary file is left.
    assert (a.sg.cert_dir / "proxy_cert.pem").read_text() == pem(pair.cert)
    assert (a.sg.cert_dir / "proxy_key.pem").read_text() == pem(pair.key)
    assert stat.S_IMODE((a.sg.cert_dir / "proxy_key.pem").stat().st_mode) == 0o600
    assert not [p for p in a.sg.cert_dir.iterdir() if ".tmp" in p.name]
    # New handshakes get the new certificate; the connection opened before is untouched.
    assert served_serial(a.sg.port(), ca.cert) == pair.serial
    assert client.ping()
    assert client.set("k", "v") and client.get("k") == b"v"
    status, body, _ = a.curl("GET", "/v1/cluster/certificates")
    proxy = next(c for c in body["certificates"] if c["name"] == "proxy")
    live = {g["generation"]: g["connections"] for g in proxy["live_connections"]}
    assert live.get(1) == 1 and 2 in live
    assert re.search(r"audit: user admin from 127\.0\.0\.1:\d+: PUT /v1/cluster/update_cert name=proxy: 200",
                     a.sg.log())
    # The watcher reads the same files back and changes nothing.
    time.sleep(0.5)
    assert "certificate reload #" not in a.sg.log()


def _expired_and_future(ca: CA):
    now = dt.datetime.now(dt.timezone.utc)
    expired = ca.issue(0xE1, not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1))
    future = ca.issue(0xF1, not_before=now + dt.timedelta(days=2), not_after=now + dt.timedelta(days=30))
    return expired, future


def test_update_cert_errors_change_nothing(admin, tmp_path):
    a = admin()
    ca = CA(tmp_path / "ca")
    good, other = ca.issue(0x600D), ca.issue(0x0DD)
    expired, future = _expired_and_future(ca)
    before = dir_snapshot(a.sg.cert_dir)
    cases = [
        ({"name": "proxy", "key": pem(good.key), "certificate": "-----BEGIN CERTIFICATE-----\nnope\n"}, 400,
         "invalid_certificate"),
        ({"name": "proxy", "key": pem(other.key), "certificate": pem(good.cert)}, 400, "invalid_certificate"),
        ({"name": "proxy", "key": "garbage", "certificate": pem(good.cert)}, 400, "invalid_certificate"),
        ({"name": "proxy", "certificate": pem(good.cert)}, 400, "missing_field"),
        ({"name": "syncer", "key": pem(good.key), "certificate": pem(good.cert)}, 403, "unknown_cert"),
        ({"name": "proxy", "key": pem(expired.key), "certificate": pem(expired.cert)}, 406, "cert_expired"),
        ({"name": "api", "key": pem(future.key), "certificate": pem(future.cert)}, 406, "cert_not_yet_valid"),
        ("not json", 400, "invalid_json"),
    ]
    for body, code, error in cases:
        status, answer, _ = a.curl("PUT", "/v1/cluster/update_cert", body)
        assert (status, answer["error_code"]) == (code, error), (body if isinstance(body, str) else body.get("name"), answer)
        assert answer["description"]
    assert dir_snapshot(a.sg.cert_dir) == before
    assert "certificate reload #" not in a.sg.log()


def test_put_certificates_all_or_none(admin, tmp_path):
    a = admin()
    ca = CA(tmp_path / "ca")
    p1, p2 = ca.issue(0x1111), ca.issue(0x2222)
    expired, _ = _expired_and_future(ca)
    before = dir_snapshot(a.sg.cert_dir)
    status, body, _ = a.curl("PUT", "/v1/cluster/certificates", {"certificates": [
        {"name": "proxy", "certificate": pem(p1.cert), "key": pem(p1.key)},
        {"name": "api", "certificate": pem(expired.cert), "key": pem(expired.key)}]})
    assert status == 406 and body["error_code"] == "cert_expired"
    assert "certificates[1]" in body["description"]
    status, body, _ = a.curl("PUT", "/v1/cluster/certificates", {"certificates": [
        {"name": "proxy", "certificate": pem(p1.cert), "key": pem(p1.key)},
        {"name": "bogus", "certificate": pem(p2.cert), "key": pem(p2.key)}]})
    assert status == 403 and body["error_code"] == "unknown_cert"
    assert dir_snapshot(a.sg.cert_dir) == before

    status, body, _ = a.curl("PUT", "/v1/cluster/certificates", {"certificates": [
        {"name": "proxy", "certificate": pem(p1.cert), "key": pem(p1.key)},
        {"name": "api", "certificate": pem(p2.cert), "key": pem(p2.key)}]})
    assert status == 200, body
    assert [c["name"] for c in body["certificates"]] == ["proxy", "api"]
    assert served_serial(a.sg.port(), ca.cert) == p1.serial
    # The admin API itself now serves p2: curl trusts the CA that issued it.
    out = subprocess.run(["curl", "-sS", "--cacert", str(ca.cert), "-u", f"admin:{PASSWORD}", "-o", "/dev/null",
                          "-w", "%{http_code}", a.url + "/v1/cluster"], capture_output=True, text=True, timeout=30)
    assert out.stdout == "200", out.stderr
    status, body, _ = a.curl("PUT", "/v1/cluster/certificates", {"certificates": []})
    assert status == 400


# ---------------------------------------------------------------- cluster settings


def test_cluster_settings_apply_live_persist_and_combine_with_the_file(admin):
    a = admin()
    client = a.sg.client()
    assert client.ping()
    status, body, _ = a.curl("GET", "/v1/cluster")
    assert status == 200
    assert body["min_data_TLS_version"] == "1.2" and body["min_control_TLS_version"] == "1.2"
    assert "data_cipher_list" in body and "data_cipher_suites_tls_1_3" in body

    status, body, _ = a.curl("PUT", "/v1/cluster", {"min_data_TLS_version": "1.3"})
    assert status == 200 and body["min_data_TLS_version"] == "1.3"
    rc, _ = s_client(a.sg.port(), "-tls1_2")
    assert rc != 0  # a TLS 1.2 client is refused by new handshakes
    rc, _ = s_client(a.sg.port(), "-tls1_3")
    assert rc == 0
    assert client.ping()  # the connection from before keeps its session
    saved = json.loads((a.sg.cert_dir / "cluster_settings.json").read_text())
    assert saved == {"min_data_TLS_version": "1.3"}

    # Invalid values are refused whole, naming the setting.
    for bad, word in (({"min_data_TLS_version": "1.7"}, "min_data_TLS_version"),
                      ({"data_cipher_list": "NOT-A-CIPHER"}, "data_cipher_list"),
                      ({"min_data_TLS_version": 12}, "min_data_TLS_version"),
                      ({"max_TLS_version": "1.3"}, "max_TLS_version")):
        status, body, _ = a.curl("PUT", "/v1/cluster", bad)
        assert status == 400 and body["error_code"] == "invalid_setting" and word in body["description"]
    assert json.loads((a.sg.cert_dir / "cluster_settings.json").read_text()) == {"min_data_TLS_version": "1.3"}

    # --check-config shows the effective value and where it comes from.
    out = run_shardgate(["--config", a.sg.config_path, "--check-config"])
    assert out.returncode == 0, out.stderr
    assert re.search(r"min_data_TLS_version = 1\.3 \(set through the admin API in .*cluster_settings\.json", out.stdout)
    assert "min_control_TLS_version = 1.2 (default)" in out.stdout

    # null removes the override: the config file's value (the default here) is back.
    status, body, _ = a.curl("PUT", "/v1/cluster", {"min_data_TLS_version": None})
    assert status == 200 and body["min_data_TLS_version"] == "1.2"
    assert s_client(a.sg.port(), "-tls1_2")[0] == 0


def test_cluster_settings_survive_a_restart(procs, redis_server, tmp_path, password_hash):
    require_binary()
    backend = redis_server()
    config = write_config(tmp_path, [database("db1", 0, backend.address)], admin=admin_section(password_hash))
    for round_ in range(2):
        log = tmp_path / f"shardgate{round_}.log"
        proc = procs.start([SHARDGATE_BIN, "--config", config], log, cwd=tmp_path)
        sg = Shardgate(proc=proc, config_path=config, log_path=log)
        sg.ports = wait_for_listening(sg, ["db1"])
        a = Admin(sg, wait_for_admin(sg))
        if round_ == 0:
            assert a.curl("PUT", "/v1/cluster", {"min_control_TLS_version": "1.3"})[0] == 200
        else:
            assert a.curl("GET", "/v1/cluster")[1]["min_control_TLS_version"] == "1.3"
        # The control floor applies to the admin listener itself.
        tls12 = subprocess.run(["curl", "-sS", "--tls-max", "1.2", "--cacert", str(a.api_ca), "-o", "/dev/null",
                                a.url + "/v1/cluster"], capture_output=True, text=True, timeout=30)
        assert tls12.returncode != 0
        proc.terminate()
        proc.wait(timeout=10)


# ---------------------------------------------------------------- bdbs, routing


def test_get_bdbs(admin):
    a = admin()
    status, body, _ = a.curl("GET", "/v1/bdbs")
    assert status == 200
    assert isinstance(body, list) and len(body) == 1
    db = body[0]
    assert db["name"] == "db1" and db["endpoint"] == f"127.0.0.1:{a.sg.port()}"
    assert db["mode"] == "transparent"
    assert db["tls"] == {"tls": True, "min_version": "1.2", "client_auth": "none"}
    assert len(db["shards"]) == 1 and db["shards"][0]["slots"] == "0-16383"


def test_unknown_path_404_and_wrong_method_405(admin):
    a = admin()
    status, body, _ = a.curl("GET", "/v1/nodes")
    assert status == 404 and body["error_code"] == "not_found"
    status, body, head = a.curl("DELETE", "/v1/cluster")
    assert status == 405 and body["error_code"] == "method_not_allowed"
    assert re.search(r"(?im)^Allow: GET, PUT", head)
    assert a.curl("POST", "/v1/cluster/update_cert", {})[0] == 405


# ---------------------------------------------------------------- HTTP bounds


def _tls_to(a: Admin) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(a.api_ca))
    raw = socket.create_connection(("127.0.0.1", a.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _read_all(conn: ssl.SSLSocket) -> bytes:
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except (ConnectionResetError, ssl.SSLError, OSError):
        pass
    return data


def test_body_over_max_body_bytes_413(admin):
    a = admin(max_body_bytes=1024)
    status, body, _ = a.curl("PUT", "/v1/cluster", {"data_cipher_list": "x" * 2000})
    assert status == 413 and body["error_code"] == "request_too_large"


def test_headers_too_large_431(admin):
    a = admin()
    status, body, _ = a.curl("GET", "/v1/cluster", extra=["-H", "X-Big: " + "a" * 20000])
    assert status == 431 and body["error_code"] == "headers_too_large"


def test_request_not_whole_in_time_408(admin):
    a = admin(request_timeout_ms=300)
    with _tls_to(a) as conn:
        conn.sendall(b"PUT /v1/cluster HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        answer = _read_all(conn)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"request_timeout" in answer


def test_connection_cap_closes_extra_connections_at_once(admin):
    a = admin(max_connections=2)
    held = [_tls_to(a), _tls_to(a)]
    try:
        raw = socket.create_connection(("127.0.0.1", a.port), timeout=5)
        started = time.monotonic()
        data = raw.recv(100)  # closed at once: EOF, no TLS handshake
        assert data == b"" and time.monotonic() - started < 2
        raw.close()
        assert "2 connections open, the most allowed" in a.sg.log()
    finally:
        for c in held:
            c.close()
    # Once they are gone, new connections are served again.
    deadline = time.monotonic() + 5
    while a.curl("GET", "/v1/cluster")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_keep_alive_serves_several_requests_on_one_connection(admin):
    a = admin()
    out = subprocess.run(["curl", "-sS", "-v", "--cacert", str(a.api_ca), "-u", f"admin:{PASSWORD}",
                          "-o", "/dev/null", a.url + "/v1/cluster", "-o", "/dev/null", a.url + "/v1/bdbs"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "Re-using existing connection" in out.stderr or "Reusing existing connection" in out.stderr


# ---------------------------------------------------------------- shared cert_dir


def test_two_shardgates_sharing_cert_dir_both_serve_update_cert(procs, redis_server, shardgate, tmp_path,
                                                                password_hash):
    backend = redis_server()
    first = shardgate([database("db1", 0, backend.address)], admin=admin_section(password_hash))
    a = Admin(first, wait_for_admin(first))
    # The second process: its own config file in the same directory, so the same ./certs.
    config = write_config(tmp_path, [database("db2", 0, backend.address)], name="second.yaml")
    log = tmp_path / "second.log"
    proc = procs.start([SHARDGATE_BIN, "--config", config], log, cwd=tmp_path)
    second = Shardgate(proc=proc, config_path=config, log_path=log)
    second.ports = wait_for_listening(second, ["db2"])

    ca = CA(tmp_path / "ca")
    pair = ca.issue(0x5A4ED0)
    status, body, _ = a.curl("PUT", "/v1/cluster/update_cert",
                             {"name": "proxy", "key": pem(pair.key), "certificate": pem(pair.cert)})
    assert status == 200, body
    assert served_serial(first.port(), ca.cert) == pair.serial
    deadline = time.monotonic() + 5
    while True:
        try:
            if served_serial(second.port(), ca.cert) == pair.serial:
                break
        except ssl.SSLError:
            pass  # still the old, self-signed certificate: not verified by this CA
        assert time.monotonic() < deadline, second.log()
        time.sleep(0.05)


# ---------------------------------------------------------------- config


def test_hash_password_from_stdin(password_hash):
    assert re.fullmatch(r"\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+", password_hash)
    out = subprocess.run([str(SHARDGATE_BIN), "--hash-password"], input="", capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 1 and "no password" in out.stderr


def test_admin_users_need_a_hash_not_a_password(tmp_path):
    config = write_config(tmp_path, [database("db1", 0, "127.0.0.1:7001")],
                          admin={"listen": "127.0.0.1:0", "users": [{"name": "a", "password_hash": "secret"}]})
    out = run_shardgate(["--config", config, "--check-config"])
    assert out.returncode == 1
    assert "admin.users[0].password_hash" in out.stderr and "--hash-password" in out.stderr


# ---------------------------------------------------------------- a connection kept across changes


def test_connection_kept_across_100_api_rotations_and_a_policy_change(admin, tmp_path):
    """A client connected before keeps working, with zero errors, while the API
    rotates the proxy certificate 100 times (two pairs in turn: each PUT is a new
    generation) and raises the minimum TLS version; one keep-alive HTTPS
    connection carries every request."""
    import base64
    import http.client

    a = admin()
    client = a.sg.client()
    assert client.set("kept", "1")
    ca = CA(tmp_path / "ca")
    pairs = [ca.issue(0x1000), ca.issue(0x2000)]
    bodies = [json.dumps({"name": "proxy", "key": pem(p.key), "certificate": pem(p.cert)}) for p in pairs]
    ctx = ssl.create_default_context(cafile=str(a.api_ca))
    conn = http.client.HTTPSConnection("127.0.0.1", a.port, context=ctx, timeout=20)
    auth = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode(),
            "Content-Type": "application/json"}
    generations = []
    try:
        for i in range(100):
            conn.request("PUT", "/v1/cluster/update_cert", body=bodies[i % 2], headers=auth)
            reply = conn.getresponse()
            payload = json.loads(reply.read())
            assert reply.status == 200, payload
            generations.append(payload["generation"])
            assert client.incr("counter") == i + 1
        conn.request("PUT", "/v1/cluster", body=json.dumps({"min_data_TLS_version": "1.3"}), headers=auth)
        reply = conn.getresponse()
        assert reply.status == 200, reply.read()
        reply.read()
    finally:
        conn.close()
    assert generations == list(range(2, 102))
    assert client.get("kept") == b"1" and client.get("counter") == b"100"
    assert served_serial(a.sg.port(), ca.cert) == pairs[1].serial
    assert "certificate reload failed" not in a.sg.log()
