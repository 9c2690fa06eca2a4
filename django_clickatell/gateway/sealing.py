"""What the shared cache may hold of one set of credentials: a fingerprint and a sealed id.

The cache is shared, so it must never hold a usable secret, and a host with a
stale password must never touch the entries of hosts with the right one.  Both
follow from one key that only someone holding ``SECRET_KEY`` *and* the password
can compute: the fingerprint that names a credentials' cache entries is derived
from it, and so are the keys that seal (encrypt, then authenticate) the session
id before it is cached.  The cryptography is the standard library's
(HMAC-SHA256, PBKDF2).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from django.views.decorators.debug import sensitive_variables

from ..protocol.redaction import Secret

#: Stretching of the credential key: a leaked SECRET_KEY plus the cache still cost an
#: attacker this many HMAC rounds per password guess.  Paid once per process.
_KEY_ITERATIONS = 100_000
_SEAL_VERSION = b"\x01"
_NONCE_BYTES = 16
_TAG_BYTES = 32


def _hmac(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(4, "big"))  # length-prefixed: no two inputs collide
        mac.update(part)
    return mac.digest()


@functools.lru_cache(maxsize=16)
@sensitive_variables()
def _credential_key(
    secret_key: str, base_url: str, api_id: str, username: str, password: Secret
) -> bytes:
    """A key only someone holding both ``SECRET_KEY`` and the password can compute."""
    salt = _hmac(
        secret_key.encode(),
        b"django_clickatell.credentials.v1",
        base_url.encode(),
        api_id.encode(),
        username.encode(),
    )
    return hashlib.pbkdf2_hmac("sha256", password.reveal().encode(), salt, _KEY_ITERATIONS)


class SessionKeys:
    """Cache-key fingerprint and session-id sealing for one set of credentials.

    * ``fingerprint``: HMAC-SHA256 (keyed with ``SECRET_KEY``, stretched with
      PBKDF2) over the base URL, API id, user and password.  It names the cache
      entries; it reveals nothing and differs whenever the password differs.
    * :meth:`seal` / :meth:`open`: encrypt-then-MAC with the standard library
      only.  The keystream is HMAC-SHA256 in counter mode over a random nonce,
      the tag an HMAC-SHA256 over version, nonce and ciphertext, both keys
      derived from the credential key.  An entry that was tampered with, written
      under other credentials or another ``SECRET_KEY``, or is not ours at all
      opens to ``None`` and counts as absent.
    """

    __slots__ = ("_encrypt_key", "_mac_key", "fingerprint")

    def __init__(
        self, *, secret_key: str, base_url: str, api_id: str, username: str, password: Secret
    ) -> None:
        root = _credential_key(secret_key, base_url, api_id, username, password)
        self.fingerprint = _hmac(root, b"fingerprint").hex()[:40]
        self._encrypt_key = _hmac(root, b"session-id encryption")
        self._mac_key = _hmac(root, b"session-id authentication")

    def __repr__(self) -> str:
        return f"<SessionKeys {self.fingerprint[:8]}…>"

    def _keystream(self, nonce: bytes, length: int) -> bytes:
        blocks = (length + 31) // 32
        return b"".join(
            _hmac(self._encrypt_key, nonce, counter.to_bytes(8, "big")) for counter in range(blocks)
        )[:length]

    def _xor(self, nonce: bytes, data: bytes) -> bytes:
        keystream = self._keystream(nonce, len(data))
        return bytes(a ^ b for a, b in zip(data, keystream, strict=True))

    def _tag(self, nonce: bytes, ciphertext: bytes) -> bytes:
        return _hmac(self._mac_key, _SEAL_VERSION, nonce, ciphertext)

    @sensitive_variables()
    def seal(self, session_id: Secret) -> bytes:
        plain = session_id.reveal().encode()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        ciphertext = self._xor(nonce, plain)
        return _SEAL_VERSION + nonce + ciphertext + self._tag(nonce, ciphertext)

    @sensitive_variables()
    def open(self, sealed: object) -> Secret | None:
        if not isinstance(sealed, bytes) or len(sealed) <= 1 + _NONCE_BYTES + _TAG_BYTES:
            return None
        if sealed[:1] != _SEAL_VERSION:
            return None
        nonce = sealed[1 : 1 + _NONCE_BYTES]
        ciphertext, tag = sealed[1 + _NONCE_BYTES : -_TAG_BYTES], sealed[-_TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(nonce, ciphertext)):
            return None
        plain = self._xor(nonce, ciphertext)
        try:
            return Secret(plain.decode("ascii"))
        except UnicodeDecodeError:
            return None
