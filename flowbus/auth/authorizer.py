"""Authorization: roles of rules and named RUN permissions, and namespaces.

A role is a list of :class:`Rule` (an endpoint glob, methods, namespace globs, ``deny``) and of
RUN permissions it grants (globs). A call is allowed when one of the caller's roles has a rule
that allows it and none denies it; a namespace-limited caller is kept to its namespaces.
:class:`RoleAuthorizer` answers from memory (the roles the auth state keeps current) and
remembers what it allowed until a role changes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowbus.auth.base import Identity
from flowbus.auth.names import (
    AUTH_APIKEYS as APIKEYS,
    AUTH_ROLES as ROLES,
    AUTH_TOKENS as TOKENS,
    AUTH_USERS as USERS,
    NAME,
)
from flowbus.errors import InvalidData, PermissionDenied

__all__ = [
    "ALL_METHODS",
    "BUILTIN_ROLES",
    "READ_METHODS",
    "WHOAMI",
    "Role",
    "RoleAuthorizer",
    "Rule",
    "check_namespaces",
    "describe_role",
    "is_admin",
    "role_from",
]

ALL_METHODS = ("LIST", "OPEN", "CREATE", "UPDATE", "DELETE", "INDEX", "RUN")
READ_METHODS = ("LIST", "OPEN", "INDEX")
_ADMIN_ONLY = (USERS, ROLES)
# Tokens and API keys are kept outside namespaces: a namespace-limited user still logs out,
# refreshes its token and manages its own API keys, in the default namespace.
_OUTSIDE_NAMESPACES = frozenset({TOKENS, APIKEYS})
_REMEMBERED = 100_000
"""At most this many allowed calls are remembered (then forgotten all at once)."""


@dataclass(slots=True, frozen=True)
class Rule:
    """Allows (or, with ``deny``, forbids) ``methods`` on endpoints matching ``endpoints`` (a glob)
    in namespaces matching one of ``namespaces`` (globs; None means every namespace)."""

    endpoints: str
    methods: frozenset[str]
    namespaces: tuple[str, ...] | None = None
    deny: bool = False

    def matches(self, method: str, endpoint: str, namespace: str) -> bool:
        if method not in self.methods or not fnmatch.fnmatchcase(endpoint, self.endpoints):
            return False
        return self.namespaces is None or any(fnmatch.fnmatchcase(namespace, ns) for ns in self.namespaces)

    @classmethod
    def parse(cls, raw: Any) -> Rule:
        """Read a rule from its stored form; raise InvalidData if it is malformed."""
        if not isinstance(raw, dict) or not isinstance(raw.get("endpoints"), str):
            raise InvalidData("A rule is {endpoints: glob, methods: [...], namespaces: [...]}", field="rules")
        methods = raw.get("methods", list(ALL_METHODS))
        if not isinstance(methods, list) or not set(map(str.upper, methods)) <= set(ALL_METHODS) | {"*"}:
            raise InvalidData(f"Rule methods must be among {', '.join(ALL_METHODS)}", field="rules")
        upper = {m.upper() for m in methods}
        namespaces = raw.get("namespaces")
        if namespaces is not None and check_namespaces(namespaces) is None:
            raise InvalidData("Rule namespaces must be a list of strings", field="rules")
        return cls(
            raw["endpoints"],
            frozenset(ALL_METHODS) if "*" in upper else frozenset(upper),
            None if namespaces is None else tuple(namespaces),
            bool(raw.get("deny", False)),
        )


@dataclass(slots=True, frozen=True)
class Role:
    """A named set of rules and of RUN permissions (globs) it grants."""

    name: str
    rules: tuple[Rule, ...]
    permissions: tuple[str, ...] = ()

    def allows(self, method: str, endpoint: str, namespace: str) -> bool | None:
        """True if a rule allows it, False if one denies it, None if no rule speaks of it."""
        allowed: bool | None = None
        for rule in self.rules:
            if rule.matches(method, endpoint, namespace):
                if rule.deny:
                    return False
                allowed = True
        return allowed

    def grants(self, permission: str) -> bool:
        return any(fnmatch.fnmatchcase(permission, granted) for granted in self.permissions)


_SELF_SERVICE = Rule(TOKENS, frozenset({"DELETE", "RUN"}))
WHOAMI = "system/whoami"
"""The built-in endpoint that tells callers who they are and what they may call (a GUI asks it
before it shows anything), open to every built-in role."""
BUILTIN_ROLES: dict[str, Role] = {
    "admin": Role("admin", (Rule("*", frozenset(ALL_METHODS)),), ("*",)),
    "operator": Role(
        "operator",
        (
            Rule("*", frozenset(ALL_METHODS)),
            *(Rule(e, frozenset(ALL_METHODS), deny=True) for e in _ADMIN_ONLY),
        ),
    ),
    "viewer": Role(
        "viewer",
        (
            Rule("*", frozenset(READ_METHODS)),
            _SELF_SERVICE,
            Rule(WHOAMI, frozenset({"RUN"})),
            *(Rule(e, frozenset(ALL_METHODS), deny=True) for e in [*_ADMIN_ONLY, APIKEYS]),
        ),
    ),
}


def role_from(raw: dict[str, Any]) -> Role:
    """Read a role from its stored form ``{"id", "rules", "permissions"}``; raise InvalidData if it
    is malformed."""
    name, rules, permissions = raw.get("id"), raw.get("rules", []), raw.get("permissions", [])
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidData("A role needs an 'id' (its name)", field="id")
    if not isinstance(rules, list):
        raise InvalidData("'rules' must be a list", field="rules")
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise InvalidData("'permissions' must be a list of strings", field="permissions")
    return Role(name, tuple(Rule.parse(r) for r in rules), tuple(permissions))


def describe_role(role: Role) -> dict[str, Any]:
    """A role as LIST and OPEN of ``auth/role`` show it."""
    rules = [
        {
            "endpoints": r.endpoints,
            "methods": sorted(r.methods, key=ALL_METHODS.index),
            "namespaces": None if r.namespaces is None else list(r.namespaces),
            "deny": r.deny,
        }
        for r in role.rules
    ]
    return {
        "id": role.name,
        "builtin": role.name in BUILTIN_ROLES,
        "rules": rules,
        "permissions": list(role.permissions),
    }


def check_namespaces(namespaces: Any) -> list[str] | None:
    """``namespaces`` if it is a list of namespace names or None (all); else raise InvalidData."""
    if namespaces is None:
        return None
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise InvalidData("'namespaces' must be a list of namespace names, or null for all", field="namespaces")
    return namespaces


def is_admin(identity: Identity) -> bool:
    """Whether ``identity`` may act on other users' tokens and API keys: an admin not limited to
    namespaces (a limited one could otherwise take a key of an unlimited user)."""
    return "admin" in identity.roles and identity.namespaces is None


class RoleAuthorizer:
    """The bus's :class:`~flowbus.auth.base.Authorizer`: decides from the caller's roles.

    Args:
        roles: the roles by name, kept current by their owner (the auth state); whoever changes
            them calls :meth:`forget`.
    """

    def __init__(self, roles: Mapping[str, Role]) -> None:
        self.roles = roles
        # The calls authorize() has allowed, by (roles, namespaces, method, endpoint, namespace,
        # permission): a repeated call is one set lookup.
        self._allowed: set[tuple[Any, ...]] = set()

    def forget(self) -> None:
        """Forget the calls allowed so far (a role changed)."""
        self._allowed.clear()

    def authorize(
        self, identity: Identity, method: str, endpoint: str, namespace: str, permission: str | None = None
    ) -> None:
        key = (identity.roles, identity.namespaces, method, endpoint, namespace, permission)
        if key in self._allowed:
            return
        self._check(identity, method, endpoint, namespace, permission)
        if len(self._allowed) >= _REMEMBERED:
            self._allowed.clear()
        self._allowed.add(key)

    def _check(self, identity: Identity, method: str, endpoint: str, namespace: str, permission: str | None) -> None:
        if identity.namespaces is not None and endpoint in _ADMIN_ONLY:
            # Users and roles belong to no namespace: managing them could lift the limit itself.
            raise PermissionDenied(f"{identity.subject} is limited to namespaces: users and roles are not theirs")
        limited = identity.namespaces is not None and namespace not in identity.namespaces
        if limited and not (namespace == "" and endpoint in _OUTSIDE_NAMESPACES):
            raise PermissionDenied(f"{identity.subject} may not use namespace {namespace!r}")
        roles = self.roles
        verdicts = [roles[r].allows(method, endpoint, namespace) for r in identity.roles if r in roles]
        if False in verdicts or True not in verdicts:
            raise PermissionDenied(f"{identity.subject} may not {method} {endpoint}")
        if permission is not None and not any(roles[r].grants(permission) for r in identity.roles if r in roles):
            raise PermissionDenied(f"{identity.subject} lacks the permission {permission!r}")
