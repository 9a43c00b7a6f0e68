"""Who may do what: the permission matrix, written down once.

Every API route declares the (resource, action) it performs, e.g.
``@api("POST", "/customers", allow=rule("customers", "create"))``, or that it
is ``public``; the roles a route admits are read from ``MATRIX`` here, never
written at the route. A route that declares neither fails when the gateway
is imported (gateway.http), and ``rule`` refuses a pair the matrix does not
know, so a new route cannot slip through without a decision.

This is the coarse, role-level gate the gateway applies before any service
is asked. Record-level rules (a sales person sees their own customers, a
manager their team's, a record one may not see answers 404) are the
services' and come on top.

``python -m gateway.permissions`` prints the matrix as the Markdown table the
docs/security.md carries (a unit test keeps the two equal).
"""
from dataclasses import dataclass

from crm_common.context import ROLES

ADMIN = ("admin",)
MANAGERS = ("admin", "manager")
# Roles that own and work customers and deals (gateway.users.OWNER_ROLES).
SELLERS = ("admin", "manager", "sales")
# Every role but the read-only viewer.
STAFF = ("admin", "manager", "sales", "support")
EVERYONE = ROLES

# resource -> action -> the roles admitted. Resources and actions are in the
# order the table shows them; actions named after a lifecycle step (assign,
# merge, approve, sign ...) exist where the API has a route for that step.
MATRIX = {
    "customers": {
        "read": EVERYONE, "create": SELLERS, "update": SELLERS, "delete": SELLERS, "restore": SELLERS,
        "merge": SELLERS, "assign": MANAGERS, "import": SELLERS, "export": EVERYONE,
        # A person's data rights: everything about them, and erasing it, across the services.
        "export personal data": ADMIN, "erase": ADMIN,
    },
    "custom fields": {"read": EVERYONE, "create": ADMIN},
    "contacts": {"read": EVERYONE, "create": SELLERS, "update": SELLERS, "delete": SELLERS},
    # Append-only: a wrong follow-up is corrected by logging another.
    "followups": {"read": EVERYONE, "create": SELLERS},
    # Saved views are the caller's own filters.
    "saved views": {"read": EVERYONE, "create": EVERYONE, "delete": EVERYONE},
    "imports": {"read": EVERYONE},
    "products": {"read": EVERYONE, "create": MANAGERS, "update": MANAGERS},
    "price lists": {"read": EVERYONE, "create": MANAGERS, "update": MANAGERS},
    "pipelines": {"read": EVERYONE, "create": ADMIN, "update": ADMIN},
    "opportunities": {"read": EVERYONE, "create": SELLERS, "update": SELLERS, "move stage": SELLERS},
    "quotes": {
        "read": EVERYONE, "create": SELLERS, "update": SELLERS, "send": SELLERS, "accept": SELLERS,
        "reject": SELLERS,
    },
    "orders": {
        "read": EVERYONE, "create": SELLERS, "confirm": SELLERS, "fulfil": SELLERS, "cancel": SELLERS,
    },
    "payments": {"read": EVERYONE, "create": SELLERS},
    "contracts": {
        "read": EVERYONE, "create": SELLERS, "update": SELLERS, "submit": SELLERS, "approve": MANAGERS,
        "sign": SELLERS, "terminate": SELLERS, "check expiry": ADMIN,
    },
    "contract attachments": {"read": EVERYONE, "create": SELLERS, "delete": SELLERS},
    # The notifications service refuses the viewer any change of a task (read-only role).
    "tasks": {"read": EVERYONE, "create": STAFF, "update": STAFF, "complete": STAFF, "cancel": STAFF},
    # The caller's own inbox and notification preferences.
    "notifications": {"read": EVERYONE, "update": EVERYONE},
    # The caller's own account: profile, password, sign-out.
    "own account": {"read": EVERYONE, "update": EVERYONE, "sign out": EVERYONE},
    "reports": {"read": EVERYONE},
    "report admin": {"read": ADMIN, "rebuild": ADMIN},
    "webhooks": {"read": ADMIN, "create": ADMIN, "update": ADMIN, "delete": ADMIN, "redeliver": ADMIN},
    "users": {"read": ADMIN, "create": ADMIN, "update": ADMIN},
    "api keys": {"read": ADMIN, "create": ADMIN, "delete": ADMIN},
    # The audit trail is read-only for everyone: no role may change or delete an entry.
    "audit": {"read": ADMIN},
}


@dataclass(frozen=True)
class Rule:
    """What a route does: an action on a resource."""

    resource: str
    action: str

    @property
    def roles(self):
        """The roles admitted, in the order of crm_common.context.ROLES."""
        admitted = MATRIX[self.resource][self.action]
        return tuple(role for role in ROLES if role in admitted)

    @property
    def every_role(self):
        return set(self.roles) == set(ROLES)

    def __str__(self):
        return f"{self.resource}: {self.action}"


def rule(resource, action):
    """The Rule for ``action`` on ``resource``; ValueError when the matrix has no such entry."""
    if action not in MATRIX.get(resource, {}):
        raise ValueError(f"the permission matrix has no entry for {action!r} on {resource!r}; add it to "
                         "gateway.permissions.MATRIX")
    return Rule(resource, action)


def check_matrix(matrix=MATRIX):
    """ValueError when an entry names a role that does not exist or admits nobody."""
    for resource, actions in matrix.items():
        for action, roles in actions.items():
            if not roles or not set(roles) <= set(ROLES):
                raise ValueError(f"{resource}: {action} admits {roles!r}; use roles of {ROLES!r}")


check_matrix()

MARK, NO_MARK = "✓", "·"


def render_markdown(matrix=MATRIX):
    """The matrix as a Markdown table: one row per resource and set of admitted roles, listing its actions."""
    lines = ["| Resource | Actions | " + " | ".join(ROLES) + " |",
             "|---|---|" + "---|" * len(ROLES)]
    for resource, actions in matrix.items():
        groups = {}  # role set -> actions, in the order actions are listed
        for action, roles in actions.items():
            groups.setdefault(frozenset(roles), []).append(action)
        for roles, grouped in groups.items():
            marks = " | ".join(MARK if role in roles else NO_MARK for role in ROLES)
            lines.append(f"| {resource} | {', '.join(grouped)} | {marks} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
