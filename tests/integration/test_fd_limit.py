"""The open-file limit: what shardgate does when descriptors run out, and what it
says at start about how many clients fit.

shardgate runs under a low limit set in the child before exec (the way `ulimit
-n` does), without CAP_SYS_RESOURCE in its bounding set, so it cannot raise the
hard limit however the test is run. A process that spins at the limit would
never end by itself: every test here bounds its waits and SIGKILLs shardgate in
its teardown, whatever happened.
"""
from __future__ import annotations

import ctypes
import os
import re
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from conftest import (REPO, SHARDGATE_BIN, Shardgate, database, require_binary,
                      wait_for_listening, write_config)

CAP_SYS_RESOURCE = 24
PR_CAPBSET_DROP = 24

# Connects in the flood, in waves: with workers: 2, enough that both workers
# meet the limit at once, again and again, which is what makes libuv's own
# EMFILE handling spin (see proxy/listener.h): 6 runs out of 6 on the build
# before the fix, where one burst of the same size missed it 1 time in 3.
FLOOD = 5500

ROOM = re.compile(r"open-file limit (\d+), (\d+) in use at start: room for about (\d+) clients")


def _limit_descriptors(nofile: int):
    """preexec_fn: `ulimit -n nofile` (soft and hard), and no CAP_SYS_RESOURCE
    after exec, so shardgate meets this limit as an unprivileged or
    containerised root would."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0)  # fails harmlessly when not root

    return apply


def start_limited(procs, tmp_path: Path, databases: list[dict], nofile: int | None,
                  drop_cap: bool = True, hard: int | None = None, **top) -> Shardgate:
    require_binary()
    config_path = write_config(tmp_path, databases, **top)
    log_path = tmp_path / "shardgate.log"
    if nofile is not None:
        preexec = _limit_descriptors(nofile)
    else:
        def preexec() -> None:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard), hard))
    proc = procs.start([SHARDGATE_BIN, "--config", config_path], log_path, cwd=REPO,
                       preexec_fn=preexec)
    sg = Shardgate(proc=proc, config_path=config_path, log_path=log_path)
    sg.ports = wait_for_listening(sg, [d["name"] for d in databases])
    return sg


def kill(sg: Shardgate) -> None:
    if sg.proc.poll() is None:
        sg.proc.send_signal(signal.SIGKILL)
        sg.proc.wait(timeout=5)


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of pid, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_log(sg: Shardgate, pattern: str, timeout: float) -> re.Match | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Read the tail only: a spinning proxy writes megabytes a second.
        with open(sg.log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(sg.log_path) - 65536))
            m = re.search(pattern, f.read().decode(errors="replace"), re.IGNORECASE)
        if m:
            return m
        time.sleep(0.05)
    return None


def open_files(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def log_lines(sg: Shardgate) -> int:
    with open(sg.log_path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


@pytest.fixture
def many_files():
    """The test process itself opens FLOOD sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FLOOD + 1024:
        if hard < FLOOD + 1024:
            pytest.skip(f"the test needs {FLOOD + 1024} descriptors of its own; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (FLOOD + 1024, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect_flood(port: int, count: int, waves: int, gap_s: float) -> list[socket.socket]:
    """Bare TCP connects that send nothing, in waves gap_s apart, non-blocking:
    once the proxy stops accepting and its backlog is full, a connect stays
    pending instead of blocking the test. Waves keep connections arriving
    while the proxy is at its limit, in every worker at once."""
    socks = []
    for wave in range(waves):
        if wave:
            time.sleep(gap_s)
        for _ in range(count // waves):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
    return socks


def test_out_of_descriptors_pauses_accepting_serves_clients_and_recovers(
        many_files, redis_server, procs, tmp_path):
    nofile = 256
    drain_ms = 1000
    backend = redis_server()
    sg = start_limited(procs, tmp_path, [database("db1", 0, backend.address)], nofile,
                       workers=2, drain_timeout_ms=drain_ms)
    flood: list[socket.socket] = []
    try:
        early = sg.client(single_connection_client=True, socket_timeout=3)
        assert early.set("before", "flood") is True  # its shard connection is open now

        flood = connect_flood(sg.port(), FLOOD, waves=11, gap_s=0.1)
        deadline = time.monotonic() + 5
        while open_files(sg.proc.pid) < nofile - 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_files(sg.proc.pid) >= nofile - 4, \
            f"shardgate holds {open_files(sg.proc.pid)} descriptors after {len(flood)} connects"

        # At the limit: a couple of seconds of the proxy's CPU time and log.
        lines_before = log_lines(sg)
        cpu_before, t0 = cpu_seconds(sg.proc.pid), time.monotonic()
        time.sleep(2)
        cpu = (cpu_seconds(sg.proc.pid) - cpu_before) / (time.monotonic() - t0)
        lines = log_lines(sg) - lines_before
        assert cpu < 0.3, f"shardgate used {cpu:.0%} of a core while out of descriptors"
        assert lines < 20, f"{lines} log lines in 2 s while out of descriptors"

        # The client connected before the flood is served throughout.
        for i in range(5):
            assert early.set(f"during{i}", i) is True
            assert early.get(f"during{i}") == str(i).encode()

        for s in flood:
            s.close()
        flood = []

        # Descriptors come back as the proxy sees the attackers' sockets close:
        # a new client is served again without any help.
        deadline = time.monotonic() + 10
        while True:
            try:
                fresh = sg.client(socket_timeout=2, socket_connect_timeout=2)
                assert fresh.get("before") == b"flood"
                fresh.close()
                break
            except (redis.ConnectionError, redis.TimeoutError) as e:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no new client served 10 s after the flood ended: {e}\n"
                                         f"{sg.log()[-3000:]}")
                time.sleep(0.2)
        assert early.get("during4") == b"4"

        sg.proc.send_signal(signal.SIGTERM)
        try:
            code = sg.proc.wait(timeout=drain_ms / 1000 + 3)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {drain_ms / 1000 + 3} s after SIGTERM")
        assert code == 0, sg.log()[-3000:]
        early.close()
    finally:
        for s in flood:
            s.close()
        kill(sg)


def test_start_line_says_how_many_clients_fit_and_they_do(many_files, redis_server, procs, tmp_path):
    nofile = 256
    backend = redis_server()
    sg = start_limited(procs, tmp_path, [database("db1", 0, backend.address)], nofile,
                       workers=2)
    clients = []
    try:
        room = wait_for_log(sg, ROOM.pattern, timeout=5)
        assert room, f"no start-up line about the open-file limit\n{sg.log()}"
        limit, in_use, fit = map(int, room.groups())
        assert limit == nofile
        # Raising the hard limit failed (no CAP_SYS_RESOURCE), and the log says
        # so, with what to do about it.
        log = sg.log()
        assert re.search(rf"could not raise the hard open-file limit from {nofile} to \d+: "
                         r"Operation not permitted \(.*LimitNOFILE", log), log
        # Plain forwarding: two descriptors a client, a few kept for the proxy.
        assert "2 descriptors each" in room.group(0) or "2 descriptors each" in log
        assert (limit - in_use) // 2 - 32 <= fit <= (limit - in_use) // 2, log

        # That many clients are all served, each over its own shard connection.
        for i in range(fit):
            c = sg.client(single_connection_client=True, socket_timeout=5)
            assert c.set(f"k{i}", i) is True, f"client {i} of {fit}"
            clients.append(c)
        assert len(backend.client().client_list()) >= fit
    finally:
        for c in clients:
            c.close()
        kill(sg)


def _has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


@pytest.mark.skipif(not _has_cap_sys_resource(),
                    reason="raising a hard limit needs CAP_SYS_RESOURCE, which this machine's root lacks")
def test_privileged_start_raises_the_hard_limit(redis_server, procs, tmp_path):
    backend = redis_server()
    sg = start_limited(procs, tmp_path, [database("db1", 0, backend.address)], None,
                       hard=4096, workers=1)
    try:
        room = wait_for_log(sg, ROOM.pattern, timeout=5)
        assert room, sg.log()
        assert int(room.group(1)) > 4096, sg.log()
        assert re.search(r"raised the open-file limit from \d+ \(hard 4096\) to \d+", sg.log()), sg.log()
    finally:
        kill(sg)


def test_certificate_rotated_while_out_of_descriptors_is_served_once_they_are_free(
        many_files, redis_server, procs, tmp_path):
    """A new pair lands in cert_dir while a flood holds every descriptor: the
    reload cannot even open the files. No file event will come when
    descriptors are free again, so shardgate tries again by itself: the new
    certificate is served soon after the flood ends, without a SIGHUP."""
    from certs import CA, install_pair
    from test_rotation import Rotating, populate

    nofile = 200
    ca = CA(tmp_path / "ca")
    first = ca.issue(0x5EC000)
    populate(tmp_path / "certs", first)
    backend = redis_server()
    sg = start_limited(procs, tmp_path, [database("db1", 0, backend.address)], nofile,
                       workers=2, generate_self_signed=False)
    rot = Rotating(sg=sg, ca=ca, cert_dir=tmp_path / "certs", first=first)
    flood: list[socket.socket] = []
    try:
        assert rot.served_serial() == first.serial
        flood = connect_flood(sg.port(), 2000, waves=4, gap_s=0.1)
        deadline = time.monotonic() + 5
        while open_files(sg.proc.pid) < nofile and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_files(sg.proc.pid) >= nofile, f"{open_files(sg.proc.pid)} descriptors open"

        pair = rot.new_pair()
        install_pair(pair, rot.cert_dir)
        failed = wait_for_log(sg, r"certificate reload failed[^\n]*proxy_\w+\.pem: Too many open files",
                              timeout=5)
        assert failed, f"the rotation's reload did not meet the limit\n{sg.log()[-3000:]}"

        for s in flood:
            s.close()
        flood = []
        released = time.monotonic()
        while True:
            try:
                if rot.served_serial() == pair.serial:
                    break
            except OSError:
                pass  # descriptors not back yet
            assert time.monotonic() - released < 5, \
                f"new connections still served the old certificate 5 s after the flood ended\n" \
                f"{sg.log()[-3000:]}"
            time.sleep(0.1)
    finally:
        for s in flood:
            s.close()
        kill(sg)
