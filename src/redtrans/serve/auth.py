"""Who is calling, and may they: API keys, checked by sha256 digest. Rate limits are `ratelimit`'s; the client's
address behind trusted proxies, the Host allow-list, the per-client connection cap and the throttle on wrong keys
are `redtrans.webguard`'s, shared with the annotation app."""

from __future__ import annotations

import hmac

from redtrans.serve.config import hash_key
from redtrans.serve.errors import ServiceError

_SCHEMES = frozenset({"bearer", "deepl-auth-key"})
"""`Authorization` schemes that carry an API key: OpenAI's (and ours) and DeepL's."""


class Authenticator:
    """API keys checked by their sha256 digest; the plain key is never stored."""

    def __init__(self, digests: dict[str, str]) -> None:
        self._digests = digests  # digest → key name

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    @staticmethod
    def presented_key(authorization: str | None, api_key: str | None) -> str | None:
        if api_key is not None:
            return api_key
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() in _SCHEMES:
                return value.strip()
        return None

    def identify(
        self,
        authorization: str | None,
        api_key: str | None,
        client: str | None,
        body_key: str | None = None,
        how: str = "`Authorization: Bearer KEY` or `X-API-Key: KEY`",
    ) -> str:
        """The caller's name for logs and rate limits; raises 401 when keys are required and this one is bad.
        `body_key`: a key sent in the request body (LibreTranslate's `api_key` field), used when no header has one;
        `how`: how the route's API sends a key, for the message."""
        if not self.enabled:
            return f"client:{client or 'unknown'}"
        key = self.presented_key(authorization, api_key) or body_key
        headers = {"WWW-Authenticate": "Bearer"}
        if not key:
            raise ServiceError(401, "missing_api_key", f"send an API key: {how}", None, headers)
        digest = hash_key(key)
        name = next((n for d, n in self._digests.items() if hmac.compare_digest(d, digest)), None)
        if name is None:
            raise ServiceError(
                401, "invalid_api_key", f"the API key is not valid (keys are sent as {how})", None, headers
            )
        return f"key:{name}"
