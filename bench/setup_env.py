"""Environment for bench/run: Debian packages, the release build of shardgate and
the benchmark certificates. Kept apart from the measuring code so that a
re-run on a prepared machine costs only a few `dpkg -s` calls."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_DIR = REPO / "build-release"
SHARDGATE_BIN = BUILD_DIR / "shardgate"

# Package -> the system service apt may start on install. Those services would
# hold the default ports and take CPU from the run, so they are stopped at once.
PACKAGES = {
    "redis-server": "redis-server",
    "redis-tools": None,
    "stunnel4": "stunnel4",
    "haproxy": "haproxy",
    "nginx": "nginx",
    "libnginx-mod-stream": None,
    "nutcracker": "nutcracker",         # twemproxy, the shards3 workload's peer
    "python3-matplotlib": None,
    "openssl": None,
}


def _installed(pkg: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                       capture_output=True, text=True)
    return r.returncode == 0 and "install ok installed" in r.stdout


def ensure_packages() -> None:
    missing = [p for p in PACKAGES if not _installed(p)]
    if not missing:
        return
    print(f"installing: {' '.join(missing)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run(sudo + ["apt-get", "update", "-q"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                           *missing], env=env, check=True, stdout=subprocess.DEVNULL)
    for pkg in missing:
        svc = PACKAGES[pkg]
        if svc:
            # `service` works without systemd (containers); failures are harmless.
            subprocess.run(sudo + ["sh", "-c", f"service {svc} stop || true"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def build_shardgate() -> Path:
    """Release build in build-release/ (ninja is a no-op when it is up to date)."""
    if not (BUILD_DIR / "build.ninja").exists():
        subprocess.run(["meson", "setup", str(BUILD_DIR), "--buildtype=release"],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    r = subprocess.run(["ninja", "-C", str(BUILD_DIR), "shardgate", "tls_floor_server",
                        "tls_loop_floor_server"], cwd=REPO,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit("bench: shardgate release build failed")
    return SHARDGATE_BIN


def make_certs(d: Path) -> dict[str, Path]:
    """A CA, an ECDSA P-256 leaf for localhost/127.0.0.1 and a client
    certificate, via the openssl CLI.

    Every target serves this leaf so the handshake cost (one P-256 signature)
    is the same for all of them; clients verify against ca.pem."""
    d.mkdir(parents=True, exist_ok=True)

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    ossl("req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "30",
         "-subj", "/CN=shardgate bench CA", "-out", "ca.pem")
    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "leaf.key.sec1")
    # PKCS#8 so every server (stunnel, haproxy, nginx, redis, shardgate) reads it.
    ossl("pkcs8", "-topk8", "-nocrypt", "-in", "leaf.key.sec1", "-out", "leaf.key")
    ossl("req", "-new", "-key", "leaf.key", "-subj", "/CN=localhost", "-out", "leaf.csr")
    (d / "leaf.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "30", "-sha256", "-extfile", "leaf.ext",
         "-out", "leaf.pem")
    # haproxy wants certificate and key in one file.
    (d / "combined.pem").write_text((d / "leaf.pem").read_text() + (d / "leaf.key").read_text())
    # A client certificate from the same CA, for the mtls group: the bench's
    # clients present it to the targets, and the targets present it to the
    # TLS shard (which requires one, as a shard with tls-auth-clients yes does).
    ossl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "client.key.sec1")
    ossl("pkcs8", "-topk8", "-nocrypt", "-in", "client.key.sec1", "-out", "client.key")
    ossl("req", "-new", "-key", "client.key", "-subj", "/CN=bench client", "-out", "client.csr")
    (d / "client.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
    ossl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "30", "-sha256", "-extfile", "client.ext",
         "-out", "client.pem")
    (d / "client_combined.pem").write_text((d / "client.pem").read_text()
                                           + (d / "client.key").read_text())
    # shardgate reads fixed names from its cert_dir.
    sg = d / "shardgate"
    sg.mkdir(exist_ok=True)
    (sg / "proxy_cert.pem").write_text((d / "leaf.pem").read_text())
    (sg / "proxy_key.pem").write_text((d / "leaf.key").read_text())
    os.chmod(sg / "proxy_key.pem", 0o600)
    return {"ca": d / "ca.pem", "cert": d / "leaf.pem", "key": d / "leaf.key",
            "combined": d / "combined.pem", "shardgate_dir": sg,
            "client_cert": d / "client.pem", "client_key": d / "client.key",
            "client_combined": d / "client_combined.pem"}
