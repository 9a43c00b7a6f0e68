"""Record-level visibility by role, the same rule in every service.

sales see the records they own; managers their team's (and their own);
admin, support and viewer see all (support and viewer cannot write, which
each service checks); the system (timers, relays) sees all. An unknown role
sees nothing rather than everything.
"""
from sqlalchemy import false

READ_ALL_ROLES = ("admin", "system", "support", "viewer")


def visibility(context, owner_column, team_column):
    """The SQL condition for the records ``context`` may see, or None for all."""
    if context.role == "sales":
        return owner_column == context.user_id
    if context.role == "manager":
        return (team_column == context.team_id) | (owner_column == context.user_id)
    if context.role in READ_ALL_ROLES:
        return None
    return false()
