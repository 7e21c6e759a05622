"""Signed request ids: every retrieval answer carries one, and ``POST /feedback`` reads the variant, mode
and issue time back from it, on any replica, with no shared store.

An id is ``base64url(variant|mode|issued_unix_s|nonce) + "." + base64url(MAC)``, the MAC being keyed BLAKE2b
of the payload under ``feedback_secret`` (128 bits). It makes ids unforgeable without the secret; the nonce
(a per-process random prefix and a counter) makes two answers of the same second distinct. Ids are not
secret (the payload is readable), only authentic. BLAKE2b's keyed mode is its MAC construction, and
Python's own implementation signs an id without OpenSSL's per-call HMAC set-up, which cost the running
server more than the rest of issuing an id; ids signed by the earlier HMAC-SHA256 (first 128 bits) still
verify, so feedback for answers served before an upgrade is not lost.

Pure functions, no I/O: the secret and the clock are arguments.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import itertools
import logging
import secrets
from typing import NamedTuple

from app.settings import Settings

log = logging.getLogger("m2grl.app")

MAC_BYTES = 16
NONCE_BYTES = 6
#: nonces are this process's random prefix and a counter: distinct per answer without a system call
#: for randomness on every request (os.urandom cost more than the lookup's own share)
_NONCE_PREFIX = secrets.token_hex(NONCE_BYTES)
_NONCE_COUNTER = itertools.count()
#: longest id accepted before any decoding (variant names are <= 64 characters)
MAX_REQUEST_ID_CHARS = 256
SEP = "|"


class InvalidRequestId(ValueError):
    """A request id that is malformed, forged (bad MAC), from the future or too old."""


class RequestIdClaims(NamedTuple):
    """What a verified request id says: the variant and mode that served it and when (unix seconds)."""

    variant: str
    mode: str
    issued: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # validate: the lenient decoder would skip characters outside the alphabet
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


@functools.lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    """BLAKE2b's 64-byte key from a secret of any length (a configured secret may be longer)."""
    return hashlib.blake2b(secret.encode(), person=b"m2grl-request").digest()


def _mac(secret: str, payload: bytes) -> bytes:
    return hashlib.blake2b(payload, key=_key(secret), digest_size=MAC_BYTES).digest()


def _legacy_mac(secret: str, payload: bytes) -> bytes:
    """The MAC of ids issued before BLAKE2b (HMAC-SHA256, first 128 bits): still accepted."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:MAC_BYTES]


def issue_request_id(secret: str, variant: str, mode: str, now: float) -> str:
    """A fresh id naming ``variant`` and ``mode``, issued at ``int(now)``, signed with ``secret``."""
    if SEP in variant or SEP in mode:
        raise ValueError(f"variant and mode must not contain {SEP!r}: {variant!r}, {mode!r}")
    payload = f"{variant}{SEP}{mode}{SEP}{int(now)}{SEP}{_NONCE_PREFIX}{next(_NONCE_COUNTER):x}".encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def read_request_id(
    secret: str, rid: str, now: float, max_age_s: float, max_skew_s: float = 0.0
) -> RequestIdClaims:
    """Verify ``rid`` against ``secret`` and return its claims.

    Raises ``InvalidRequestId`` (one line saying why) when the id is malformed, its MAC does not match
    (forged, or signed with another secret), it was issued more than ``max_skew_s`` after ``now``, or
    more than ``max_age_s`` before it.
    """
    if len(rid) > MAX_REQUEST_ID_CHARS:
        raise InvalidRequestId(f"longer than {MAX_REQUEST_ID_CHARS} characters")
    head, dot, tail = rid.partition(".")
    if not dot or not head or not tail:
        raise InvalidRequestId("malformed (expected <payload>.<signature>)")
    try:
        payload, mac = _unb64(head), _unb64(tail)
    except (binascii.Error, ValueError):
        raise InvalidRequestId("malformed (not base64url)") from None
    # compare before parsing: nothing of an unauthenticated payload is trusted
    if not (
        hmac.compare_digest(mac, _mac(secret, payload))
        or hmac.compare_digest(mac, _legacy_mac(secret, payload))
    ):
        raise InvalidRequestId("signature does not match (forged, or issued under another feedback_secret)")
    parts = payload.decode("utf-8", errors="replace").split(SEP)
    if len(parts) != 4 or not parts[2].isdigit():
        raise InvalidRequestId("malformed payload")
    variant, mode, issued = parts[0], parts[1], int(parts[2])
    if issued > now + max_skew_s:
        raise InvalidRequestId(f"issued {issued - now:.0f} s in the future")
    if now - issued > max_age_s:
        raise InvalidRequestId(f"expired: issued {now - issued:.0f} s ago, older than {max_age_s:.0f} s")
    return RequestIdClaims(variant, mode, issued)


def with_feedback_secret(settings: Settings) -> Settings:
    """``settings`` with ``feedback_secret`` set: the configured one, else a random one and a warning
    (ids then verify only in the worker that issued them)."""
    if settings.feedback_secret is not None:
        return settings
    log.warning(
        "feedback_secret is not set: using a random one, so request ids verify only in this worker, "
        "not across workers or replicas (set M2GRL_FEEDBACK_SECRET, the same everywhere)"
    )
    return settings.model_copy(update={"feedback_secret": secrets.token_urlsafe(32)})
