"""A service's feed of all its records for reporting's rebuild and consistency check.

A feed answers every record whoever owns it, so only admins and the system
(reporting's timer) may read it. A service subclasses ``RecordFeed``, lists
its ``kinds`` and writes one ``_<kind>(cursor, limit)`` method per kind that
returns a page (see crm_common.pagination.feed_page).
"""
from crm_common.errors import Forbidden, ValidationFailed


class RecordFeed:
    kinds = ()

    def __init__(self, session, context):
        self.session = session
        self.context = context

    def page(self, kind, cursor=None, limit=None):
        """{"items", "next_cursor"}: one page of the records of ``kind``, ordered by id."""
        self.require_admin()
        if kind not in self.kinds:
            raise ValidationFailed("kind is not valid", {"kind": [f"Use one of: {', '.join(self.kinds)}."]})
        return getattr(self, f"_{kind}")(cursor, limit)

    def require_admin(self):
        if not self.context.is_admin:
            raise Forbidden("Only admins and the system read the reporting feed.")
