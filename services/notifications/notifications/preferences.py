"""Which channels a user wants per notification type, and when email must keep quiet.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from crm_common.errors import Forbidden
from crm_common.types import utcnow
from crm_common.validation import load

from notifications.models import Preference
from notifications.task_schemas import EMAIL, INBOX, PreferencesOut, PreferencesUpdate

TASK_REMINDER = "task.reminder"
CONTRACT_EXPIRING = "contract.expiring"
CUSTOMER_ASSIGNED = "customer.assigned"

# What a user gets without saying otherwise: the notifications that ask for
# action today also go by email; the rest wait in the inbox.
DEFAULT_CHANNELS = {
    TASK_REMINDER: [INBOX, EMAIL],
    CONTRACT_EXPIRING: [INBOX, EMAIL],
    CUSTOMER_ASSIGNED: [INBOX, EMAIL],
}
INBOX_ONLY = [INBOX]

preferences_out = PreferencesOut()


def channels_for(session, user_id, notification_type):
    """The channels a notification of ``notification_type`` goes to for ``user_id`` (the inbox always)."""
    preference = session.get(Preference, user_id)
    chosen = (preference.channels or {}).get(notification_type) if preference else None
    channels = chosen if chosen is not None else DEFAULT_CHANNELS.get(notification_type, INBOX_ONLY)
    return [INBOX] + [channel for channel in channels if channel != INBOX]


def quiet_hours_of(session, user_id):
    preference = session.get(Preference, user_id)
    return (preference.quiet_hours or None) if preference else None


def quiet_until(quiet_hours, now):
    """When the quiet hours around ``now`` end (an aware UTC datetime), or None outside them.

    The window is in the user's own zone and may run over midnight (22:00-07:00).
    """
    if not quiet_hours:
        return None
    zone = ZoneInfo(quiet_hours["timezone"])
    start, end = _clock(quiet_hours["start"]), _clock(quiet_hours["end"])
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= clock < end
        end_day = local.date()
    else:
        inside = clock >= start or clock < end
        end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(now.tzinfo)


def _clock(text):
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


class Preferences:
    """The caller's own preferences: every user has exactly theirs."""

    def __init__(self, session, context):
        self.session = session
        self.context = context
        if not context.user_id:
            raise Forbidden("Preferences belong to a signed-in user.")

    def get(self):
        preference = self.session.get(Preference, self.context.user_id)
        return self._out(preference)

    def put(self, data):
        """Replace the caller's choices: types not listed get the defaults again."""
        data = load(PreferencesUpdate, data)
        preference = self.session.get(Preference, self.context.user_id)
        if preference is None:
            preference = Preference(user_id=self.context.user_id)
            self.session.add(preference)
        preference.channels = data["channels"]
        preference.quiet_hours = data["quiet_hours"] or {}
        preference.updated_at = utcnow()
        self.session.flush()
        return self._out(preference)

    @staticmethod
    def _out(preference):
        chosen = (preference.channels or {}) if preference else {}
        return preferences_out.dump({
            # What applies now for every type with a rule: the defaults overlaid with the user's choices.
            "channels": {**DEFAULT_CHANNELS, **chosen},
            "quiet_hours": (preference.quiet_hours or None) if preference else None,
            "defaults": DEFAULT_CHANNELS,
        })
