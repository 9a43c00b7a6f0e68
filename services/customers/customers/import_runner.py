"""Runs one claimed import job in a process of its own:

    python -m customers.import_runner <job id>

Why a process: validating 100,000 rows is seconds of pure Python. Inside the
service it would hold the GIL and delay every RPC the instance serves, and it
could use one core only. Here the rows are validated by a pool of processes
(CRM_IMPORT_PROCESSES, default: one per core), while this process decides
duplicates and writes the chunks in file order. The service's timer claims
the job and waits for this process (customers.service).

Exit status 0 when the job ended (done, or failed with its reason stored);
anything else means the process died and the job is still marked running,
which the waiting service turns into "failed".
"""
import logging
import multiprocessing
import os
import subprocess
import sys
from dataclasses import asdict

from crm_common.config import db_url, env
from crm_common.context import RequestContext
from crm_common.db import make_engine, make_session_factory

from customers import imports
from customers.domain import CustomerBook

log = logging.getLogger(__name__)

# Set in each pool process by _start_worker: the book that validates rows.
_book = None


def _start_worker(url, context_values):
    global _book
    _book = CustomerBook(make_session_factory(make_engine(url, pool_size=1))(), RequestContext(**context_values))


def _prepare_in_worker(task):
    fields, owner_teams, chunk = task
    prepared = imports.prepare_rows(_book, fields, owner_teams, chunk)
    # Definitions are re-read for each chunk: one defined during a long import applies from the next chunk.
    _book.session.rollback()
    return prepared


class ProcessPreparer:
    """Prepares chunks on a pool of processes, in order, a few chunks ahead of the writer."""

    def __init__(self, url, processes, context):
        # spawn, not fork: a forked child would share this process's database connections.
        self.pool = multiprocessing.get_context("spawn").Pool(
            processes, initializer=_start_worker, initargs=(url, asdict(context)))

    def map(self, fields, owner_teams, chunks):
        try:
            yield from self.pool.imap(_prepare_in_worker, ((fields, owner_teams, chunk) for chunk in chunks))
        finally:
            self.pool.terminate()


def run_in_child_process(session_factory, job_id):
    """Run a claimed job in ``python -m customers.import_runner`` and wait for it (cooperatively
    under eventlet, whose monkey patching makes subprocess green)."""
    result = subprocess.run([sys.executable, "-m", "customers.import_runner", job_id])
    if result.returncode != 0 and imports.fail_unfinished(
            session_factory, job_id, f"The import process stopped unexpectedly (exit status {result.returncode})."):
        log.error("import %s: runner exited with %s", job_id, result.returncode)


def processes():
    value = env("CRM_IMPORT_PROCESSES", "")
    return int(value) if value.strip() else max(1, os.cpu_count() or 1)


def main(argv):
    logging.basicConfig(level=env("CRM_LOG_LEVEL", "INFO"), format="%(asctime)s import_runner %(message)s")
    job_id = argv[1]
    url = db_url("customers")
    session_factory = make_session_factory(make_engine(url))
    imports.run_job(session_factory, job_id,
                    preparer=lambda context: ProcessPreparer(url, processes(), context))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
