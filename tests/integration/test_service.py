"""Running as a service: the sd_notify protocol (READY/RELOADING/STOPPING,
checked with a datagram socket in $NOTIFY_SOCKET, as systemd listens), the
pid_file and log_file keys, the systemd unit (`systemd-analyze verify`) and
what `meson install` puts where."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (REPO, SHARDGATE_BIN, STARTUP_TIMEOUT_S, Shardgate, database, require_binary,
                      run_shardgate, tls_socket, recv_until, wait_for_listening,
                      write_config)


def start(procs, tmp_path: Path, databases: list[dict], env: dict | None = None,
          log_path: Path | None = None, **top) -> Shardgate:
    """Like the `shardgate` fixture, with an environment of its own and the
    log read from `log_path` (the log_file, when the config sets one)."""
    require_binary()
    config_path = write_config(tmp_path, databases, **top)
    output = tmp_path / "shardgate.out"
    proc = procs.start([SHARDGATE_BIN, "--config", config_path], output, cwd=REPO,
                       env={**os.environ, **(env or {})})
    sg = Shardgate(proc=proc, config_path=config_path, log_path=log_path or output)
    sg.ports = wait_for_listening(sg, [d["name"] for d in databases])
    return sg


def wait_until(condition, what: str, timeout: float = 5.0, sg: Shardgate | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if sg is not None and sg.proc.poll() is not None:
            pytest.fail(f"shardgate exited ({sg.proc.returncode}) while waiting for {what}\n{sg.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout} s" + (f"\n{sg.log()}" if sg else ""))
        time.sleep(0.02)


def ping(sg: Shardgate) -> bytes:
    conn = tls_socket(sg.port(), sg.ca, timeout=5)
    try:
        conn.sendall(b"PING\r\n")
        return recv_until(conn, b"\r\n")
    finally:
        conn.close()


# ---------------------------------------------------------------- sd_notify


class NotifySocket:
    """The service manager's end: an AF_UNIX datagram socket whose path goes
    into $NOTIFY_SOCKET. Short path: sun_path holds 108 bytes."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sg-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def receive(self, sg: Shardgate, timeout: float = STARTUP_TIMEOUT_S) -> dict[str, str]:
        """The next datagram as KEY -> VALUE; fails if none comes in time."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(0.1)
            try:
                data = self.sock.recv(4096).decode()
                return dict(line.split("=", 1) for line in data.split("\n") if line)
            except socket.timeout:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no notification after {timeout} s\n{sg.log()}")

    def pending(self) -> bytes | None:
        self.sock.settimeout(0)
        try:
            return self.sock.recv(4096)
        except BlockingIOError:
            return None

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    try:
        yield sock
    finally:
        sock.close()


def test_notify_ready_reloading_stopping(redis_server, procs, tmp_path, notify_socket):
    backend = redis_server()
    sg = start(procs, tmp_path, [database("db1", 0, backend.address)],
               env={"NOTIFY_SOCKET": notify_socket.path})

    ready = notify_socket.receive(sg)
    assert ready.get("READY") == "1", ready
    # READY=1 comes only once the listener serves: a client connects at once,
    # with no retry, and gets its answer.
    assert ping(sg) == b"+PONG\r\n"
    assert ready["STATUS"] == f"serving db1 on 127.0.0.1:{sg.port()} with 2 worker(s)"

    before_us = time.monotonic_ns() // 1000
    sg.proc.send_signal(signal.SIGHUP)
    reloading = notify_socket.receive(sg)
    after_us = time.monotonic_ns() // 1000
    assert reloading.get("RELOADING") == "1", reloading
    # The same clock systemd reads (CLOCK_MONOTONIC), taken at the reload.
    assert before_us <= int(reloading["MONOTONIC_USEC"]) <= after_us, reloading
    ready_again = notify_socket.receive(sg)
    assert ready_again.get("READY") == "1", ready_again
    assert ready_again["STATUS"].startswith("serving db1 on "), ready_again
    assert ping(sg) == b"+PONG\r\n"

    sg.proc.send_signal(signal.SIGTERM)
    stopping = notify_socket.receive(sg)
    assert stopping.get("STOPPING") == "1", stopping
    assert "draining" in stopping["STATUS"]
    assert sg.proc.wait(timeout=5) == 0
    assert notify_socket.pending() is None


def test_notify_failed_reload_is_ready_again_with_the_reason(redis_server, procs, tmp_path,
                                                             notify_socket):
    backend = redis_server()
    sg = start(procs, tmp_path, [database("db1", 0, backend.address)],
               env={"NOTIFY_SOCKET": notify_socket.path})
    assert notify_socket.receive(sg).get("READY") == "1"
    sg.config_path.write_text(sg.config_path.read_text() + "bogus_key: 1\n")
    sg.proc.send_signal(signal.SIGHUP)
    assert notify_socket.receive(sg).get("RELOADING") == "1"
    ready = notify_socket.receive(sg)
    assert ready.get("READY") == "1", ready
    assert ready["STATUS"].startswith("reload failed, serving the previous configuration: "), ready
    assert "bogus_key: unknown key" in ready["STATUS"]
    assert ping(sg) == b"+PONG\r\n"


# ---------------------------------------------------------------- pid_file


def test_pid_file_written_once_listening_and_removed_at_exit(redis_server, procs, tmp_path):
    backend = redis_server()
    (tmp_path / "run").mkdir()
    pid_path = tmp_path / "run" / "shardgate.pid"
    sg = start(procs, tmp_path, [database("db1", 0, backend.address)], pid_file="run/shardgate.pid")
    # Written before the "listening" line the start waited for.
    assert pid_path.read_text() == f"{sg.proc.pid}\n"
    assert [p.name for p in pid_path.parent.iterdir()] == ["shardgate.pid"]  # no temporary left

    sg.proc.send_signal(signal.SIGTERM)
    assert sg.proc.wait(timeout=5) == 0
    assert not pid_path.exists()


def test_stale_pid_file_is_replaced(redis_server, procs, tmp_path):
    backend = redis_server()
    gone = subprocess.Popen(["true"])
    gone.wait()
    pid_path = tmp_path / "shardgate.pid"
    pid_path.write_text(f"{gone.pid}\n")
    sg = start(procs, tmp_path, [database("db1", 0, backend.address)], pid_file=str(pid_path))
    assert pid_path.read_text() == f"{sg.proc.pid}\n"
    assert f"removed a stale one naming pid {gone.pid}" in sg.log()


def test_live_pid_file_is_an_error_naming_the_pid(redis_server, procs, tmp_path):
    backend = redis_server()
    pid_path = tmp_path / "shardgate.pid"
    first = start(procs, tmp_path, [database("db1", 0, backend.address)], pid_file=str(pid_path))
    assert pid_path.read_text() == f"{first.proc.pid}\n"

    # A second shardgate with the same pid_file (its own port, so only the
    # pid file stops it).
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    config = write_config(second_dir, [database("db1", 0, backend.address)], pid_file=str(pid_path))
    result = run_shardgate(["--config", config])
    assert result.returncode == 1, result
    assert (f"pid_file: {pid_path} names pid {first.proc.pid}, which is running"
            in result.stderr), result.stderr
    assert "listening on" not in result.stderr
    # The first one's file and service are untouched.
    assert pid_path.read_text() == f"{first.proc.pid}\n"
    assert ping(first) == b"+PONG\r\n"


def test_pid_file_in_a_missing_directory_names_the_file(redis_server, tmp_path):
    backend = redis_server()
    pid_path = tmp_path / "missing" / "shardgate.pid"
    config = write_config(tmp_path, [database("db1", 0, backend.address)], pid_file=str(pid_path))
    result = run_shardgate(["--config", config])
    assert result.returncode == 1
    assert f"pid_file: cannot write {pid_path}: No such file or directory" in result.stderr


# ---------------------------------------------------------------- log_file


RELOAD_LINE = "SIGHUP: re-reading"


def count(path: Path, text: str) -> int:
    return path.read_text(errors="replace").count(text) if path.exists() else 0


def test_log_file_reopened_on_sigusr1_after_a_move_loses_no_line(redis_server, procs, tmp_path):
    backend = redis_server()
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "shardgate.log"
    rotated = tmp_path / "logs" / "shardgate.log.1"
    sg = start(procs, tmp_path, [database("db1", 0, backend.address)], log_path=log,
               log_file="logs/shardgate.log")
    # The log goes to the file, not to stderr.
    assert "listening on" in log.read_text()
    assert (tmp_path / "shardgate.out").read_text() == ""

    hups = 0

    def hup(path: Path, expected: int) -> None:
        nonlocal hups
        sg.proc.send_signal(signal.SIGHUP)
        hups += 1
        wait_until(lambda: count(path, RELOAD_LINE) == expected, f"{expected} reloads in {path}",
                   sg=sg)

    hup(log, 1)
    os.rename(log, rotated)  # what logrotate does
    hup(rotated, 2)          # still written to the moved file, as it is still open
    hup(rotated, 3)
    sg.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: count(log, "SIGUSR1: reopened the log file") == 1, "the reopen line", sg=sg)
    hup(log, 1)
    hup(log, 2)

    # Every line in one file or the other, none twice, none cut.
    assert count(rotated, RELOAD_LINE) + count(log, RELOAD_LINE) == hups
    for path in (rotated, log):
        for line in path.read_text().splitlines():
            assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} \w+ \[\d+\] ", line), line
    # The moved file is closed: no descriptor of the process points at it.
    fds = [os.readlink(f"/proc/{sg.proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{sg.proc.pid}/fd")]
    assert str(rotated) not in fds
    assert fds.count(str(log)) == 1

    sg.proc.send_signal(signal.SIGTERM)
    assert sg.proc.wait(timeout=5) == 0
    assert "stopped" in log.read_text().splitlines()[-1]


def test_log_file_reopen_that_fails_keeps_the_open_file(redis_server, procs, tmp_path):
    backend = redis_server()
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "shardgate.log"
    sg = start(procs, tmp_path, [database("db1", 0, backend.address)], log_path=log,
               log_file=str(log))
    os.rename(tmp_path / "logs", tmp_path / "moved")
    moved = tmp_path / "moved" / "shardgate.log"
    sg.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: count(moved, f"SIGUSR1: cannot open log file {log}: No such file or directory; "
                                    "still logging to the file open before") == 1,
               "the failed reopen line", sg=sg)
    assert sg.proc.poll() is None


def test_log_file_that_cannot_be_opened_names_it(redis_server, tmp_path):
    backend = redis_server()
    log = tmp_path / "missing" / "shardgate.log"
    config = write_config(tmp_path, [database("db1", 0, backend.address)], log_file=str(log))
    result = run_shardgate(["--config", config])
    assert result.returncode == 1
    assert re.search(rf"shardgate: {re.escape(str(config))}:\d+: log_file: cannot open log file "
                     rf"{re.escape(str(log))}: No such file or directory", result.stderr), result.stderr


def test_start_failure_with_log_file_is_also_on_stderr(redis_server, tmp_path):
    # The journal keeps stderr: why a start failed must be there too.
    backend = redis_server()
    log = tmp_path / "shardgate.log"
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    try:
        taken = held.getsockname()[1]
        config = write_config(tmp_path, [database("db1", taken, backend.address)], log_file=str(log))
        result = run_shardgate(["--config", config])
    finally:
        held.close()
    assert result.returncode == 1
    assert "databases[0].listen" in result.stderr
    assert "databases[0].listen" in log.read_text()


def test_sigusr1_without_log_file_is_harmless(proxied):
    sg, _ = proxied
    sg.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: "SIGUSR1: logging to stderr, no log file to reopen" in sg.log(),
               "the SIGUSR1 line", sg=sg)
    assert ping(sg) == b"+PONG\r\n"


# ---------------------------------------------------------------- install and unit


def build_dir() -> Path:
    return SHARDGATE_BIN.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """`meson install --destdir` of the build that made SHARDGATE_BIN, once
    for this module: the installed files by what they are."""
    if shutil.which("meson") is None:
        pytest.skip("meson is not installed")
    build = build_dir()
    if not (build / "meson-private").is_dir():
        pytest.skip(f"{build} is not a meson build directory (SHARDGATE_BIN points elsewhere)")
    dest = tmp_path_factory.mktemp("destdir")
    result = subprocess.run(["meson", "install", "-C", str(build), "--destdir", str(dest),
                             "--no-rebuild", "--quiet"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    options = {o["name"]: o["value"] for o in json.loads(subprocess.run(
        ["meson", "introspect", str(build), "--buildoptions"], capture_output=True, text=True,
        check=True, timeout=60).stdout)}
    prefix = Path(options["prefix"])

    def under(*parts: str) -> Path:
        path = prefix.joinpath(*parts)
        return dest / path.relative_to("/")

    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    return {
        "dest": dest,
        "prefix": prefix,
        "files": files,
        "binary": under(options["bindir"], "shardgate"),
        "unit": under("lib", "systemd", "system", "shardgate.service"),
        "example": under(options["datadir"], "doc", "shardgate", "examples", "shardgate.yaml"),
        "sysusers": under("lib", "sysusers.d", "shardgate.conf"),
        "config_path": prefix / options["sysconfdir"] / "shardgate" / "shardgate.yaml",
        "bin_path": prefix / options["bindir"] / "shardgate",
    }


def test_meson_install_puts_binary_unit_and_example_config(installed):
    files = installed["files"]
    for what in ("binary", "unit", "example", "sysusers"):
        assert str(installed[what].relative_to(installed["dest"])) in files, (what, files)
    assert os.access(installed["binary"], os.X_OK)
    version = subprocess.run([installed["binary"], "--version"], capture_output=True, text=True,
                             timeout=10)
    assert version.stdout.startswith("shardgate "), version
    # Paths filled in for this prefix.
    unit = installed["unit"].read_text()
    assert f"ExecStart={installed['bin_path']} --config {installed['config_path']}\n" in unit
    assert re.search(r"@\w+@", unit) is None, unit
    # The example config is valid as shipped (it touches nothing to say so).
    check = run_shardgate(["--config", installed["example"], "--check-config"])
    assert check.returncode == 0, check.stderr
    assert "u shardgate " in installed["sysusers"].read_text()


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_is_a_sandboxed_notify_service(installed):
    s = unit_settings(installed["unit"].read_text())
    assert s["Type"] == ["notify"]
    assert s["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert int(s["LimitNOFILE"][0]) >= 20000  # 10,000 clients of plain forwarding, 2 fds each
    assert s["User"] == ["shardgate"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["StateDirectory"] == ["shardgate"]  # cert_dir's home, the one writable state
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["CapabilityBoundingSet"] == [""]
    assert s["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert "@system-service" in s["SystemCallFilter"]
    example = installed["example"].read_text()
    assert "cert_dir: /var/lib/shardgate/certs" in example


def test_systemd_analyze_verify_passes_on_the_unit(installed, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    # verify checks that ExecStart's program exists: point it at the binary
    # installed into the destdir.
    text = installed["unit"].read_text().replace(str(installed["bin_path"]), str(installed["binary"]))
    unit = tmp_path / "shardgate.service"
    unit.write_text(text)
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # Unknown or misspelt keys are only warnings: none may be printed.
    assert "shardgate.service" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_systemd_security_exposure_is_low(installed, tmp_path):
    """systemd's own reading of the sandbox, without a running systemd: its
    exposure score (0 = locked down, 10 = none) must stay at 2.0 or below
    (the unit scores 1.4; a dropped sandbox option raises it)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    unit = tmp_path / "shardgate.service"
    unit.write_text(installed["unit"].read_text())
    result = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20", "--no-pager",
                             str(unit)], capture_output=True, text=True, timeout=60)
    level = re.search(r"Overall exposure level for shardgate\.service: ([0-9.]+)", result.stdout)
    assert level is not None, result.stdout + result.stderr
    assert result.returncode == 0 and float(level.group(1)) <= 2.0, result.stdout[-3000:]
