"""The gateway's schema and token rotation on PostgreSQL, the deployment database."""
import pytest

from crm_common.db import make_engine, make_session_factory
from crm_common.errors import Unauthorized
from crm_common.testing import schema_drift

from gateway.auth import SignIn
from gateway.models import Base
from gateway.users import ensure_first_admin


def test_migrations_match_the_models_on_postgresql(pg_url):
    assert schema_drift("gateway.migrations", Base.metadata, pg_url) == []


def test_first_admin_login_and_refresh_reuse_on_postgresql(pg_url, passwords, access_tokens, tmp_path):
    from crm_common.migrate import upgrade

    upgrade("gateway.migrations", pg_url)
    engine = make_engine(pg_url)
    Session = make_session_factory(engine)
    try:
        with Session() as session:
            ensure_first_admin(session, passwords, "admin@example.com", "a long enough password",
                               str(tmp_path / "unused"))
        with Session() as session:
            pair = SignIn(session, passwords, access_tokens).login("admin@example.com", "a long enough password")
            session.commit()
        with Session() as session:
            renewed = SignIn(session, passwords, access_tokens).refresh(pair.refresh_token)
            session.commit()
        with Session() as session:
            with pytest.raises(Unauthorized):
                SignIn(session, passwords, access_tokens).refresh(pair.refresh_token)
            session.rollback()
        with Session() as session:
            with pytest.raises(Unauthorized):
                SignIn(session, passwords, access_tokens).refresh(renewed.refresh_token)
    finally:
        engine.dispose()


def test_sign_in_locks_and_logouts_hold_across_sessions_on_postgresql(pg_url, passwords, access_tokens, tmp_path):
    """Several gateway instances share these tables: each attempt here is its own session, as theirs would be."""
    from crm_common.errors import RateLimited
    from crm_common.migrate import upgrade

    from gateway.auth import SessionRevocations

    upgrade("gateway.migrations", pg_url)
    engine = make_engine(pg_url)
    Session = make_session_factory(engine)
    try:
        with Session() as session:
            ensure_first_admin(session, passwords, "admin@example.com", "a long enough password",
                               str(tmp_path / "unused"))
        for _ in range(5):
            with Session() as session:
                with pytest.raises(Unauthorized):
                    SignIn(session, passwords, access_tokens).login("admin@example.com", "wrong", "192.0.2.1")
        with Session() as session:
            with pytest.raises(RateLimited):
                SignIn(session, passwords, access_tokens).login("admin@example.com", "a long enough password")
        session_id = "00000000-0000-4000-8000-000000000001"
        with Session() as session:
            SessionRevocations(session).revoke("00000000-0000-4000-8000-0000000000ad", session_id)
            SessionRevocations(session).revoke("00000000-0000-4000-8000-0000000000ad", session_id)  # twice: no error
            session.commit()
        with Session() as session:
            assert SessionRevocations(session).is_revoked(session_id)
    finally:
        engine.dispose()
