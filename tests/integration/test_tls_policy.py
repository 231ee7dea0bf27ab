"""TLS policy at the endpoint, seen from real clients:
minimum version, ciphers, handshake timeout, chain order, session resumption."""
from __future__ import annotations

import socket
import time

from conftest import database, negotiated_cipher, openssl, s_client

# OpenSSL 3 clients refuse TLS < 1.2 on their own at the default security level;
# SECLEVEL=0 makes s_client really offer the old version, so any refusal we see
# comes from shardgate.
OLD_CLIENT = ["-cipher", "DEFAULT:@SECLEVEL=0"]


def assert_refused(rc: int, output: str, alert: str) -> None:
    assert rc != 0, output
    assert negotiated_cipher(output) is None, output
    assert alert in output or "handshake failure" in output, output
    assert "+PONG" not in output


def assert_served(rc: int, output: str, protocol: str) -> None:
    assert "+PONG" in output, output
    assert negotiated_cipher(output) is not None, output
    assert f"Protocol  : {protocol}" in output or f"New, {protocol}," in output, output


def start_one(redis_server, shardgate, tls: dict | None = None):
    backend = redis_server()
    return shardgate([database("db1", 0, backend.address)], tls=tls)


def test_tls1_1_client_refused_when_min_version_is_1_2(redis_server, shardgate):
    sg = start_one(redis_server, shardgate, {"min_version": "1.2"})
    rc, out = s_client(sg.port(), "-tls1_1", *OLD_CLIENT)
    assert_refused(rc, out, "alert protocol version")
    # The same endpoint serves TLS 1.2.
    rc, out = s_client(sg.port(), "-tls1_2", "-CAfile", str(sg.ca))
    assert_served(rc, out, "TLSv1.2")


def test_min_version_1_3_refuses_tls1_2_and_accepts_tls1_3(redis_server, shardgate):
    sg = start_one(redis_server, shardgate, {"min_version": "1.3"})
    rc, out = s_client(sg.port(), "-tls1_2")
    assert_refused(rc, out, "alert protocol version")
    rc, out = s_client(sg.port(), "-tls1_3", "-CAfile", str(sg.ca))
    assert_served(rc, out, "TLSv1.3")
    assert "Verify return code: 0 (ok)" in out, out


def test_cipher_outside_tls_ciphers_is_refused(redis_server, shardgate):
    # The self-signed certificate is ECDSA, so ECDHE-ECDSA suites apply.
    sg = start_one(redis_server, shardgate,
                   {"min_version": "1.2", "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256"})
    rc, out = s_client(sg.port(), "-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384")
    assert_refused(rc, out, "alert handshake failure")
    rc, out = s_client(sg.port(), "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert_served(rc, out, "TLSv1.2")
    assert negotiated_cipher(out) == "ECDHE-ECDSA-AES128-GCM-SHA256"


def test_silent_tcp_client_closed_after_handshake_timeout(redis_server, shardgate):
    sg = start_one(redis_server, shardgate, {"handshake_timeout_ms": 500})
    conn = socket.create_connection(("127.0.0.1", sg.port()), timeout=5)
    start = time.monotonic()
    conn.settimeout(5)
    try:
        data = conn.recv(4096)  # sends nothing; waits for shardgate to hang up
    except ConnectionResetError:
        data = b""
    except socket.timeout:
        data = None
    elapsed = time.monotonic() - start
    conn.close()
    assert data is not None, "connection still open 5 s after a 500 ms handshake timeout"
    assert data == b""
    assert 0.3 <= elapsed <= 3.0, f"closed after {elapsed:.2f} s, expected ~0.5 s"
    assert sg.proc.poll() is None


def make_chain(d) -> None:
    """root CA -> intermediate CA -> leaf (SAN localhost, 127.0.0.1), all EC P-256,
    under the file names shardgate's cert_dir uses (plus root.pem for the client)."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    (d / "ca.ext").write_text("basicConstraints=critical,CA:TRUE\n"
                              "keyUsage=critical,keyCertSign,cRLSign\n"
                              "subjectKeyIdentifier=hash\n"
                              "authorityKeyIdentifier=keyid:always\n")
    (d / "leaf.ext").write_text("basicConstraints=critical,CA:FALSE\n"
                                "keyUsage=critical,digitalSignature\n"
                                "extendedKeyUsage=serverAuth\n"
                                "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                "authorityKeyIdentifier=keyid:always\n")
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=shardgate test root",
            "-keyout", "root.key", "-out", "root.pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-new", *ec, "-subj", "/CN=shardgate test intermediate",
            "-keyout", "inter.key", "-out", "inter.csr", cwd=d)
    openssl("x509", "-req", "-in", "inter.csr", "-CA", "root.pem", "-CAkey", "root.key",
            "-CAcreateserial", "-days", "2", "-extfile", "ca.ext", "-out", "chain_certs.pem",
            cwd=d)
    openssl("req", "-new", *ec, "-subj", "/CN=localhost",
            "-keyout", "proxy_key.pem", "-out", "leaf.csr", cwd=d)
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "chain_certs.pem", "-CAkey", "inter.key",
            "-CAcreateserial", "-days", "2", "-extfile", "leaf.ext", "-out", "proxy_cert.pem",
            cwd=d)


def test_chain_served_leaf_then_intermediate(redis_server, shardgate, tmp_path):
    pki, cert_dir = tmp_path / "pki", tmp_path / "certs"
    make_chain(pki)
    cert_dir.mkdir()
    for name in ("proxy_cert.pem", "proxy_key.pem", "chain_certs.pem"):
        (cert_dir / name).write_bytes((pki / name).read_bytes())
    (cert_dir / "proxy_key.pem").chmod(0o600)
    backend = redis_server()
    sg = shardgate([database("db1", 0, backend.address)],
                   generate_self_signed=False)
    rc, out = s_client(sg.port(), "-showcerts", "-CAfile", str(pki / "root.pem"),
                       "-verify_return_error", "-verify_hostname", "localhost")
    assert "+PONG" in out, out
    assert "Verify return code: 0 (ok)" in out, out
    leaf = out.find(" 0 s:CN = localhost")
    leaf_issuer = out.find("i:CN = shardgate test intermediate", leaf)
    intermediate = out.find(" 1 s:CN = shardgate test intermediate")
    intermediate_issuer = out.find("i:CN = shardgate test root", intermediate)
    assert 0 <= leaf < leaf_issuer < intermediate < intermediate_issuer, out
    assert " 2 s:" not in out  # the root is not sent


def test_session_resumption_reuses_session(proxied, tmp_path):
    sg, _ = proxied
    session = tmp_path / "session.pem"
    rc, out = s_client(sg.port(), "-CAfile", str(sg.ca), "-sess_out", str(session))
    assert "+PONG" in out and "New, TLSv1" in out, out
    assert session.is_file() and session.stat().st_size > 0
    rc, out = s_client(sg.port(), "-CAfile", str(sg.ca), "-sess_in", str(session))
    assert "+PONG" in out, out
    assert "Reused, TLSv1" in out, out
