"""End-user tokens (kit.user_tokens): what verifies, what is refused, and rotation of both halves."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devkit.pki import user_token_keys, write_atomically
from kit.errors import Unauthenticated
from kit.identity import Identity
from kit.user_tokens import UserTokenSigner, UserTokenVerifier

ALICE = Identity(user_id="alice", role="user", status="active")


def pair(directory: Path) -> tuple[UserTokenSigner, UserTokenVerifier, Path, Path]:
    signing, public = user_token_keys(directory)
    return UserTokenSigner.from_file(signing), UserTokenVerifier(public), signing, public


def code(verifier: UserTokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(token)
    return refused.value.code


def test_a_token_carries_its_user_and_nothing_else_verifies(tmp_path: Path) -> None:
    signer, verifier, _, _ = pair(tmp_path / "a")
    stranger, _, _, _ = pair(tmp_path / "b")
    assert verifier.verify(signer.mint(ALICE)) == ALICE
    assert code(verifier, stranger.mint(ALICE)) == "invalid_user_token"
    assert code(verifier, signer.mint(ALICE, now=time.time() - 600)) == "user_token_expired"
    assert code(verifier, signer.mint(ALICE, audience="atelier-api")) == "invalid_user_token"
    token = signer.mint(ALICE)
    assert (
        code(verifier, token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
        == "invalid_user_token"
    )
    assert code(verifier, "not a token") == "invalid_user_token"


def test_the_signing_key_rotates_in_three_steps_without_a_restart(tmp_path: Path) -> None:
    signer, verifier, signing, public = pair(tmp_path / "live")
    _, _, new_signing, new_public = pair(tmp_path / "next")
    retired = UserTokenSigner.from_file(write_copy(signing, tmp_path / "retired.pem"))
    # 1. Services learn the new public key next to the old one.
    write_atomically(public, public.read_bytes() + new_public.read_bytes(), 0o644)
    # 2. The gateway signs with the new key (it follows its file).
    write_atomically(signing, new_signing.read_bytes())
    signer.RELOAD_SECONDS = 0.0
    old_kid = signer.kid
    token = signer.mint(ALICE)
    assert signer.kid != old_kid
    time.sleep(1.1)  # the verifier looks at its file again at most once a second, for an unknown key
    assert verifier.verify(token) == ALICE
    assert verifier.verify(retired.mint(ALICE)) == ALICE  # tokens in flight still verify
    # 3. After a TTL the old public key goes; what it signed no longer verifies, the new one's does.
    write_atomically(public, new_public.read_bytes(), 0o644)
    verifier = UserTokenVerifier(public)
    assert code(verifier, retired.mint(ALICE)) == "invalid_user_token"
    assert verifier.verify(signer.mint(ALICE)) == ALICE


def write_copy(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes())
    return target
