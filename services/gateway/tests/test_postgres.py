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
