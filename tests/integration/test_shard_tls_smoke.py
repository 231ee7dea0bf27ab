"""Smoke test of TLS from shardgate to the shards: real redis-server shards
listening on TLS only, shardgate connecting with shard_tls. The full suite
is test_shard_tls.py; this checks the main paths end to end."""
from __future__ import annotations

import re
import time
import urllib.request

import pytest

from certs import CA
from conftest import (STARTUP_TIMEOUT_S, database, free_port, start_redis_on_port, PortTaken)


def tls_shard(procs, tmp_path, ca: CA, serial: int, *extra: str, sans=("IP:127.0.0.1",)):
    """A redis-server speaking TLS only, its certificate from ca; returns its address."""
    pair = ca.issue(serial, name=f"shard{serial}", cn="shard", sans=list(sans))
    for _ in range(5):
        port = free_port()
        try:
            start_redis_on_port(procs, tmp_path, port, "--port", "0", "--tls-port", str(port),
                                "--tls-cert-file", str(pair.cert), "--tls-key-file", str(pair.key),
                                "--tls-ca-cert-file", str(ca.cert), "--tls-auth-clients", "no", *extra,
                                name=f"tlsshard{serial}-{port}")
            return f"127.0.0.1:{port}"
        except PortTaken:
            continue
    pytest.fail("no free port for a TLS shard")


def metrics(sg) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        m = re.search(r"\bmetrics listening on (\S+):(\d+) ", sg.log())
        if m:
            break
        if time.monotonic() > deadline:
            pytest.fail("no metrics line in the log")
        time.sleep(0.02)
    with urllib.request.urlopen(f"http://127.0.0.1:{m.group(2)}/metrics", timeout=5) as resp:
        return resp.read().decode()


def handshakes(text: str, resumed: str) -> int:
    total = 0
    for line in text.splitlines():
        if line.startswith("shardgate_shard_tls_handshakes_total{") and f'resumed="{resumed}"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_multiplexed_and_transparent_databases_reach_tls_shards(procs, tmp_path, shardgate):
    ca = CA(tmp_path / "shard_ca")
    a = tls_shard(procs, tmp_path, ca, 0x10)
    b = tls_shard(procs, tmp_path, ca, 0x11)
    routed = database("routed", 0, a, b)
    routed["shards"][0]["slots"] = "0-8191"
    routed["shards"][1]["slots"] = "8192-16383"
    routed["shard_tls"] = {"ca": str(ca.cert)}
    plain = database("plain", 0, a)
    plain["shard_tls"] = {"ca": str(ca.cert)}
    sg = shardgate([routed, plain], workers=1, metrics={"listen": "127.0.0.1:0", "tls": False})
    assert "TLS (CA " in sg.log()
    r = sg.client("routed")
    for i in range(50):
        r.set(f"k{i}", i)
    assert [int(r.get(f"k{i}")) for i in range(50)] == list(range(50))
    t = sg.client("plain")
    # The first request, bigger than the socket takes at once, arrives while
    # the handshake with the shard runs: held, then sent, then answered.
    assert t.set("first", b"x" * 300_000) is True
    assert t.strlen("first") == 300_000
    t.set("transparent", "yes")
    assert t.get("transparent") == b"yes"
    t.close()
    # A second transparent client on the same worker resumes the session.
    t2 = sg.client("plain")
    assert t2.get("transparent") == b"yes"
    t2.close()
    text = metrics(sg)
    assert handshakes(text, "false") >= 2
    assert handshakes(text, "true") >= 1


def test_a_certificate_without_the_name_is_a_shard_that_is_down(procs, tmp_path, shardgate):
    ca = CA(tmp_path / "shard_ca")
    a = tls_shard(procs, tmp_path, ca, 0x20)
    for multiplex in (True, False):
        db = database("db1", 0, a)
        db["multiplex"] = multiplex
        db["shard_tls"] = {"ca": str(ca.cert), "server_name": "redis.internal"}
        sg = shardgate([db], workers=1)
        c = sg.client()
        with pytest.raises(Exception) as err:
            c.get("x")
        assert (f"shard {a} unavailable: TLS handshake failed: certificate verify failed "
                "(hostname mismatch)") in str(err.value)
        assert "TLS handshake failed: certificate verify failed (hostname mismatch)" in sg.log()
        sg.proc.terminate()
        sg.proc.wait(timeout=5)


def wait_for_log(sg, needle: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while needle not in sg.log():
        if time.monotonic() > deadline:
            pytest.fail(f"{needle!r} not in the log after {timeout} s\n{sg.log()}")
        time.sleep(0.02)


def test_a_shard_requiring_client_certificates(procs, tmp_path, shardgate):
    ca = CA(tmp_path / "shard_ca")
    a = tls_shard(procs, tmp_path, ca, 0x30, "--tls-auth-clients", "yes")
    client = ca.issue_client(0x31, "sg-client", "shardgate")
    without = database("without", 0, a)
    without["shard_tls"] = {"ca": str(ca.cert)}
    with_cert = database("with", 0, a)
    with_cert["multiplex"] = True
    with_cert["shard_tls"] = {"ca": str(ca.cert), "cert": str(client.cert), "key": str(client.key)}
    routed_without = database("routed_without", 0, a)
    routed_without["multiplex"] = True
    routed_without["shard_tls"] = {"ca": str(ca.cert)}
    sg = shardgate([without, with_cert, routed_without], workers=1)
    c = sg.client("with")
    c.set("k", "v")
    assert c.get("k") == b"v"
    for name in ("without", "routed_without"):
        with pytest.raises(Exception) as err:
            sg.client(name).get("k")
        # TLS 1.3: the shard's alert comes after our side of the handshake,
        # and the reset our first write draws may overtake it.
        assert f"shard {a} unavailable: TLS handshake failed: " in str(err.value)
        assert re.search(r"tlsv13 alert certificate required|connection reset by peer|"
                         r"the shard closed the connection", str(err.value))


def test_the_shard_ca_reloads_live_and_a_bad_file_keeps_the_old_one(procs, tmp_path, shardgate):
    ca = CA(tmp_path / "shard_ca")
    other = CA(tmp_path / "other_ca", name="another CA")
    a = tls_shard(procs, tmp_path, ca, 0x40)
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "shard_ca.pem").write_bytes(ca.cert.read_bytes())
    db = database("db1", 0, a)
    db["shard_tls"] = {"ca": "shard_ca.pem"}
    sg = shardgate([db], workers=1)
    before = sg.client()
    before.set("k", "v")

    (certs / "shard_ca.pem").write_text("not a certificate\n")
    wait_for_log(sg, "TLS files not reloaded (file change)")
    assert f"{certs}/shard_ca.pem" in sg.log()
    fresh = sg.client()
    assert fresh.get("k") == b"v"  # the old context still verifies the shard
    fresh.close()

    (certs / "shard_ca.pem").write_bytes(other.cert.read_bytes())
    wait_for_log(sg, "client context generation 1 -> 2")
    with pytest.raises(Exception) as err:
        sg.client().get("k")
    assert "certificate verify failed" in str(err.value)
    # The connection made before keeps its context and its shard connection.
    assert before.get("k") == b"v"


def test_a_tls_1_2_shard_refusing_a_client_without_certificate(procs, tmp_path, shardgate):
    ca = CA(tmp_path / "shard_ca")
    a = tls_shard(procs, tmp_path, ca, 0x60, "--tls-auth-clients", "yes", "--tls-protocols", "TLSv1.2")
    dbs = []
    for name, multiplex in (("plain", False), ("routed", True)):
        db = database(name, 0, a)
        db["multiplex"] = multiplex
        db["shard_tls"] = {"ca": str(ca.cert)}
        dbs.append(db)
    sg = shardgate(dbs, workers=1)
    for name in ("plain", "routed"):
        with pytest.raises(Exception) as err:
            sg.client(name).get("k")
        # Before TLS 1.3 the refusal is part of the handshake itself.
        assert f"shard {a} unavailable: TLS handshake failed: " in str(err.value)


def test_private_links_pubsub_and_blocking_over_tls(procs, tmp_path, shardgate):
    ca = CA(tmp_path / "shard_ca")
    a = tls_shard(procs, tmp_path, ca, 0x50)
    db = database("db1", 0, a)
    db["multiplex"] = True
    db["shard_tls"] = {"ca": str(ca.cert), "min_version": "1.3"}
    sg = shardgate([db], workers=1)
    sub = sg.client().pubsub()
    sub.subscribe("ch")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    assert sg.client().publish("ch", "hello") == 1
    msg = sub.get_message(timeout=5)
    assert msg["type"] == "message" and msg["data"] == b"hello"
    sg.client().rpush("q", "x")
    assert sg.client().blpop(["q"], timeout=2) == (b"q", b"x")
    sub.close()


def test_check_config_prints_each_shard(tmp_path):
    from conftest import run_shardgate, write_config
    ca = CA(tmp_path / "shard_ca")
    db = database("db1", 0, "127.0.0.1:7001")
    db["shard_tls"] = {"ca": str(ca.cert), "server_name": "redis.internal"}
    good = write_config(tmp_path, [db])
    out = run_shardgate(["--config", good, "--check-config"])
    assert out.returncode == 0, out.stderr
    assert ("db db1: shard 127.0.0.1:7001: TLS (CA " + str(ca.cert) +
            ", server name redis.internal (SNI and certificate)") in out.stdout
    db["shard_tls"] = {"ca": "nowhere.pem"}
    bad = write_config(tmp_path, [db], name="bad.yaml")
    out = run_shardgate(["--config", bad, "--check-config"])
    assert out.returncode == 1
    assert "databases[0].shard_tls.ca: " in out.stderr and "nowhere.pem: cannot be read" in out.stderr


def test_a_shard_that_never_answers_the_handshake_times_out(tmp_path, shardgate):
    import socket
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes TCP; nobody ever speaks TLS
    try:
        ca = CA(tmp_path / "shard_ca")
        dbs = []
        for name, multiplex in (("routed", True), ("plain", False)):
            db = database(name, 0, f"127.0.0.1:{silent.getsockname()[1]}")
            db["multiplex"] = multiplex
            db["shard_tls"] = {"ca": str(ca.cert)}
            dbs.append(db)
        sg = shardgate(dbs, workers=1)
        for name in ("routed", "plain"):
            with pytest.raises(Exception) as err:
                sg.client(name).get("k")
            assert "unavailable: TLS handshake timed out after 2000 ms" in str(err.value)
    finally:
        silent.close()
