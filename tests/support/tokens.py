"""Person tokens in memory, of the same contract as services/db/access.Tokens.resolve, counting lookups.

For tests of what sits in front of authentication (the rate limit, the
metrics route) without a database; services/auth.Authenticator is the real one.
"""

from __future__ import annotations

from soulprint.models.access import Principal

ALICE, BOB = "sp_00000000000000a1_alice-secret", "sp_00000000000000b0_bob-secret"


class TokenTable:
    def __init__(self) -> None:
        self.rows = {ALICE: Principal(user_id="alice", token_id="00000000000000a1"),
                     BOB: Principal(user_id="bob", token_id="00000000000000b0")}
        self.lookups = 0

    async def resolve(self, plaintext: str) -> Principal | None:
        self.lookups += 1
        return self.rows.get(plaintext)
