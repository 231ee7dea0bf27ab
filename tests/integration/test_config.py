"""Config errors from the real binary: every bad config exits non-zero with a
message "FILE:LINE: key: problem" naming the key and its line, both under
--check-config and on a normal start (they run the same validator)."""
from __future__ import annotations

import re
import socket

import pytest

from conftest import run_shardgate

DATABASE = """\
databases:
  - name: db1
    listen: 127.0.0.1:{listen}
    shards:
      - address: 127.0.0.1:{backend}
"""

BAD_CONFIGS = {
    # case: (config text, what the message must name)
    "unknown_key": ("cert_dir: ./certs\nbogus_key: 1\n" + DATABASE, "bogus_key"),
    "bad_address": ("cert_dir: ./certs\n" + DATABASE.replace(
        "listen: 127.0.0.1:{listen}", "listen: 127.0.0.1:not-a-port"), "listen"),
    "bad_min_version": ("cert_dir: ./certs\ntls:\n  min_version: \"1.7\"\n" + DATABASE,
                        "min_version"),
    "overlapping_slots": ("cert_dir: ./certs\n" + DATABASE.replace(
        "      - address: 127.0.0.1:{backend}\n",
        "      - { address: \"127.0.0.1:{backend}\", slots: \"0-9000\" }\n"
        "      - { address: \"127.0.0.1:{backend2}\", slots: \"8000-16383\" }\n"), "slots"),
    "missing_shards": ("cert_dir: ./certs\ndatabases:\n  - name: db1\n"
                       "    listen: 127.0.0.1:{listen}\n", "shards"),
    "bad_cipher_string": ("cert_dir: ./certs\ntls:\n  ciphers: \"NOT-A-REAL-CIPHER\"\n"
                          + DATABASE, "ciphers"),
    "self_signed_off_and_no_cert": ("cert_dir: ./certs\ngenerate_self_signed: false\n"
                                    + DATABASE, "proxy_cert.pem"),
    "garbage_certificate": ("cert_dir: ./garbage\n" + DATABASE, "proxy_cert.pem"),
    # A client_allow entry of no known kind is refused where it stands.
    "client_allow_bad_entry": (DATABASE + "    client_auth: required\n    client_allow:\n"
                               "      - \"host:web-1\"\n", "databases[0].client_allow[0]"),
    "admin_user_plain_password": (DATABASE + "admin:\n  listen: 127.0.0.1:{admin}\n  users:\n"
                                  "    - name: ops\n      password_hash: hunter2\n",
                                  "admin.users[0].password_hash"),
    "metrics_tls_not_boolean": (DATABASE + "metrics:\n  listen: 127.0.0.1:{admin}\n  tls: maybe\n",
                                "metrics.tls"),
    # A value given by an alias is reported where the alias is used, not at
    # its anchor (the other database's line). A fixed port: two databases on
    # port 0 get two ports and do not clash (--check-config binds nothing).
    "aliased_listen": ("cert_dir: ./certs\n" + DATABASE.replace(
        "listen: 127.0.0.1:{listen}", "listen: &addr 127.0.0.1:16390") +
        "  - name: db2\n    listen: *addr\n    shards:\n      - address: 127.0.0.1:{backend}\n",
        "databases[1].listen"),
}
# The line each message must give: the line of this key in the file.
EXPECTED_LINE_OF = {
    "unknown_key": "bogus_key:",
    "bad_address": "listen:",
    "bad_min_version": "min_version:",
    "bad_cipher_string": "ciphers:",
    "self_signed_off_and_no_cert": "cert_dir:",
    "garbage_certificate": "cert_dir:",
    "client_allow_bad_entry": "- \"host:web-1\"",
    "admin_user_plain_password": "password_hash:",
    "metrics_tls_not_boolean": "  tls: maybe",
    "aliased_listen": "listen: *addr",
}


def write(tmp_path, text: str):
    (tmp_path / "certs").mkdir(exist_ok=True)  # exists but empty
    garbage = tmp_path / "garbage"
    garbage.mkdir(exist_ok=True)
    for name in ("proxy_cert.pem", "proxy_key.pem"):
        (garbage / name).write_text("not a PEM file\n")
    path = tmp_path / "shardgate.yaml"
    # Listen addresses on port 0 (any free port); shard ports are only
    # written, never connected to by a bad config.
    for placeholder, port in (("{listen}", 0), ("{admin}", 0), ("{backend}", 7001),
                              ("{backend2}", 7002)):
        text = text.replace(placeholder, str(port))
    path.write_text(text)
    return path


def line_of(text: str, needle: str) -> int:
    """1-based line of the last line containing needle (the key under test is
    the last of its kind in every case)."""
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    assert lines, needle
    return lines[-1]


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_nonzero_naming_the_key(tmp_path, case):
    text, must_name = BAD_CONFIGS[case]
    config = write(tmp_path, text)
    for args in (["--config", config, "--check-config"], ["--config", config]):
        result = run_shardgate(args)
        message = result.stdout + result.stderr
        assert result.returncode > 0, f"{args}: exit {result.returncode}\n{message}"
        assert must_name in message, f"{args}: message does not name {must_name!r}:\n{message}"
        where = re.search(re.escape(str(config)) + r":(\d+):", message)
        assert where, f"{args}: message lacks {config}:LINE:\n{message}"
        if case in EXPECTED_LINE_OF:
            expected = line_of(config.read_text(), EXPECTED_LINE_OF[case])
            assert int(where.group(1)) == expected, f"{args}: line {where.group(1)}, " \
                f"expected {expected}:\n{message}"


def test_valid_config_check_config_exits_zero(tmp_path):
    config = write(tmp_path, "cert_dir: ./certs\n" + DATABASE)
    result = run_shardgate(["--config", config, "--check-config"])
    assert result.returncode == 0, result.stdout + result.stderr



def test_listen_address_in_use_names_file_line_and_key(tmp_path):
    """The start error met most often, a port another process holds, reads
    FILE:LINE: key: problem like the validator's own errors, with the line of
    the database's listen key (the second database here)."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write(tmp_path, "cert_dir: ./certs\n" + DATABASE + (
            "  - name: db2\n"
            "    tls: false\n"
            f"    listen: 127.0.0.1:{port}\n"
            "    shards:\n"
            "      - address: 127.0.0.1:{backend}\n"))
        result = run_shardgate(["--config", config])
        message = result.stdout + result.stderr
        assert result.returncode > 0, message
        line = line_of(config.read_text(), f"listen: 127.0.0.1:{port}")
        assert f"{config}:{line}: databases[1].listen: 127.0.0.1:{port}: cannot bind: " \
               "Address already in use" in message, message
    finally:
        taken.close()
