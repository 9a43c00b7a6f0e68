"""crm_common.versioning: stale writes answer 412 instead of overwriting."""
import pytest
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crm_common.errors import VersionMismatch
from crm_common.db import make_engine, make_session_factory
from crm_common.versioning import check_version, flush_versioned


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(50))
    version: Mapped[int] = mapped_column(Integer)
    __mapper_args__ = {"version_id_col": version}


def test_a_stale_expected_version_is_refused_and_a_current_one_passes():
    note = Note(id=1, text="x", version=3)
    with pytest.raises(VersionMismatch) as caught:
        check_version(note, 2, "Note 1")
    assert "version 3, not 2" in caught.value.detail
    check_version(note, 3, "Note 1")
    check_version(note, None, "Note 1")


def test_losing_a_write_race_is_a_version_mismatch(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/race.db")
    Base.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    first, second = sessions(), sessions()
    first.add(Note(id=1, text="original", version=1))
    first.commit()
    mine, theirs = first.get(Note, 1), second.get(Note, 1)
    theirs.text = "theirs"
    second.commit()
    mine.text = "mine"
    with pytest.raises(VersionMismatch):
        flush_versioned(first, "Note 1")
