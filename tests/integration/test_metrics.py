"""GET /metrics: the Prometheus exposition over HTTPS (metrics_exporter
certificate) or plain HTTP, checked with curl, promtool and a real
Prometheus server scraping it."""

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import redis

from conftest import (STARTUP_TIMEOUT_S, database, free_port, stop_process)

_METRICS_LISTENING = re.compile(r"\bmetrics listening on (\S+):(\d+) ")
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')

SETS = 7
GETS = 5


def metrics_port(sg, timeout: float = STARTUP_TIMEOUT_S) -> int:
    deadline = time.monotonic() + timeout
    while True:
        m = _METRICS_LISTENING.search(sg.log())
        if m:
            return int(m.group(2))
        if sg.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no metrics listener\n{sg.log()}")
        time.sleep(0.02)


def curl(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "--silent", "--show-error", "--max-time", str(int(timeout)), *args],
                          capture_output=True, text=True, timeout=timeout + 5)


def samples(text: str) -> dict[str, float]:
    """'name{labels}' -> value, for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def start_two_databases(redis_server, shardgate, **metrics):
    backend = redis_server()
    mux = database("mux", 0, backend.address, tls=True)
    mux["multiplex"] = True
    plain = database("plain", 0, backend.address, tls=True)
    sg = shardgate([mux, plain], metrics={"listen": "127.0.0.1:0", **metrics})
    return sg, backend


def send_commands(sg) -> None:
    c = sg.client("mux")
    for i in range(SETS):
        assert c.set(f"k{i}", "v")
    for i in range(GETS):
        assert c.get(f"k{i}") == b"v"
    c.close()
    p = sg.client("plain")
    assert p.ping()
    p.close()


def test_https_scrape_counts_what_was_sent_and_passes_promtool(redis_server, shardgate):
    sg, _ = start_two_databases(redis_server, shardgate)
    port = metrics_port(sg)
    send_commands(sg)
    cert = sg.cert_dir / "metrics_exporter_cert.pem"
    assert cert.is_file(), "metrics_exporter generated self-signed on first start"

    # Verified against the self-signed metrics_exporter certificate.
    r = curl("--cacert", str(cert), "--include", f"https://127.0.0.1:{port}/metrics")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition("\n\n")  # text mode: CRLF read as LF
    assert head.startswith("HTTP/1.1 200")
    assert "text/plain; version=0.0.4" in head
    s = samples(body)
    assert s.get('endpoint_write_requests{db="mux"}') == SETS, body
    assert s['endpoint_read_requests{db="mux"}'] == GETS
    assert s['endpoint_write_requests_latency_histogram_count{db="mux"}'] == SETS
    assert s['endpoint_read_requests_latency_histogram_bucket{db="mux",le="+Inf"}'] == GETS
    assert s['endpoint_accepted_connections{db="mux"}'] >= 1
    assert s['endpoint_client_connections{db="plain"}'] >= 1
    assert s['shardgate_db_received_bytes_total{db="plain"}'] > 0
    assert s['shardgate_db_sent_bytes_total{db="mux"}'] > 0
    # A transparent database parses no command: no request figures.
    assert 'endpoint_read_requests{db="plain"}' not in s
    assert s['shardgate_tls_handshakes_total{version="TLSv1.3",result="ok"}'] >= 2
    assert s['shardgate_cert_expiry_seconds{cert="metrics_exporter"}'] > 86400
    assert s['shardgate_cert_generation{cert="proxy"}'] >= 1
    assert s["process_resident_memory_bytes"] > 0
    assert s["process_open_fds"] > 0
    assert any(k.startswith("shardgate_shard_up{db=\"mux\"") and v == 1 for k, v in s.items())

    # promtool: the exposition parses; its only lint notes are about the
    # names kept from Redis Enterprise's endpoint metrics (counters without
    # _total, histograms named ..._latency_histogram).
    promtool = shutil.which("promtool")
    assert promtool, "promtool not installed (Debian package prometheus)"
    p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30)
    problems = [line for line in (p.stdout + p.stderr).splitlines() if line.strip()]
    assert p.returncode in (0, 3), p.stdout + p.stderr  # 3: lint notes only
    unexpected = [line for line in problems
                  if not re.match(r'^endpoint_\w+ counter metrics should have "_total" suffix$', line)
                  and not re.match(r"^endpoint_\w+_latency_histogram metric name should not include type 'histogram'$",
                                   line)]
    assert not unexpected, "\n".join(problems)

    # Other paths and methods.
    assert curl("--cacert", str(cert), "-o", "/dev/null", "-w", "%{http_code}",
                f"https://127.0.0.1:{port}/other").stdout == "404"
    assert curl("--cacert", str(cert), "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                f"https://127.0.0.1:{port}/metrics").stdout == "405"
    # HTTPS only: plain HTTP on the TLS port gets no exposition.
    plain = curl(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert "endpoint_accepted_connections" not in plain.stdout


def test_plain_http_with_metrics_tls_false(redis_server, shardgate):
    sg, _ = start_two_databases(redis_server, shardgate, tls=False)
    port = metrics_port(sg)
    assert "plain HTTP" in sg.log()
    send_commands(sg)
    r = curl(f"http://127.0.0.1:{port}/metrics")
    assert r.returncode == 0, r.stderr
    s = samples(r.stdout)
    assert s['endpoint_write_requests{db="mux"}'] == SETS
    assert not (sg.cert_dir / "metrics_exporter_cert.pem").exists()


# ---------------------------------------------------------------- Prometheus

PROMETHEUS_READY_S = 30.0


def start_prometheus(procs, tmp_path: Path, target_port: int, ca: Path) -> tuple[subprocess.Popen, int]:
    """Starts prometheus scraping https://127.0.0.1:target_port/metrics every
    second. Prometheus cannot report a port it picked itself, so a free port
    is picked and, if another process took it first, tried again."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus not installed (Debian package prometheus)"
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [{
            "job_name": "shardgate",
            "scheme": "https",
            "tls_config": {"ca_file": str(ca)},
            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
        }],
    }))
    for attempt in range(5):
        port = free_port()
        log_path = tmp_path / f"prometheus{attempt}.log"
        proc = procs.start([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / f'tsdb{attempt}'}",
                            f"--web.listen-address=127.0.0.1:{port}"], log_path)
        deadline = time.monotonic() + PROMETHEUS_READY_S
        while True:
            log = log_path.read_text(errors="replace")
            if "Server is ready to receive web requests" in log:
                return proc, port
            if proc.poll() is not None:
                if "address already in use" in log:
                    break  # taken between the pick and the bind: another port
                pytest.fail(f"prometheus exited with code {proc.returncode}\n{log}")
            if time.monotonic() > deadline:
                stop_process(proc)
                pytest.fail(f"prometheus not ready after {PROMETHEUS_READY_S} s\n{log}")
            time.sleep(0.05)
    pytest.fail("prometheus found no free port in 5 attempts")


def query(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        data = json.load(resp)
    assert data["status"] == "success", data
    return data["data"]["result"]


def wait_for_value(port: int, expr: str, want: float, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        result = query(port, expr)
        if result:
            last = float(result[0]["value"][1])
            if last == want:
                return
        time.sleep(0.2)
    pytest.fail(f"{expr}: {last} after {timeout} s, wanted {want}")


def test_prometheus_scrapes_over_https(procs, tmp_path, redis_server, shardgate):
    sg, _ = start_two_databases(redis_server, shardgate)
    port = metrics_port(sg)
    ca = sg.cert_dir / "metrics_exporter_cert.pem"
    proc, prom_port = start_prometheus(procs, tmp_path, port, ca)
    try:
        wait_for_value(prom_port, 'up{job="shardgate"}', 1)
        send_commands(sg)
        wait_for_value(prom_port, 'endpoint_write_requests{db="mux"}', SETS)
        wait_for_value(prom_port, 'endpoint_read_requests{db="mux"}', GETS)
    finally:
        stop_process(proc)


def test_metrics_certificate_rotates_live(tmp_path, redis_server, shardgate):
    from certs import CA, place
    sg, _ = start_two_databases(redis_server, shardgate)
    port = metrics_port(sg)
    url = f"https://127.0.0.1:{port}/metrics"
    first = samples(curl("--cacert", str(sg.cert_dir / "metrics_exporter_cert.pem"), url).stdout)
    assert first['shardgate_cert_generation{cert="metrics_exporter"}'] >= 1

    ca = CA(tmp_path / "ca")
    pair = ca.issue(0x51)
    place(pair.key, sg.cert_dir, "metrics_exporter_key.pem")
    place(pair.cert, sg.cert_dir, "metrics_exporter_cert.pem")
    # The file watch applies it; the next handshake is served the new
    # certificate, which only the new CA verifies.
    deadline = time.monotonic() + 10
    while True:
        r = curl("--cacert", str(ca.cert), url, timeout=5)
        if r.returncode == 0:
            break
        assert time.monotonic() < deadline, f"new metrics_exporter certificate not served\n{sg.log()}"
        time.sleep(0.1)
    after = samples(r.stdout)
    assert after['shardgate_cert_generation{cert="metrics_exporter"}'] > first[
        'shardgate_cert_generation{cert="metrics_exporter"}']
    assert after['shardgate_cert_reloads_total{result="ok"}'] >= 1
    assert 80 * 86400 < after['shardgate_cert_expiry_seconds{cert="metrics_exporter"}'] <= 90 * 86400
