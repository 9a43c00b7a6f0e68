"""Optimistic concurrency for records with a ``version`` column (SQLAlchemy's version_id_col).

A client that read version 3 and sends If-Match: W/"3" must not overwrite
someone else's version 4: ``check_version`` refuses a stale expectation up
front, and ``flush_versioned`` turns the race that slips past it (two writers
of the same version, one flush loses) into the same 412.
"""
from sqlalchemy.orm.exc import StaleDataError

from crm_common.errors import VersionMismatch


def check_version(record, expected_version, what):
    """VersionMismatch unless ``record`` is at ``expected_version`` (None: the caller does not care)."""
    if expected_version is not None and record.version != expected_version:
        raise VersionMismatch(f"{what} is at version {record.version}, not {expected_version}.")


def flush_versioned(session, what):
    """Flush; a row changed by someone else since it was read is a VersionMismatch."""
    try:
        session.flush()
    except StaleDataError:
        raise VersionMismatch(f"{what} was changed by someone else; reload it.")
