"""A throwaway certificate authority made with the `openssl` CLI, for the
rotation tests and bench/rotation_soak.

One CA per test directory; every leaf it issues is EC P-256 with SANs
DNS:localhost and IP:127.0.0.1, an explicit serial, and explicit validity
dates (`openssl ca -startdate/-enddate`: OpenSSL 3.0's `req`/`x509` cannot set
a notBefore in the past or the future). Clients verify every rotated leaf with
the one `ca.pem`.

No pytest import here: bench/ uses this module too.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

CERT_FILE = "proxy_cert.pem"
KEY_FILE = "proxy_key.pem"
CHAIN_FILE = "chain_certs.pem"

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

_CA_CNF = """\
[ ca ]
default_ca = throwaway

[ throwaway ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no

[ anything ]
commonName = supplied
organizationName = optional

[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier = keyid:always
subjectKeyIdentifier = hash
"""


def run_openssl(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed "
                           f"({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def openssl_time(when: dt.datetime) -> str:
    """YYYYMMDDHHMMSSZ (GeneralizedTime form `openssl ca` accepts)."""
    return when.astimezone(dt.timezone.utc).strftime("%Y%m%d%H%M%SZ")


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path
    serial: str  # upper-case hex, no leading zeros, as shardgate logs it

    @property
    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    @property
    def key_pem(self) -> bytes:
        return self.key.read_bytes()


class CA:
    """A self-signed root in `directory`; issue() makes leaves under it."""

    def __init__(self, directory: Path, name: str = "shardgate rotation test CA") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "issued").mkdir(exist_ok=True)
        (self.dir / "index.txt").write_text("")
        (self.dir / "index.txt.attr").write_text("unique_subject = no\n")
        (self.dir / "ca.cnf").write_text(_CA_CNF.format(dir=self.dir))
        run_openssl("req", "-x509", *_EC, "-days", "3650", "-subj", f"/CN={name}",
                    "-keyout", "ca.key", "-out", "ca.pem",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        self.cert = self.dir / "ca.pem"
        self.key = self.dir / "ca.key"

    def issue(self, serial: int, name: str | None = None, cn: str = "localhost",
              not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None,
              sans: list[str] | None = None) -> Pair:
        """A new EC P-256 key and a leaf with this serial, valid from an hour ago
        for 90 days unless told otherwise (beyond shardgate's 30-day expiry
        warning). Files: <name>.cert.pem, <name>.key.pem. sans, as OpenSSL
        spells them ("DNS:redis.internal", "IP:127.0.0.1"), replace the
        default DNS:localhost,IP:127.0.0.1 (a shard's certificate for TLS to
        the shards)."""
        now = dt.datetime.now(dt.timezone.utc)
        not_before = not_before or now - dt.timedelta(hours=1)
        not_after = not_after or now + dt.timedelta(days=90)
        name = name or f"leaf{serial:x}"
        key, csr, cert = (self.dir / f"{name}.key.pem", self.dir / f"{name}.csr",
                          self.dir / f"{name}.cert.pem")
        run_openssl("req", "-new", *_EC, "-subj", f"/CN={cn}", "-keyout", key,
                    "-out", csr, cwd=self.dir)
        (self.dir / "serial").write_text(f"{serial:02X}\n")
        extensions = ["-extensions", "leaf"]
        if sans is not None:
            ext = self.dir / f"{name}.ext"
            ext.write_text("[ leaf_sans ]\nbasicConstraints = critical,CA:FALSE\n"
                           "keyUsage = critical,digitalSignature\n"
                           "extendedKeyUsage = serverAuth,clientAuth\n"
                           "authorityKeyIdentifier = keyid:always\n"
                           "subjectKeyIdentifier = hash\n"
                           + ("subjectAltName = " + ",".join(sans) + "\n" if sans else ""))
            extensions = ["-extfile", str(ext), "-extensions", "leaf_sans"]
        run_openssl("ca", "-config", "ca.cnf", "-batch", "-notext", "-in", csr,
                    "-out", cert, "-cert", "ca.pem", "-keyfile", "ca.key",
                    *extensions, "-startdate", openssl_time(not_before),
                    "-enddate", openssl_time(not_after), cwd=self.dir)
        return Pair(cert=cert, key=key, serial=f"{serial:X}")

    def issue_client(self, serial: int, name: str, cn: str, sans: list[str] | None = None,
                     not_before: dt.datetime | None = None,
                     not_after: dt.datetime | None = None) -> Pair:
        """A client certificate (extendedKeyUsage clientAuth) with this CN and
        SANs given as OpenSSL spells them ("DNS:app.example.com",
        "email:ops@example.com", "URI:spiffe://example.org/ns/prod/sa/app").
        Past dates make an expired one."""
        return self._issue_with(serial, name, cn, sans, "clientAuth", not_before, not_after)

    def issue_server(self, serial: int, name: str, cn: str, sans: list[str] | None = None,
                     not_before: dt.datetime | None = None,
                     not_after: dt.datetime | None = None) -> Pair:
        """A server certificate (extendedKeyUsage serverAuth) with exactly these
        SANs, e.g. ["IP:127.0.0.1"] or ["DNS:redis.internal"]: a redis-server's
        certificate whose names the tests choose (issue() always has both
        DNS:localhost and IP:127.0.0.1)."""
        return self._issue_with(serial, name, cn, sans, "serverAuth", not_before, not_after)

    def _issue_with(self, serial: int, name: str, cn: str, sans: list[str] | None, eku: str,
                    not_before: dt.datetime | None, not_after: dt.datetime | None) -> Pair:
        now = dt.datetime.now(dt.timezone.utc)
        not_before = not_before or now - dt.timedelta(hours=1)
        not_after = not_after or now + dt.timedelta(days=90)
        key, csr, cert = (self.dir / f"{name}.key.pem", self.dir / f"{name}.csr",
                          self.dir / f"{name}.cert.pem")
        ext = self.dir / f"{name}.ext"
        lines = ["[ client ]", "basicConstraints = critical,CA:FALSE",
                 "keyUsage = critical,digitalSignature", f"extendedKeyUsage = {eku}",
                 "authorityKeyIdentifier = keyid:always", "subjectKeyIdentifier = hash"]
        if sans:
            lines.append("subjectAltName = " + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        run_openssl("req", "-new", *_EC, "-subj", f"/CN={cn}", "-keyout", key,
                    "-out", csr, cwd=self.dir)
        (self.dir / "serial").write_text(f"{serial:02X}\n")
        run_openssl("ca", "-config", "ca.cnf", "-batch", "-notext", "-in", csr,
                    "-out", cert, "-cert", "ca.pem", "-keyfile", "ca.key",
                    "-extfile", ext, "-extensions", "client", "-startdate", openssl_time(not_before),
                    "-enddate", openssl_time(not_after), cwd=self.dir)
        return Pair(cert=cert, key=key, serial=f"{serial:X}")

    def revoke(self, pair: Pair) -> None:
        run_openssl("ca", "-config", "ca.cnf", "-revoke", pair.cert, "-cert", "ca.pem",
                    "-keyfile", "ca.key", cwd=self.dir)

    def crl(self, out: Path) -> Path:
        """The CA's CRL (PEM) as of now: every revoked leaf so far."""
        run_openssl("ca", "-config", "ca.cnf", "-gencrl", "-crldays", "30", "-cert", "ca.pem",
                    "-keyfile", "ca.key", "-out", out, cwd=self.dir)
        return out

    def issue_many(self, first_serial: int, count: int) -> list[Pair]:
        return [self.issue(first_serial + i) for i in range(count)]


def cert_serial(cert_pem_path: Path) -> str:
    out = run_openssl("x509", "-noout", "-serial", "-in", cert_pem_path, cwd=Path("/"))
    return out.strip().split("=", 1)[1].lstrip("0") or "0"


# ---------------------------------------------------------------- DER


def _der_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the TLV at pos."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    return tag, pos, pos + length


def der_serial(der: bytes) -> str:
    """The serial of a DER certificate (what SSLSocket.getpeercert(True) gives)
    as upper-case hex without leading zeros: Certificate ::= SEQUENCE {
    tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber INTEGER, ...}}."""
    _, cert_body, _ = _der_tlv(der, 0)
    _, tbs_body, _ = _der_tlv(der, cert_body)
    tag, start, end = _der_tlv(der, tbs_body)
    if tag == 0xA0:  # explicit version
        tag, start, end = _der_tlv(der, end)
    if tag != 0x02:
        raise ValueError(f"no serial INTEGER in certificate (tag {tag:#x})")
    return f"{int.from_bytes(der[start:end], 'big'):X}"


# ---------------------------------------------------------------- placing files


def place(src: bytes | Path, cert_dir: Path, name: str) -> None:
    """Writes to a temporary name in cert_dir, then rename()s over `name`:
    the way `mv` and tools like cert-manager replace a file (inode replaced)."""
    data = src.read_bytes() if isinstance(src, Path) else src
    tmp = cert_dir / f".{name}.tmp.{os.getpid()}"
    tmp.write_bytes(data)
    if name == KEY_FILE:
        tmp.chmod(0o600)
    os.replace(tmp, cert_dir / name)


def install_pair(pair: Pair, cert_dir: Path, key_first: bool = True) -> None:
    """Both halves, each by atomic rename, back to back."""
    if key_first:
        place(pair.key, cert_dir, KEY_FILE)
        place(pair.cert, cert_dir, CERT_FILE)
    else:
        place(pair.cert, cert_dir, CERT_FILE)
        place(pair.key, cert_dir, KEY_FILE)
