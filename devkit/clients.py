"""Calling a one-machine stack's services directly, as one of its workloads (benches, operator tools).

A launcher stack (`devkit.launcher`) runs every gRPC connection as mutual TLS under its own CA, so a
direct caller presents a workload's certificate from the stack's PKI directory (stack.json "pki",
`<pki>/<workload>/`, written by `devkit.pki`) and checks that the server holds the certificate of the
service it dialled. For an RPC granted to the gateway on a user's behalf (`kit.access.ACCESS`), the
caller also sends the user token the gateway would mint, signed with the stack's own key
(`<pki>/user-token/signing.pem`). What each workload may call is the table's decision, not this
module's: a call outside its grants is refused as it would be from the real workload.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path

import grpc

from kit import grpc_client
from kit.identity import Identity
from kit.tls import TlsFiles
from kit.user_tokens import UserTokenSigner


class StackCaller:
    """Channels to the services at `targets` (service name → gRPC target) with the certificates under
    `pki`. One `TlsFiles` per workload, so every channel of a workload follows a rotation of its files."""

    def __init__(self, pki: Path, targets: Mapping[str, str]) -> None:
        self.pki = pki
        self.targets = dict(targets)
        self._files: dict[str, TlsFiles] = {}

    @classmethod
    def from_stack_file(cls, path: Path) -> StackCaller:
        """The caller for the stack that wrote `path` (the launcher's `<home>/stack.json`)."""
        info = json.loads(path.read_text())
        return cls(Path(info["pki"]), info["services"])

    def channel(
        self, service: str, *, workload: str, timeout: float = grpc_client.DEFAULT_TIMEOUT
    ) -> grpc.aio.Channel:
        """A channel to `service` presenting `workload`'s certificate."""
        if workload not in self._files:
            self._files[workload] = TlsFiles(self.pki / workload)
        return grpc_client.channel(
            self.targets[service], workload=workload, tls=self._files[workload], peer=service, timeout=timeout
        )

    @functools.cached_property
    def signer(self) -> UserTokenSigner:
        """The stack gateway's user-token signer (its key is read at first use)."""
        return UserTokenSigner.from_file(self.pki / "user-token" / "signing.pem")

    def user(self, identity: Identity) -> tuple[tuple[str, str], ...]:
        """The metadata the gateway sends with a call it makes for `identity`."""
        return self.signer.metadata(identity)
