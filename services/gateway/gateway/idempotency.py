"""Idempotency-Key: the same POST sent twice makes one record and gets one answer.

A client that did not hear the answer to a POST (a timeout, a dropped
connection) sends it again with the same ``Idempotency-Key`` header. The
first request stores its outcome under (caller, key); the retry gets that
outcome back instead of creating a second record. The same key with a
different request is refused (422), and a retry that arrives while the
first is still running is told to wait (409).

Only successful outcomes are kept: a refused request changed nothing, so
its retry simply runs again.
"""
import hashlib
import json
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from crm_common import jsonutil
from crm_common.errors import Conflict, ValidationFailed
from crm_common.types import utcnow

from gateway.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200
# A request in flight longer than this is presumed dead (its gateway
# stopped), so a retry may take its key over.
IN_FLIGHT_LIMIT = timedelta(minutes=2)
REPLAYED_HEADER = "Idempotent-Replayed"


def fingerprint(method, path, body):
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class StoredOutcome:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body


class IdempotentRequests:
    def __init__(self, session):
        self.session = session

    def run(self, user_id, key, request_fingerprint, command):
        """Run ``command`` once per (user, key); returns (StoredOutcome, replayed)."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise ValidationFailed("The Idempotency-Key header is not valid.",
                                   {HEADER: [f"Must be 1 to {MAX_KEY_LENGTH} characters."]})
        replay = self._claim(user_id, key, request_fingerprint)
        if replay is not None:
            return replay, True
        try:
            outcome = command()
        except BaseException:
            # Nothing was created: free the key so a retry runs again.
            self.session.rollback()
            self.session.execute(delete(IdempotencyRecord).where(
                IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key))
            self.session.commit()
            raise
        record = self.session.get(IdempotencyRecord, (user_id, key))
        record.status = outcome.status
        record.headers = jsonutil.dumps(outcome.headers)
        record.body = jsonutil.dumps(outcome.body)
        record.completed_at = utcnow()
        return outcome, False

    def _claim(self, user_id, key, request_fingerprint):
        """Record the key as in flight (committed, so concurrent retries see it), or find its outcome."""
        self.session.add(IdempotencyRecord(user_id=user_id, key=key, fingerprint=request_fingerprint,
                                           created_at=utcnow()))
        try:
            self.session.commit()
            return None
        except IntegrityError:
            self.session.rollback()
        record = self.session.execute(select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
            .with_for_update()).scalar_one()
        if record.fingerprint != request_fingerprint:
            raise ValidationFailed("This Idempotency-Key was used for a different request.",
                                   {HEADER: ["Already used for a different request; use a new key."]})
        if record.completed_at is not None:
            return StoredOutcome(record.status, jsonutil.loads(record.headers), jsonutil.loads(record.body))
        if utcnow() - record.created_at < IN_FLIGHT_LIMIT:
            raise Conflict("A request with this Idempotency-Key is still being processed; retry shortly.")
        record.created_at = utcnow()  # take over a request whose gateway died
        self.session.commit()
        return None
