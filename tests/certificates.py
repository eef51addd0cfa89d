"""Real certificates for the TLS tests, made by the ``openssl`` command in a temporary directory:
a CA, a server certificate for 127.0.0.1 signed by it, a client certificate signed by it, and a
client certificate from a CA the server does not know. EC P-256 keys, so making them is quick."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

OPENSSL = shutil.which("openssl")

CA_EXTENSIONS = (
    "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n"
)
LEAF_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
)


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Pair
    server: Pair
    client: Pair
    stranger: Pair  # a client certificate from another CA


def _openssl(*args: str | Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Pair:
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    extensions = directory / f"{name}.ext"
    extensions.write_text(CA_EXTENSIONS)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", pair.key)
    csr = directory / f"{name}.csr"
    _openssl("req", "-new", "-key", pair.key, "-subj", f"/CN={name}", "-out", csr)
    _openssl(
        "x509", "-req", "-in", csr, "-signkey", pair.key, "-days", "2", "-extfile", extensions,
        "-out", pair.cert,
    )  # fmt: skip
    return pair


def make_leaf(directory: Path, name: str, ca: Pair, usage: str, san: str) -> Pair:
    """A certificate for ``name`` signed by ``ca``: ``usage`` serverAuth or clientAuth."""
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    extensions = directory / f"{name}.ext"
    extensions.write_text(f"{LEAF_EXTENSIONS}extendedKeyUsage={usage}\nsubjectAltName={san}\n")
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", pair.key)
    csr = directory / f"{name}.csr"
    _openssl("req", "-new", "-key", pair.key, "-subj", f"/CN={name}", "-out", csr)
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
        "-days", "2", "-extfile", extensions, "-out", pair.cert,
    )  # fmt: skip
    return pair


def make_server_cert(directory: Path, ca: Pair, name: str = "server") -> Pair:
    return make_leaf(directory, name, ca, "serverAuth", "IP:127.0.0.1,DNS:localhost")


def make_pki(directory: Path) -> Pki:
    if OPENSSL is None:
        pytest.skip("the openssl command is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory, "ca")
    other = make_ca(directory, "other-ca")
    return Pki(
        ca=ca,
        server=make_server_cert(directory, ca),
        client=make_leaf(directory, "client", ca, "clientAuth", "DNS:prometheus.example"),
        stranger=make_leaf(directory, "stranger", other, "clientAuth", "DNS:stranger.example"),
    )


def encrypted_key(directory: Path, pair: Pair) -> Path:
    """``pair``'s key under a passphrase, as ``openssl ec -aes256`` writes it."""
    path = directory / f"{pair.key.stem}-encrypted.key"
    _openssl("ec", "-in", pair.key, "-aes256", "-passout", "pass:passphrase", "-out", path)
    return path
