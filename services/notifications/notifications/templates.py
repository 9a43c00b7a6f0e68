"""The words of a notification's email, per notification type, in English and Chinese.

A template is a subject and a plain-text body (string.Template, ``$name``),
filled from the notification's data plus a few values the email adds (the
recipient's name, the notification's title and body). The HTML part is made
from the same text, so the two parts can never say different things.

A type without a template, or a notification whose data lacks a value its
template names (an older event, a producer that changed), gets the generic
template: its own title and body. A notification is never dropped for want
of a template.

Plain Python; nothing here knows about nameko or SMTP.
"""
import html
from dataclasses import dataclass
from datetime import datetime
from string import Template

ENGLISH = "en"
CHINESE = "zh-CN"
GENERIC = "*"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class EmailTemplate:
    subject: Template
    body: Template


def _template(subject, body):
    return EmailTemplate(Template(subject), Template(body))


GREETING = {ENGLISH: Template("Hello $recipient_name,"), CHINESE: Template("$recipient_name，您好：")}
ANONYMOUS_GREETING = {ENGLISH: "Hello,", CHINESE: "您好："}
FOOTER = {
    ENGLISH: "You receive this email because of your notification settings in the CRM.",
    CHINESE: "您收到这封邮件，是因为您在 CRM 中的通知设置。",
}

TEMPLATES = {
    ENGLISH: {
        "task.reminder": _template(
            "Reminder: $task_title",
            "This is a reminder of your task \"$task_title\".\nDue: $due_at\n\n$description"),
        "contract.expiring": _template(
            "Contract $contract_title ends in $days_to_end days",
            "The contract \"$contract_title\" ends on $end_date, in $days_to_end days.\n"
            "Renew it or close it in time."),
        "customer.assigned": _template(
            "Customer $customer_name was assigned to you",
            "You are now the owner of the customer $customer_name."),
        "customer.imported": _template(
            "$count imported customers were assigned to you",
            "An import made you the owner of $count customers."),
        GENERIC: _template("$title", "$body"),
    },
    CHINESE: {
        "task.reminder": _template(
            "提醒：$task_title",
            "提醒您处理任务“$task_title”。\n截止时间：$due_at\n\n$description"),
        "contract.expiring": _template(
            "合同 $contract_title 将在 $days_to_end 天后到期",
            "合同“$contract_title”将于 $end_date 到期（还有 $days_to_end 天）。\n请及时续签或结束。"),
        "customer.assigned": _template(
            "客户 $customer_name 已分配给您",
            "您现在是客户 $customer_name 的负责人。"),
        "customer.imported": _template(
            "导入的 $count 位客户已分配给您",
            "一次导入使您成为 $count 位客户的负责人。"),
        GENERIC: _template("$title", "$body"),
    },
}

# What an empty value reads as, so a template never shows "None".
BLANKS = {
    ENGLISH: {"customer_name": "a customer", "due_at": "not set", "description": ""},
    CHINESE: {"customer_name": "一位客户", "due_at": "未设置", "description": ""},
}


def language_of(recipient):
    """The recipient's language if we have templates in it, else English."""
    language = getattr(recipient, "language", None)
    return language if language in TEMPLATES else ENGLISH


def render(notification, recipient, extra=None):
    """The subject, text and HTML of ``notification``'s email to ``recipient``, in the recipient's language.

    ``extra`` adds values the notification's data does not carry (a task's title, read by the caller).
    """
    language = language_of(recipient)
    values = _values(notification, language, extra)
    templates = TEMPLATES[language]
    template = templates.get(notification.type, templates[GENERIC])
    try:
        subject, body = template.subject.substitute(values), template.body.substitute(values)
    except KeyError:
        template = templates[GENERIC]
        subject, body = template.subject.substitute(values), template.body.substitute(values)
    name = getattr(recipient, "name", None)
    greeting = GREETING[language].substitute(recipient_name=name) if name else ANONYMOUS_GREETING[language]
    text = f"{greeting}\n\n{body.strip()}\n\n-- \n{FOOTER[language]}\n"
    # A subject is one line: a newline would end the header.
    subject = " ".join(subject.split())
    return Rendered(subject=subject, text=text, html=to_html(text, subject, language))


def _values(notification, language, extra):
    values = {"title": notification.title or "", "body": notification.body or ""}
    for key, value in {**(notification.data or {}), **(extra or {})}.items():
        if value is None:
            value = BLANKS[language].get(key)
            if value is None:
                continue  # no value and no blank wording: the generic template takes over
        values[key] = _readable(key, value)
    for key, blank in BLANKS[language].items():
        values.setdefault(key, blank)
    return values


def _readable(key, value):
    """Timestamps (…_at) as "2026-11-29 17:30 UTC" instead of ISO 8601; anything else as text."""
    if key.endswith("_at") and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


def to_html(text, subject, language):
    """A minimal HTML page of the text: paragraphs at blank lines, line breaks kept, all of it escaped."""
    paragraphs = [part for part in text.strip().split("\n\n") if part.strip()]
    body = "\n".join(f"<p>{html.escape(part).replace(chr(10), '<br>')}</p>" for part in paragraphs)
    return (f'<!DOCTYPE html>\n<html lang="{language}"><head><meta charset="utf-8">'
            f"<title>{html.escape(subject)}</title></head>\n<body>\n{body}\n</body></html>\n")
