"""Repeated warnings on the data path are logged at most once a second per kind
of event and worker, with the count of those not logged: the log does not grow
with the event rate, and no event goes uncounted."""
from __future__ import annotations

import re
import socket
import threading
import time

from conftest import database, recv_until

CLIENTS = 200
MORE = re.compile(r"(\d+) more since the last line")


def unavailable_report(log: str, shard: str) -> tuple[int, int]:
    """(lines about the refused shard, events they account for): each line is
    one event plus the count it carries."""
    lines = [line for line in log.splitlines()
             if f"shard {shard} unavailable" in line or "failed shard connections:" in line]
    events = sum((0 if "failed shard connections:" in line else 1) +
                 sum(int(n) for n in MORE.findall(line)) for line in lines)
    return len(lines), events


def test_refused_shard_connections_log_a_line_a_second_with_the_count(shardgate,
                                                                      refused_address):
    dead = refused_address  # every connect is refused
    sg = shardgate([database("down", 0, dead, tls=False)], workers=1)

    started = time.monotonic()
    for i in range(CLIENTS):
        with socket.create_connection(("127.0.0.1", sg.port()), timeout=5) as c:
            c.sendall(b"PING\r\n")
            reply = recv_until(c, b"\r\n", timeout=5)
        # Every client is still told, whatever the log says.
        assert reply == f"-ERR shard {dead} unavailable: connection refused\r\n".encode(), \
            f"client {i}: {reply!r}"
    elapsed = time.monotonic() - started

    # Every event is accounted for: by a line of its own or in a count, the
    # last count written about 2 s after the last line even with no event after it.
    deadline = time.monotonic() + 5
    while True:
        lines, events = unavailable_report(sg.log(), dead)
        if events >= CLIENTS or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert events == CLIENTS, f"{events} refused connects accounted for in the log, not {CLIENTS}\n{sg.log()}"
    # One line a second at most, and one for the count held back at the end.
    assert lines <= elapsed + 2, f"{lines} lines in {elapsed:.1f} s\n{sg.log()}"
    assert re.search(r"failed shard connections: \d+ more since the last line", sg.log()), sg.log()


def test_a_shard_that_drops_every_connection_logs_its_recovery_at_most_once_a_second(shardgate):
    """A shard that accepts and at once closes every connection (redis-server
    at maxclients does so after its error line) behind a multiplexed
    database: the shared link comes up and goes down again every retry. Its
    "unavailable" lines are limited; its "available again" lines must be too,
    and every client is still answered."""
    dropper = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dropper.bind(("127.0.0.1", 0))
    dropper.listen(128)
    shard = f"127.0.0.1:{dropper.getsockname()[1]}"

    def drop_all() -> None:
        while True:
            try:
                conn, _ = dropper.accept()
            except OSError:
                return  # the test closed the listening socket
            conn.close()

    threading.Thread(target=drop_all, daemon=True).start()
    try:
        db = database("flapping", 0, shard, tls=False)
        db["multiplex"] = True
        sg = shardgate([db], workers=1)
        with socket.create_connection(("127.0.0.1", sg.port()), timeout=5) as c:
            started = time.monotonic()
            answered = 0
            while time.monotonic() - started < 3:
                c.sendall(b"GET key\r\n")
                reply = recv_until(c, b"\r\n", timeout=5)
                assert reply.startswith(b"-ERR shard ") or reply == b"$-1\r\n", reply
                answered += 1
                time.sleep(0.005)
            elapsed = time.monotonic() - started
        log = sg.log()
        up = log.count(f"shard {shard} is available again")
        down = log.count(f"shard {shard} unavailable")
        assert down >= 1, log[-3000:]
        assert up <= elapsed + 1, f"{up} 'available again' lines in {elapsed:.1f} s ({answered} " \
                                  f"requests)\n{log[-3000:]}"
        assert down <= elapsed + 1, f"{down} 'unavailable' lines in {elapsed:.1f} s\n{log[-3000:]}"
    finally:
        dropper.close()
