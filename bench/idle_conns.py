#!/usr/bin/python3
"""Helper process for the memory and 10k workloads: open COUNT connections to
127.0.0.1:PORT (TLS verified against --ca unless --plain), on each do the
handshake, PING and read +PONG, then hold them all idle.

It runs as its own process so that its descriptors and event loop stay out of
the bench process, which samples the target's RSS meanwhile.

Protocol on stdin/stdout (one JSON object per line on stdout):
  on start:   opens everything, prints {"opened": n, "errors": e, "first_errors": [...],
              "seconds": t}
  "check\\n":  PINGs every held connection again, prints {"alive": n, "errors": e, ...}
  EOF/"close": closes everything and exits.
Bounded: gives up after --timeout seconds of opening and --hold-max seconds of holding.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import sys
import time


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"PING\r\n")
    await writer.drain()
    line = await reader.readuntil(b"\r\n")
    if line != b"+PONG\r\n":
        raise RuntimeError(f"PING answered {line!r}")


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--ca")
    ap.add_argument("--plain", action="store_true")
    # Handshakes in flight at once: enough to keep the target busy, few enough
    # not to overflow listen backlogs.
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--hold-max", type=float, default=600.0)
    args = ap.parse_args()
    raise_nofile()

    ctx = None
    if not args.plain:
        ctx = ssl.create_default_context(cafile=args.ca)
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    errors: list[str] = []
    sem = asyncio.Semaphore(args.concurrency)

    async def open_one() -> None:
        async with sem:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(
                    "127.0.0.1", args.port, ssl=ctx,
                    server_hostname="localhost" if ctx else None), 15)
                await asyncio.wait_for(ping(r, w), 15)
                held.append((r, w))
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                errors.append(f"{type(e).__name__}: {e}")

    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(open_one()) for _ in range(args.count)]
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for t in pending:
        t.cancel()
    if pending:
        errors.append(f"{len(pending)} connections not open after {args.timeout:.0f} s")
    out = {"opened": len(held), "errors": len(errors), "first_errors": errors[:5],
           "seconds": round(time.monotonic() - t0, 3)}
    print(json.dumps(out), flush=True)

    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + args.hold_max
    while time.monotonic() < deadline:
        try:
            cmd = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline),
                                         deadline - time.monotonic())
        except asyncio.TimeoutError:
            break
        cmd = cmd.strip()
        if cmd == "check":
            res = await asyncio.gather(*(asyncio.wait_for(ping(r, w), 30) for r, w in held),
                                       return_exceptions=True)
            bad = [f"{type(x).__name__}: {x}" for x in res if isinstance(x, BaseException)]
            print(json.dumps({"alive": len(held) - len(bad), "errors": len(bad),
                              "first_errors": bad[:5]}), flush=True)
        else:               # "close" or EOF
            break
    for _r, w in held:
        w.transport.abort()     # no close_notify round trips: the run is over
    return 0


if __name__ == "__main__":
    loop = asyncio.new_event_loop()
    rc = loop.run_until_complete(main())
    sys.stdout.flush()
    # The stdin reader thread may still be blocked in readline(): skip the
    # interpreter's wait for it.
    os._exit(rc)

