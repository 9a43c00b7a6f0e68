"""Refilling the read models from the sources' own data (an admin's "rebuild").

Plain Python: the sources are read through ``fetch_page(service, kind,
cursor)`` -> {"items", "next_cursor"}, which the service binds to its RPC
proxies; nothing here knows about nameko.

- ``Rebuilds.start`` only records a run (status running, no heartbeat yet):
  the work is done outside the caller's request by ``run_pending`` (the
  service's timer), which claims the run with one conditional UPDATE so two
  instances never run it both.
- Each page is written in its own transaction with the same ingest code as
  the events (the source's copy wins, even at an equal version), and renews
  the heartbeat. A run whose heartbeat stops (its process died) is failed
  once stale, and a new run may then start.
- Nothing is emptied first, so reports keep answering during a run. At the
  end, rows of each fact table that the run did not write and no event
  touched since it started (``refreshed_at`` < the run's ``started_at``) are
  records gone from the source, and are removed.
- The rollups follow every write and removal by themselves (reporting.rollups' triggers); the
  final transaction still computes them again from the facts, so a rebuild also repairs a rollup
  that went wrong, and always ends with rollups equal to the facts.
"""
import logging
import uuid
from datetime import timedelta

from sqlalchemy import delete, func, insert, or_, select, update

from crm_common.audit import record_audit
from crm_common.context import RequestContext
from crm_common.db import allow_long_statements
from crm_common.errors import Conflict, CrmError, Forbidden, NotFound
from crm_common.types import utcnow

from reporting import rollups
from reporting.ingest import ingest_page, refresh_last_contact
from reporting.models import (
    ContractFact, CustomerFact, CustomerLastFollowup, FollowupFact, OpportunityFact, OrderFact, OrderLineFact, RebuildRun,
    StageChangeFact,
)

log = logging.getLogger(__name__)

# What a run reads, in order: (source service, kind of record).
SOURCES = (
    ("customers", "customers"),
    ("customers", "followups"),
    ("sales", "orders"),
    ("sales", "opportunities"),
    ("sales", "stage_changes"),
    ("sales", "contracts"),
)

# The tables swept at the end; customer_last_followups, a summary of followup_facts,
# is then computed again from them.
SWEPT = (CustomerFact, FollowupFact, OrderFact, OrderLineFact, OpportunityFact, StageChangeFact, ContractFact)

# A running run that wrote nothing for this long died with its process. Longer than
# one page's RPC timeout plus its write, so a slow but live run is never taken over.
STALE_AFTER = timedelta(minutes=5)


def run_to_dict(run):
    return {
        "id": run.id,
        "status": run.status,
        "requested_by": run.requested_by,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "heartbeat_at": run.heartbeat_at.isoformat() if run.heartbeat_at else None,
        "counts": dict(run.counts or {}),
        "error": run.error,
    }


def _is_stale(now):
    return func.coalesce(RebuildRun.heartbeat_at, RebuildRun.started_at) < now - STALE_AFTER


class Rebuilds:
    """Starting and reading rebuild runs, as one caller may."""

    def __init__(self, session, context: RequestContext):
        self.session = session
        self.context = context

    def _require_admin(self):
        if not self.context.is_admin:
            raise Forbidden("Only an administrator may rebuild the reports.")

    def start(self, now=None):
        """Record a new run (status running); 409 while another one is running and alive."""
        self._require_admin()
        now = now or utcnow()
        fail_stale_runs(self.session, now)
        running = self.session.execute(
            select(RebuildRun.id).where(RebuildRun.status == "running")).scalars().first()
        if running is not None:
            raise Conflict(f"Rebuild {running} is still running.")
        run = RebuildRun(id=str(uuid.uuid4()), status="running", requested_by=self.context.user_id,
                         started_at=now, counts={})
        self.session.add(run)
        self.session.flush()
        # The reports are emptied and refilled: who asked for that is worth knowing.
        record_audit(self.session, self.context, "reporting", "report_rebuild.started", "report_rebuild", run.id)
        return run_to_dict(run)

    def get(self, run_id):
        self._require_admin()
        run = self.session.get(RebuildRun, str(run_id))
        if run is None:
            raise NotFound(f"Rebuild {run_id} was not found.")
        return run_to_dict(run)


def fail_stale_runs(session, now=None):
    """Mark failed the running runs whose heartbeat stopped; returns how many (not committed)."""
    now = now or utcnow()
    failed = session.execute(
        update(RebuildRun).where(RebuildRun.status == "running", _is_stale(now))
        .values(status="failed", finished_at=now,
                error="The rebuild stopped: the process running it ended. Start it again.")
        .execution_options(synchronize_session=False)).rowcount
    if failed:
        log.warning("marked %d abandoned rebuild run(s) failed", failed)
    return failed


def claim_run(session_factory, now=None):
    """Take a run nobody works on yet (no heartbeat); its id, or None."""
    now = now or utcnow()
    with session_factory() as session:
        fail_stale_runs(session, now)
        session.commit()
        for run_id in session.execute(select(RebuildRun.id).where(
                RebuildRun.status == "running", RebuildRun.heartbeat_at.is_(None))
                .order_by(RebuildRun.started_at)).scalars().all():
            claimed = session.execute(
                update(RebuildRun).where(RebuildRun.id == run_id, RebuildRun.status == "running",
                                         RebuildRun.heartbeat_at.is_(None))
                .values(heartbeat_at=now).execution_options(synchronize_session=False)).rowcount
            session.commit()
            if claimed == 1:
                return run_id
    return None


def run_pending(session_factory, fetch_page):
    """Claim and run the runs waiting for a worker; returns how many ran."""
    ran = 0
    while (run_id := claim_run(session_factory)) is not None:
        run_rebuild(session_factory, run_id, fetch_page)
        ran += 1
    return ran


class RunTakenOver(Exception):
    """The run is no longer ours (failed as stale meanwhile): stop writing."""


def run_rebuild(session_factory, run_id, fetch_page):
    """Read every source page by page into the facts, then sweep what the sources no longer hold."""
    try:
        _run(session_factory, run_id, fetch_page)
    except RunTakenOver:
        log.warning("rebuild %s was marked failed while running; stopped", run_id)
    except Exception as error:
        log.exception("rebuild %s failed", run_id)
        reason = error.detail if isinstance(error, CrmError) else (
            f"The rebuild stopped on an internal error ({type(error).__name__}).")
        with session_factory() as session:
            session.execute(update(RebuildRun).where(RebuildRun.id == run_id, RebuildRun.status == "running")
                            .values(status="failed", error=reason, finished_at=utcnow()))
            session.commit()


def _run(session_factory, run_id, fetch_page):
    with session_factory() as session:
        started_at = session.get(RebuildRun, run_id).started_at
    counts = {}
    for service, kind in SOURCES:
        counts[kind] = 0
        cursor = None
        while True:
            page = fetch_page(service, kind, cursor)
            with session_factory() as session:
                counts[kind] += ingest_page(session, kind, page.get("items") or [])
                _progress(session, run_id, counts)
                session.commit()
            cursor = page.get("next_cursor")
            if not cursor:
                break
    with session_factory() as session:
        # The sweep and the summaries scan whole fact tables in one statement each: on a large
        # CRM longer than the per-statement limit that guards requests (see allow_long_statements).
        allow_long_statements(session)
        for model in SWEPT:
            removed = session.execute(
                delete(model).where(or_(model.refreshed_at < started_at, model.refreshed_at.is_(None)))
                .execution_options(synchronize_session=False)).rowcount
            counts[f"removed_{model.__tablename__}"] = removed
        _summarise_last_followups(session)
        refresh_last_contact(session)
        rollups.recompute(session)
        _progress(session, run_id, counts, status="done", finished_at=utcnow())
        session.commit()
    log.info("rebuild %s done: %s", run_id, counts)


def _summarise_last_followups(session):
    """Each customer's newest follow-up, from the follow-ups as the run left them (one transaction:
    reports see the old summary until it commits)."""
    session.execute(delete(CustomerLastFollowup).execution_options(synchronize_session=False))
    session.execute(insert(CustomerLastFollowup).from_select(
        ["customer_id", "last_followup_at"],
        select(FollowupFact.customer_id, func.max(FollowupFact.occurred_at)).group_by(FollowupFact.customer_id)))


def _progress(session, run_id, counts, **values):
    still_ours = session.execute(
        update(RebuildRun).where(RebuildRun.id == run_id, RebuildRun.status == "running")
        .values(counts=dict(counts), heartbeat_at=utcnow(), **values)
        .execution_options(synchronize_session=False)).rowcount
    if not still_ours:
        session.rollback()
        raise RunTakenOver(run_id)
