"""SHA256withRSA (PKCS#1 v1.5) and AEAD_AES_256_GCM, the primitives Alipay and WeChat Pay sign with."""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class KeyLoadError(ValueError):
    """A configured key could not be loaded."""


def _pem(text: str, kind: str) -> bytes:
    """Accept a PEM or the bare base64 body that Alipay's console hands out."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        return text.encode()
    body = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n".encode()


def load_private_key(text: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(_pem(text, "PRIVATE KEY"), password=None)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(_pem(text, "RSA PRIVATE KEY"), password=None)
        except ValueError as exc:
            raise KeyLoadError("not an RSA private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyLoadError("not an RSA private key")
    return key


def load_public_key(text: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(_pem(text, "PUBLIC KEY"))
    except ValueError as exc:
        raise KeyLoadError("not an RSA public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyLoadError("not an RSA public key")
    return key


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """Base64 of the SHA256withRSA (PKCS#1 v1.5) signature."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def aes_gcm_decrypt(key: bytes, nonce: str, ciphertext_b64: str, associated_data: str) -> bytes | None:
    """WeChat Pay's AEAD_AES_256_GCM: base64 ciphertext with the 16-byte tag appended; None on failure."""
    try:
        data = base64.b64decode(ciphertext_b64, validate=True)
        return AESGCM(key).decrypt(nonce.encode(), data, associated_data.encode() or None)
    except (binascii.Error, ValueError, InvalidTag):
        return None
