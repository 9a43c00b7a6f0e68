"""notifications.recipients: the copy of the gateway's users that email is addressed from."""
import uuid

import pytest

from crm_common.errors import ValidationFailed
from crm_common.testing_cast import ALICE

from notifications.models import Recipient
from notifications.recipients import apply_user_event


def user_event(version=1, event_type="user.created", **changes):
    data = {"id": ALICE, "email": "alice@example.com", "name": "Alice", "language": "en", "team_id": "east",
            "role": "sales", "active": True, "version": version, **changes}
    return {"event_id": str(uuid.uuid4()), "type": event_type, "version": 1, "occurred_at": "2026-11-29T10:00:00+00:00",
            "producer": "gateway", "actor": {"user_id": None, "role": "admin", "team_id": None},
            "request_id": "r-1", "data": data}


def recipient(session):
    session.expire_all()
    return session.get(Recipient, ALICE)


def test_a_new_user_becomes_a_recipient_with_address_name_language_and_team(session):
    assert apply_user_event(session, user_event(language="zh-CN", name="王丽"))
    found = recipient(session)
    assert (found.email, found.name, found.language, found.team_id, found.active, found.version) == \
        ("alice@example.com", "王丽", "zh-CN", "east", True, 1)


def test_a_change_replaces_the_recipient_and_a_late_older_event_does_not_undo_it(session):
    created = user_event(1)
    apply_user_event(session, user_event(2, "user.updated", language="zh-CN", active=False))
    assert not apply_user_event(session, created)  # arrived after the update: older, ignored
    found = recipient(session)
    assert (found.language, found.active, found.version) == ("zh-CN", False, 2)


def test_a_redelivered_event_changes_nothing(session):
    event = user_event(1)
    assert apply_user_event(session, event)
    assert not apply_user_event(session, event)


def test_a_language_without_templates_is_kept_as_english(session):
    apply_user_event(session, user_event(language="fr"))
    assert recipient(session).language == "en"


@pytest.mark.parametrize("data, field", [({"id": None}, "id"), ({"version": "x"}, "version")])
def test_a_malformed_event_is_refused_naming_the_field(session, data, field):
    event = user_event()
    event["data"].update(data)
    with pytest.raises(ValidationFailed) as failure:
        apply_user_event(session, event)
    assert field in failure.value.errors
    assert recipient(session) is None
