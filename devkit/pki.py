"""A local certificate authority for one-machine stacks: what cert-manager does in Kubernetes.

`Authority.load_or_create(home / "pki")` keeps one CA (`ca.crt`, `ca.key`); `issue(workload, directory)`
writes a workload's `ca.crt`, `tls.crt` and `tls.key` (cert-manager's Secret layout, so `kit.tls` reads
them the same way in both places). A workload certificate names the workload twice: as the URI SAN
`spiffe://atelier/<workload>`, which servers read as the caller's identity (`kit.tls.peer_workload`), and
as a DNS SAN, which clients check against the service they dialled. Each file is replaced by a rename, so
a process that re-reads them sees the old set or the new one; `kit.tls` also refuses a key that does not
match its certificate, so a half-written rotation is never loaded.

`user_token_keys(directory)` makes the gateway's Ed25519 key pair for end-user tokens (`kit.user_tokens`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kit.access import WORKLOADS
from kit.tls import spiffe_id

CA_DAYS = 3650
LEAF_DAYS = 90
# A certificate is issued again when less than this is left (cert-manager's default renewBefore is a third).
RENEW_BEFORE = dt.timedelta(days=30)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` by a rename: a reader sees the old content or the new, never part of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.chmod(mode)
    os.replace(partial, path)


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, name: str = "Atelier local CA", days: int = CA_DAYS) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @classmethod
    def load_or_create(cls, directory: Path) -> Authority:
        cert_path, key_path = directory / "ca.crt", directory / "ca.key"
        if cert_path.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        authority = cls.create()
        write_atomically(key_path, _pem_key(authority.key))
        write_atomically(cert_path, authority.pem, 0o644)
        return authority

    @property
    def pem(self) -> bytes:
        return _pem_cert(self.certificate)

    def sign(
        self, workload: str, *, days: int = LEAF_DAYS, not_before: dt.datetime | None = None
    ) -> tuple[bytes, bytes]:
        """A new key and certificate for `workload`, as PEM (key, certificate)."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or _now() - dt.timedelta(minutes=5)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, workload)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(spiffe_id(workload)),
                        x509.DNSName(workload),
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return _pem_key(key), _pem_cert(certificate)

    def issue(self, workload: str, directory: Path, *, days: int = LEAF_DAYS) -> Path:
        """Write `workload`'s files into `directory` (key first: a reader refuses a mismatched pair)."""
        key, certificate = self.sign(workload, days=days)
        write_atomically(directory / "ca.crt", self.pem, 0o644)
        write_atomically(directory / "tls.key", key)
        write_atomically(directory / "tls.crt", certificate, 0o644)
        return directory

    def needs_issuing(self, directory: Path) -> bool:
        """True when the files are missing, signed by another CA, or near their end."""
        try:
            current = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
            ca = (directory / "ca.crt").read_bytes()
        except (OSError, ValueError):
            return True
        return (
            ca != self.pem
            or current.issuer != self.certificate.subject
            or current.not_valid_after_utc - _now() < RENEW_BEFORE
        )


def issue_all(pki: Path, workloads: tuple[str, ...] = WORKLOADS) -> Authority:
    """The CA under `pki` (made once) and a current certificate for every workload in `pki/<workload>/`."""
    authority = Authority.load_or_create(pki)
    for workload in workloads:
        if authority.needs_issuing(pki / workload):
            authority.issue(workload, pki / workload)
    user_token_keys(pki / "user-token")
    return authority


def user_token_keys(directory: Path) -> tuple[Path, Path]:
    """The gateway's Ed25519 pair for end-user tokens: `signing.pem` (gateway only) and `public.pem`."""
    signing, public = directory / "signing.pem", directory / "public.pem"
    if not (signing.exists() and public.exists()):
        key = ed25519.Ed25519PrivateKey.generate()
        write_atomically(signing, _pem_key(key))
        write_atomically(
            public,
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            0o644,
        )
    return signing, public
