"""The README's two commands on a machine that is not quiet: scripts/lib.sh
waits for a dpkg lock held by another apt, and scripts/demo builds only what
it runs (the tests and benchmarks are scripts/test's to build)."""
from __future__ import annotations

import fcntl
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO

DPKG_FRONTEND_LOCK = Path("/var/lib/dpkg/lock-frontend")


@pytest.mark.skipif(os.geteuid() != 0, reason="holding the dpkg lock needs root")
def test_apt_waits_for_the_dpkg_lock_instead_of_failing():
    hold_s = 2.0
    fd = os.open(DPKG_FRONTEND_LOCK, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pytest.skip("another apt holds the dpkg lock right now")
        release = threading.Timer(hold_s, lambda: fcntl.lockf(fd, fcntl.LOCK_UN))
        release.start()
        started = time.monotonic()
        # `apt-get check` takes the same frontend lock as `apt-get install`.
        result = subprocess.run(["bash", "-c", "source scripts/lib.sh && apt_get check"],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - started
        release.join()
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stderr
    assert elapsed >= hold_s - 0.2, f"apt-get did not wait for the lock ({elapsed:.2f} s)"


def test_demo_builds_only_the_proxy(tmp_path):
    # Stand-ins for meson and ninja record how the demo builds, then stop it.
    calls = tmp_path / "calls"
    for tool, rc in (("meson", 0), ("ninja", 1)):
        shim = tmp_path / tool
        shim.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\nexit {rc}\n')
        shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    result = subprocess.run(["bash", "scripts/demo"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0  # the stand-in ninja failed the build on purpose
    ninja = [line for line in calls.read_text().splitlines() if line.startswith("ninja ")]
    assert ninja == ["ninja -C build shardgate"], ninja
