"""The bus's auth, put together: one component that builds and runs its parts.

- :mod:`flowbus.auth.state`: users, roles, API keys and revocations, following the change feed;
- :mod:`flowbus.auth.token_service`: issuing, revocation, the token cache, pruning;
- :mod:`flowbus.auth.authenticator`: credentials to an identity (the dispatcher's authenticator);
- :mod:`flowbus.auth.authorizer`: roles, namespaces and permissions (the dispatcher's authorizer);
- :mod:`flowbus.auth.admin`: what the auth application does (users, keys, roles, logins);
- :mod:`flowbus.auth.throttle`: failed-login limits.
"""

from __future__ import annotations

from collections.abc import Callable

from flowbus.auth.admin import Admin
from flowbus.auth.authenticator import UserAuthenticator
from flowbus.auth.authorizer import RoleAuthorizer
from flowbus.auth.base import Identity
from flowbus.auth.state import AuthState
from flowbus.auth.throttle import LoginThrottle
from flowbus.auth.token_service import PRUNE_EVERY, TokenService
from flowbus.auth.tokens import TokenIssuer
from flowbus.backplane import Backplane
from flowbus.store.base import Store

__all__ = ["AuthEngine"]


class AuthEngine:
    """The auth parts of one bus, and their lifecycle as a component of it.

    Args:
        store: where users, roles, API keys and token records live.
        issuer: signs and verifies JWTs.
        throttle: failed-login limits.
        admin_password: the password of the ``admin`` created on an empty store; None to generate one.
        backplane: where the change feed publishes the store's changes; while started, the state
            follows the auth collections' changes there (made by this process or another one
            sharing the store). Without it (``flowbus user``) the state is read once.
        prune_every: seconds between two prunings of the records of expired tokens.

    :meth:`start` follows the changes, reads the store, creates ``admin`` on an empty store and
    arms the pruning timer; :meth:`stop` undoes that and saves when API keys were last used.
    The parts are :attr:`authenticator` and :attr:`authorizer` for the dispatcher, :attr:`admin`
    for the auth application and :meth:`identity_of` for the endpoints' services.
    """

    name = "auth"

    def __init__(
        self,
        store: Store,
        issuer: TokenIssuer,
        throttle: LoginThrottle | None = None,
        *,
        admin_password: str | None = None,
        backplane: Backplane | None = None,
        prune_every: float = PRUNE_EVERY,
    ) -> None:
        self.backplane = backplane
        self.admin_password = admin_password
        self.state = AuthState(store)
        self.tokens = TokenService(store, issuer, self.state, prune_every)
        self.authorizer = RoleAuthorizer(self.state.roles)
        self.authenticator = UserAuthenticator(
            self.state, self.tokens, throttle if throttle is not None else LoginThrottle()
        )
        self.admin = Admin(self.state, self.tokens, self.authenticator)
        self.state.listen(identities=self.tokens.cache.forget, roles=self.authorizer.forget)
        self.generated_password: str | None = None
        self._unsubscribe: list[Callable[[], None]] = []

    def __repr__(self) -> str:  # the admin password stays out of logs
        return f"AuthEngine(store={self.state.store!r}, backplane={self.backplane!r})"

    async def start(self) -> None:
        """Follow the changes, read the store, create ``admin`` if needed, arm the pruning timer."""
        if self.backplane is not None:
            # Subscribed before reading: a change committed meanwhile is applied after the
            # reading, never missed.
            self._unsubscribe = self.state.follow(self.backplane)
        await self.load()
        self.generated_password = await self.admin.bootstrap(self.admin_password)
        self.tokens.start()

    async def stop(self) -> None:
        """Stop following changes and pruning; save when API keys were last used."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        await self.tokens.stop()
        await self.authenticator.stop()

    async def load(self) -> None:
        """Read users, roles, API keys and token revocations from the store (deleting the records
        of expired tokens on the way)."""
        with self.state.loading():
            await self.state.load()
            await self.tokens.load()

    def identity_of(self, subject: str) -> Identity | None:
        """The identity of user ``subject`` as it is now, or None (``Services.identify``)."""
        return self.state.identity_of(subject)
