"""crm_common.permissions: which records each role sees."""
import pytest
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_common.context import RequestContext
from crm_common.permissions import visibility
from crm_common.testing import memory_session


class Base(DeclarativeBase):
    pass


class Record(Base):
    __tablename__ = "records"
    id: Mapped[str] = mapped_column(String(10), primary_key=True)
    owner_id: Mapped[str | None] = mapped_column(String(10), nullable=True)
    team_id: Mapped[str | None] = mapped_column(String(10), nullable=True)


RECORDS = [("mine", "u1", "east"), ("teammate", "u2", "east"), ("mine-elsewhere", "u1", "west"),
           ("other-team", "u3", "west"), ("unowned", None, None)]


@pytest.fixture(scope="module")
def session():
    session = memory_session(Base.metadata)
    session.add_all(Record(id=i, owner_id=o, team_id=t) for i, o, t in RECORDS)
    session.commit()
    return session


def visible(session, role, user_id="u1", team_id="east"):
    condition = visibility(RequestContext(user_id=user_id, role=role, team_id=team_id),
                           Record.owner_id, Record.team_id)
    statement = select(Record.id)
    if condition is not None:
        statement = statement.where(condition)
    return set(session.execute(statement).scalars())


def test_sales_see_only_their_own_records(session):
    assert visible(session, "sales") == {"mine", "mine-elsewhere"}


def test_managers_see_their_team_and_their_own(session):
    assert visible(session, "manager") == {"mine", "teammate", "mine-elsewhere"}


@pytest.mark.parametrize("role", ["admin", "support", "viewer", "system"])
def test_read_all_roles_see_everything(session, role):
    assert visibility(RequestContext(role=role), Record.owner_id, Record.team_id) is None
    assert visible(session, role) == {r[0] for r in RECORDS}


@pytest.mark.parametrize("role", [None, "", "guest", "Admin"])
def test_unknown_or_missing_role_sees_nothing(session, role):
    assert visible(session, role) == set()


def test_sales_without_user_id_sees_nothing(session):
    assert visible(session, "sales", user_id=None) == set()


def test_manager_without_team_sees_only_their_own(session):
    # Not every record without a team: a missing team matches nothing.
    assert visible(session, "manager", team_id=None) == {"mine", "mine-elsewhere"}
    assert visible(session, "manager", user_id=None, team_id=None) == set()
