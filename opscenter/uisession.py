"""Dashboard sessions: the admin token is traded once, at the login form, for a signed cookie value
(EXPIRY.NONCE.HMAC), so the token itself never travels again, and never in a URL.

The signing key is derived from the admin token: changing the token (restarting joey-ops with another) ends
every session, and every replica started with the same token accepts the others' sessions.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

COOKIE = "joey_ops_session"
TTL_S = 12 * 3600


class Sessions:
    def __init__(self, admin_token: str, clock: Callable[[], float]):
        self._digest = hashlib.sha256(admin_token.encode()).digest()
        self._key = hmac.new(self._digest, b"joey-ops dashboard session v1", hashlib.sha256).digest()
        self._clock = clock

    def token_matches(self, presented: str) -> bool:
        # Compared as digests, as the API compares bearer tokens: no timing hint of the token's length.
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self._digest)

    def issue(self) -> str:
        body = f"{int(self._clock()) + TTL_S}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac(body)}"

    def valid(self, value: str | None) -> bool:
        expiry, _, rest = (value or "").partition(".")
        nonce, _, mac = rest.partition(".")
        if not (expiry.isdigit() and nonce and mac):
            return False
        return hmac.compare_digest(mac, self._mac(f"{expiry}.{nonce}")) and int(expiry) > self._clock()

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
