"""The email channel: a notification as a MIME message, sent over SMTP.

The dispatcher (notifications.dispatch) calls ``EmailChannel.send`` for each
due email delivery and retries it when it raises; this module only turns one
notification into one message and hands it to the SMTP server. smtplib's
sockets are green under eventlet's monkey patch, so a slow server holds up
only the worker sending to it.

Configuration (read at each send, so a changed environment applies without a
restart of anything but the process):
  CRM_SMTP_HOST (127.0.0.1), CRM_SMTP_PORT (25), CRM_SMTP_STARTTLS (false),
  CRM_SMTP_USERNAME / CRM_SMTP_PASSWORD (both or neither), CRM_SMTP_FROM
  ("CRM <crm@localhost>"), CRM_SMTP_TIMEOUT (10 seconds).

Plain Python; nothing here knows about nameko.
"""
import smtplib
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from crm_common.config import env, env_bool
from crm_common.types import utcnow

from notifications import dispatch
from notifications.models import Task
from notifications.task_schemas import EMAIL
from notifications.templates import language_of, render

NOTIFICATION_ID_HEADER = "X-CRM-Notification-Id"
DEFAULT_FROM = "CRM <crm@localhost>"


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    sender: str = DEFAULT_FROM
    timeout: float = 10.0

    @classmethod
    def from_env(cls):
        return cls(
            host=env("CRM_SMTP_HOST", cls.host),
            port=env("CRM_SMTP_PORT", cls.port, int),
            starttls=env_bool("CRM_SMTP_STARTTLS", cls.starttls),
            username=env("CRM_SMTP_USERNAME"),
            password=env("CRM_SMTP_PASSWORD"),
            sender=env("CRM_SMTP_FROM", cls.sender),
            timeout=env("CRM_SMTP_TIMEOUT", cls.timeout, float),
        )

    @property
    def sender_domain(self):
        return parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"


def compose(notification, recipient, settings, extra=None, now=None):
    """The MIME message of ``notification`` for ``recipient``: UTF-8 text and HTML alternatives."""
    rendered = render(notification, recipient, extra)
    message = EmailMessage()
    message["Subject"] = rendered.subject  # encoded (RFC 2047) by the email package when not ASCII
    message["From"] = settings.sender
    message["To"] = Address(display_name=recipient.name or "", addr_spec=recipient.email)
    message["Date"] = format_datetime(now or utcnow())
    # One id per notification: a retry after a send whose outcome we never
    # learnt (the connection dropped after DATA) is recognisable as the same mail.
    message["Message-ID"] = f"<{notification.id}@{settings.sender_domain}>"
    message[NOTIFICATION_ID_HEADER] = str(notification.id)
    # Mail that exists because a machine noticed something: no out-of-office replies, please.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text, charset="utf-8")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    # After the body: set_content and add_alternative move Content-* headers into the parts.
    message["Content-Language"] = language_of(recipient)
    return message


def send_message(message, settings):
    """Hand ``message`` to the SMTP server; raises (smtplib.SMTPException, OSError) when it is not accepted."""
    with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.username:
            smtp.login(settings.username, settings.password or "")
        smtp.send_message(message)


def template_extras(session, notification):
    """Values a template names that the notification's data only points to: the task's title and description."""
    task_id = (notification.data or {}).get("task_id")
    task = session.get(Task, task_id) if task_id else None
    if task is None:
        return {}
    return {"task_title": task.title, "description": task.description}


class EmailChannel:
    """dispatch.Channel for email; a failure raises, and the dispatcher retries with backoff."""

    name = EMAIL

    def __init__(self, settings=None, send=send_message):
        # None: read the environment at each send.
        self.settings = settings
        self._send = send

    def send(self, session, notification, recipient):
        settings = self.settings or SmtpSettings.from_env()
        message = compose(notification, recipient, settings, template_extras(session, notification))
        self._send(message, settings)


dispatch.channels[EMAIL] = EmailChannel()
