"""Webhook authenticity shared by several providers: Standard Webhooks (Svix, Supabase hooks).

Verification reads the raw body bytes exactly as delivered, never re-serialized JSON. Every failure,
whatever its cause (missing header, stale timestamp, malformed signature list, a library exception
type we did not foresee), becomes `SignatureInvalid`, which the receivers answer with 401. The
`cause` it carries is for a debug log only and never contains a secret.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from standardwebhooks.webhooks import Webhook

from service.providers.fields import MAX_ID_LENGTH

STANDARD_WEBHOOKS_TOLERANCE_S = 5 * 60

# Svix and Standard Webhooks send whole Unix seconds; anything else is refused rather than rounded
# (the library would floor "1614265330.9" and sign a timestamp the header does not contain).
_SECONDS = re.compile(r"[0-9]{1,12}")


class SignatureInvalid(Exception):
    """The delivery is not provably from the provider (→ 401)."""

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(cause)


def split_secrets(value: str) -> list[str]:
    """Split a space-separated secrets setting (rotation: old and new side by side)."""
    return value.split()


def is_standard_webhooks_secret(secret: str) -> bool:
    """True for `whsec_…` or Supabase's dashboard form `v1,whsec_…`."""
    return secret.startswith(("whsec_", "v1,whsec_"))


def lowered(headers: Mapping[str, str]) -> dict[str, str]:
    # Starlette's Headers are case-insensitive already, but a plain dict (tests, scripts) is not.
    return {str(key).lower(): value for key, value in headers.items()}


def _header_signatures(value: str) -> Iterator[bytes]:
    """Decode the v1 entries of a Standard Webhooks signature header; skip any other entry.

    Svix separates entries with a space; Supabase's sender with ", ". Splitting on whitespace and
    dropping one trailing comma per token reads both. An entry that is not `v1,<base64>` is
    skipped (other versions may appear in future), so a header of only such entries matches nothing.
    """
    for token in value.split():
        entry = token.removesuffix(",")
        version, sep, encoded = entry.partition(",")
        if not sep or version != "v1":
            continue
        try:
            yield base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue


def _webhook_for(secret: str) -> Webhook:
    # Supabase shows the secret as `v1,whsec_…`; passing it whole silently yields a wrong key.
    return Webhook(secret.removeprefix("v1,"))


def verify_standard_webhooks(
    msg_id: str | None,
    timestamp: str | None,
    signature_header: str | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    names: tuple[str, str, str] = ("webhook-id", "webhook-timestamp", "webhook-signature"),
) -> str:
    """Verify one Standard Webhooks delivery against any of `secrets`; return the message id.

    The `standardwebhooks` package computes the signature (key decoding, the signed content
    `id.timestamp.body`), but its `verify()` reads the wall clock and splits the signature list
    only on single spaces. So the timestamp window (checked against an injectable `now`, for
    frozen-clock tests) and the header parsing are done here, and the comparison is constant-time.
    """
    id_name, ts_name, sig_name = names
    if not msg_id:
        raise SignatureInvalid(f"missing {id_name}")
    if not timestamp:
        raise SignatureInvalid(f"missing {ts_name}")
    if not signature_header:
        raise SignatureInvalid(f"missing {sig_name}")
    if len(msg_id) > MAX_ID_LENGTH or not (msg_id.isascii() and msg_id.isprintable()):
        # It becomes the de-duplication key; providers send short ASCII ids (`msg_…`, UUIDs).
        raise SignatureInvalid(f"{id_name} is not a short printable ASCII id")
    if not secrets:
        raise SignatureInvalid("no webhook secret configured")
    if not _SECONDS.fullmatch(timestamp):
        raise SignatureInvalid(f"{ts_name} is not whole Unix seconds")
    sent_at = int(timestamp)
    current = time.time() if now is None else now
    if not math.isfinite(current):
        # NaN compares false both ways and would silently disable the window.
        raise SignatureInvalid("clock is not finite")
    if sent_at < current - STANDARD_WEBHOOKS_TOLERANCE_S:
        raise SignatureInvalid(f"{ts_name} too old")
    if sent_at > current + STANDARD_WEBHOOKS_TOLERANCE_S:
        raise SignatureInvalid(f"{ts_name} too new")

    offered = list(_header_signatures(signature_header))
    if not offered:
        raise SignatureInvalid(f"{sig_name} holds no well-formed v1 signature")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # The library signs text; a body that is not UTF-8 cannot be what the provider signed.
        raise SignatureInvalid("body is not UTF-8") from None
    signed_at = datetime.fromtimestamp(sent_at, tz=UTC)

    for index, secret in enumerate(secrets):
        try:
            expected = base64.b64decode(_webhook_for(secret).sign(msg_id, signed_at, text).split(",", 1)[1])
        except Exception as exc:
            # A broken secret is our misconfiguration, but failing closed (401, provider retries)
            # beats a 500; the log names which secret, never its value.
            raise SignatureInvalid(
                f"configured secret #{index + 1} is unusable ({type(exc).__name__})"
            ) from None
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return msg_id
    raise SignatureInvalid("no matching signature")


P = ParamSpec("P")
R = TypeVar("R")


def verification(func: Callable[P, R]) -> Callable[P, R]:
    """Belt and braces: nothing a hostile request can trigger escapes a verifier as anything but
    SignatureInvalid (a 401), never a 500."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except SignatureInvalid:
            raise
        except Exception as exc:
            raise SignatureInvalid(f"verification error ({type(exc).__name__})") from None

    return wrapper
