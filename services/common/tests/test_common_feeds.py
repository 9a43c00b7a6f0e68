"""crm_common.feeds.RecordFeed: only admins and the system read a feed, and only the kinds it offers."""
import pytest

from crm_common.context import RequestContext
from crm_common.errors import Forbidden, ValidationFailed
from crm_common.feeds import RecordFeed


class Things(RecordFeed):
    kinds = ("things",)

    def _things(self, cursor, limit):
        return {"items": [{"cursor": cursor, "limit": limit}], "next_cursor": None}


@pytest.mark.parametrize("role", ["admin", "system"])
def test_admins_and_the_system_read_a_page_of_an_offered_kind(role):
    feed = Things(None, RequestContext(user_id="u-1", role=role))
    assert feed.page("things", "c-1", 20) == {"items": [{"cursor": "c-1", "limit": 20}], "next_cursor": None}


@pytest.mark.parametrize("role", ["sales", "manager", "viewer", "support", None])
def test_everyone_else_is_refused(role):
    with pytest.raises(Forbidden):
        Things(None, RequestContext(user_id="u-1", role=role)).page("things")


def test_a_kind_the_feed_does_not_offer_is_422_naming_kind():
    with pytest.raises(ValidationFailed) as refused:
        Things(None, RequestContext(role="admin")).page("secrets")
    assert list(refused.value.errors) == ["kind"]
