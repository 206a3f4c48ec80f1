"""Tenant names: slug validation and the database / role names derived from a slug.

Every identifier built here is later quoted with psycopg.sql.Identifier; the names are
kept under PostgreSQL's 63-byte limit, beyond which it silently truncates (and collides).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import re
from dataclasses import dataclass

from ontrackio.core.errors import InvalidArgument

# A DNS label (it becomes <slug>.<base domain>): 2 to 31 characters, no trailing hyphen.
SLUG_RE = re.compile(r"[a-z][a-z0-9-]{0,29}[a-z0-9]\Z")
MAX_IDENTIFIER = 63

current_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_tenant", default=None
)


class InvalidSlug(InvalidArgument):
    """The tenant slug is not a valid slug."""


def validate_slug(slug: object) -> str:
    """Return `slug` if it is a valid tenant slug, else raise InvalidSlug."""
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise InvalidSlug(
            "tenant slug must be 2-31 characters of a-z, 0-9 and -, start with a"
            " letter and not end with -"
        )
    return slug


@dataclass(frozen=True)
class Names:
    """The PostgreSQL names one deployment uses for one service.

    Tenant databases and their login roles share a name: ``<deployment>_<service>_<slug>``.
    A double underscore cannot occur in a slug, so ``__template`` and ``__control`` never
    collide with a tenant.
    """

    deployment: str
    service: str

    def _name(self, suffix: str) -> str:
        name = f"{self.deployment}_{self.service}_{suffix}"
        if len(name.encode()) > MAX_IDENTIFIER:
            raise InvalidSlug(f"name {name!r} would exceed {MAX_IDENTIFIER} bytes")
        return name

    def tenant_database(self, slug: str) -> str:
        return self._name(validate_slug(slug))

    def tenant_role(self, slug: str) -> str:
        return self._name(validate_slug(slug))

    @property
    def template_database(self) -> str:
        return self._name("_template")

    @property
    def template_role(self) -> str:
        """Owns the template's objects; REASSIGN OWNED hands them to the tenant role."""
        return self._name("_template")

    @property
    def control_database(self) -> str:
        return self._name("_control")

    @property
    def control_role(self) -> str:
        return self._name("_control")

    def owned_prefix(self) -> str:
        """LIKE pattern of every database/role of this deployment and service."""
        return f"{self.deployment}\\_{self.service}\\_%"


def role_password(secret: str, role: str) -> str:
    """The login password of a role, derived so that none is stored anywhere."""
    return hmac.new(secret.encode(), role.encode(), hashlib.sha256).hexdigest()
