"""mTLS for gRPC: a workload's certificate files, re-read when they change, and the caller's workload
read from its certificate.

A workload's directory holds `ca.crt`, `tls.crt` and `tls.key`: the layout of a cert-manager Secret
mounted in a pod, and of what `devkit.pki` writes for a one-machine stack. Rotation needs no restart:
servers ask `TlsFiles.reload` on each new handshake (gRPC's dynamic server credentials), clients before a
call (`kit.grpc_client` then opens a new channel); calls in flight finish on the old connection. A set
whose key does not match its certificate (caught between two writes) is not loaded: the previous set
stays until the files agree.

Identity is the certificate's URI SAN `spiffe://atelier/<workload>`, which both the launcher's CA and
cert-manager's Certificates put there; only a certificate signed by the configured CA gets that far.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger(__name__)

TRUST_DOMAIN = "atelier"
WORKLOAD_HEADER = "x-atelier-workload"
_FILES = ("ca.crt", "tls.crt", "tls.key")


def spiffe_id(workload: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/{workload}"


def _workload_of(uris: Iterable[str]) -> str | None:
    """The workload the first `spiffe://atelier/<workload>` among `uris` names."""
    prefix = spiffe_id("")
    return next((uri.removeprefix(prefix) for uri in uris if uri.startswith(prefix)), None)


def peer_workload(context: grpc.aio.ServicerContext) -> str | None:
    """The caller's workload as its verified certificate names it; None on a plaintext connection."""
    return _workload_of(bytes(value).decode() for value in context.auth_context().get("peer_spiffe_id", ()))


def certificate_workload(certificate: bytes) -> str | None:
    """The workload a PEM certificate names by its URI SAN."""
    extensions = x509.load_pem_x509_certificate(certificate).extensions
    try:
        names = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    return _workload_of(names.get_values_for_type(x509.UniformResourceIdentifier))


@dataclass(frozen=True, slots=True)
class Material:
    ca: bytes
    certificate: bytes
    key: bytes

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.ca + self.certificate + self.key).hexdigest()[:16]


def _consistent(material: Material) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(material.certificate)
        key = serialization.load_pem_private_key(material.key, password=None)
        x509.load_pem_x509_certificates(material.ca)
    except ValueError:
        return False
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(
        certificate.public_key().public_bytes(serialization.Encoding.DER, public)
        == key.public_key().public_bytes(serialization.Encoding.DER, public)
    )


class TlsFiles:
    """One workload's files. `current` is the set in use; `reload()` swaps in a changed, consistent set
    (looking at the files at most once per `check_every` seconds) and returns it, or None. A process's
    server and clients share one `TlsFiles`: each compares `current.fingerprint` with what it built on."""

    def __init__(self, directory: str | Path, *, check_every: float = 1.0) -> None:
        self.directory = Path(directory)
        self.check_every = check_every
        self._lock = threading.Lock()  # servers call `reload` from gRPC's own threads
        self._stamp = self._stat()
        self.current = self._read()
        if not _consistent(self.current):
            raise ValueError(f"{self.directory}: tls.key does not match tls.crt, or a file is not PEM")
        self._checked = time.monotonic()

    def _stat(self) -> tuple[tuple[int, int], ...]:
        stats = [(self.directory / name).stat() for name in _FILES]
        return tuple((s.st_mtime_ns, s.st_size) for s in stats)

    def _read(self) -> Material:
        ca, certificate, key = ((self.directory / name).read_bytes() for name in _FILES)
        return Material(ca, certificate, key)

    def reload(self) -> Material | None:
        with self._lock:
            now = time.monotonic()
            if now - self._checked < self.check_every:
                return None
            self._checked = now
            try:
                stamp = self._stat()
                if stamp == self._stamp:
                    return None
                material = self._read()
            except OSError as exc:  # a file replaced under us: try again at the next check
                log.warning(
                    "tls files unreadable", extra={"directory": str(self.directory), "error": str(exc)}
                )
                return None
            if material == self.current:
                self._stamp = stamp
                return None
            if not _consistent(material):
                log.warning(
                    "tls files inconsistent; keeping the current set",
                    extra={"directory": str(self.directory)},
                )
                return None
            self._stamp, self.current = stamp, material
        log.info(
            "tls files reloaded",
            extra={"directory": str(self.directory), "fingerprint": material.fingerprint},
        )
        return material

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials that demand a client certificate from this CA and follow the files as they change."""

        def configuration(material: Material) -> grpc.ServerCertificateConfiguration:
            return grpc.ssl_server_certificate_configuration(
                [(material.key, material.certificate)], material.ca
            )

        served = [self.current.fingerprint]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            self.reload()
            material = self.current
            if material.fingerprint == served[0]:
                return None
            served[0] = material.fingerprint
            return configuration(material)

        return grpc.dynamic_ssl_server_credentials(
            configuration(self.current), fetch, require_client_authentication=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        material = self.current
        return grpc.ssl_channel_credentials(material.ca, material.key, material.certificate)


@functools.cache
def files_for(directory: str) -> TlsFiles | None:
    """The process's one `TlsFiles` for `directory` (shared by its server and its clients); None for ""."""
    return TlsFiles(directory) if directory else None
