"""Who is asking: the principal a bearer token stands for, and the one rule of acting for a person.

A person's token acts for that person only, whatever a request names; the
operator token (SOULPRINT_ADMIN_TOKEN) acts for the person a request names,
and must name one. Every entry point (HTTP, MCP, CLI) asks ``acting_for``
instead of reading a user from the request itself.
"""

from __future__ import annotations

from dataclasses import dataclass


class AccessDenied(Exception):
    """The principal may not act for the person asked for (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    user_id: str | None  # the person a token is bound to; None for the operator token
    admin: bool = False
    token_id: str | None = None

    def acting_for(self, requested: str | None) -> str:
        """The person this request reads: the token's own, or (operator) the one it names."""
        if self.admin:
            if not requested:
                raise AccessDenied("the operator token must name the person to act for (user)")
            return requested
        if self.user_id is None:
            raise AccessDenied("this token is bound to no person")
        if requested and requested != self.user_id:
            raise AccessDenied("this token may only read its own person's data")
        return self.user_id
