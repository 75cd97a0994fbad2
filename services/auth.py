"""Bearer tokens to principals: the operator token from the settings, person tokens from Postgres.

The operator token is compared in constant time (hmac.compare_digest) so its
bytes cannot be guessed from response times; person tokens are looked up by
their SHA-256, never by the plaintext.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from soulprint.models.access import Principal

if TYPE_CHECKING:
    from soulprint.services.db.access import Tokens


class Authenticator:
    def __init__(self, tokens: "Tokens", admin_token: str | None) -> None:
        self.tokens = tokens
        self.admin_token = admin_token

    async def authenticate(self, bearer: str | None) -> Principal | None:
        """The principal behind ``bearer``; None when it is missing, unknown or revoked."""
        if not bearer:
            return None
        if self.admin_token and hmac.compare_digest(bearer.encode("utf-8"), self.admin_token.encode("utf-8")):
            return Principal(user_id=None, admin=True)
        return await self.tokens.resolve(bearer)
