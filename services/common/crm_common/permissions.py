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
    # A missing id matches nothing (``column == None`` would be IS NULL: every
    # unowned or team-less record).
    mine = owner_column == context.user_id if context.user_id is not None else false()
    if context.role == "sales":
        return mine
    if context.role == "manager":
        team = team_column == context.team_id if context.team_id is not None else false()
        return team | mine
    if context.role in READ_ALL_ROLES:
        return None
    return false()
