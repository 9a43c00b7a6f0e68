"""Error titles and validation messages in the caller's language (en or zh-CN).

Codes and field names stay the same in every language, so programs can rely
on them; only the human-readable text changes. Messages come from marshmallow
(here and in the other services) and from our own code; an untranslated
message is shown as it is, in English.
"""
import re

ENGLISH = "en"
CHINESE = "zh-CN"
LANGUAGES = (ENGLISH, CHINESE)

TITLES = {
    CHINESE: {
        "bad_request": "请求格式错误",
        "unauthorized": "需要登录",
        "forbidden": "无权执行此操作",
        "not_found": "未找到",
        "method_not_allowed": "不支持此请求方法",
        "conflict": "冲突",
        "version_mismatch": "记录已被他人修改",
        "payload_too_large": "请求内容过大",
        "validation_failed": "输入无效",
        "rate_limited": "请求过于频繁",
        "internal_error": "服务器内部错误",
        "service_unavailable": "服务暂不可用",
        "service_timeout": "服务响应超时",
    },
}

MESSAGES = {
    CHINESE: {
        # marshmallow's defaults
        "Missing data for required field.": "缺少必填字段。",
        "Field may not be null.": "该字段不能为 null。",
        "Unknown field.": "未知字段。",
        "Invalid input type.": "输入类型无效。",
        "Invalid value.": "值无效。",
        "Invalid type.": "类型无效。",
        "Not a valid integer.": "不是有效的整数。",
        "Not a valid list.": "不是有效的列表。",
        "Not a valid mapping type.": "不是有效的对象。",
        "Not a valid aware datetime.": "日期时间无效，请用带时区的 ISO 8601 格式。",
        # customers (customers.schemas, customers.domain, customers.custom_fields)
        "A person needs at least one phone number or email address.": "个人客户至少需要一个电话号码或邮箱地址。",
        "Change the owner with POST /customers/{id}/assign.": "请通过 POST /customers/{id}/assign 更换负责人。",
        "Give at least one field to change.": "请至少提供一个要修改的字段。",
        "Must not be before created_from.": "不能早于 created_from。",
        "You may not assign customers to another user.": "你不能把客户分配给其他用户。",
        "This user is not in your team.": "该用户不在你的团队中。",
        "Give another customer's id.": "请提供另一个客户的 id。",
        "Use true or false.": "请使用 true 或 false。",
        "There is no custom field with this key.": "没有这个键的自定义字段。",
        "Must be a number.": "必须是数字。",
        "Must be true or false.": "必须是 true 或 false。",
        "Must be a date written YYYY-MM-DD.": "必须是 YYYY-MM-DD 格式的日期。",
        "A choice field needs at least one choice.": "选项字段至少需要一个选项。",
        "Only choice fields have choices.": "只有选项字段才有选项。",
        "Use 1-50 lower-case letters, digits or _, starting with a letter.":
            "请使用 1 到 50 个小写字母、数字或下划线，并以字母开头。",
        "Not a valid string.": "不是有效的字符串。",
        "Not a valid integer.": "不是有效的整数。",
        "Not a valid number.": "不是有效的数字。",
        "Not a valid boolean.": "不是有效的布尔值。",
        "Not a valid email address.": "不是有效的电子邮件地址。",
        "Not a valid UUID.": "不是有效的 UUID。",
        "Not a valid URL.": "不是有效的 URL。",
        "Not a valid datetime.": "不是有效的日期时间。",
        "Not a valid date.": "不是有效的日期。",
        "Not a valid list.": "不是有效的列表。",
        "Not a valid mapping type.": "不是有效的对象。",
        # ours and the services'
        "Must be a JSON object.": "必须是 JSON 对象。",
        "Not a valid cursor.": "分页游标无效。",
        "Unknown user.": "用户不存在。",
        "Already in use.": "已被使用。",
        "Must not be blank.": "不能为空。",
        "Give at least one field to change.": "请至少提供一个要修改的字段。",
        "Not a valid version.": "不是有效的版本号。",
        # contacts, follow-ups and saved views (customers.activity_schemas)
        "Must be after occurred_at.": "必须晚于 occurred_at。",
        "Must not be in the future: log a follow-up once it happened, and plan the next one "
        "with next_followup_at.": "不能是将来的时间：跟进发生后再记录，下一次跟进请用 next_followup_at 安排。",
        "You already have a view with this name.": "你已有同名的视图。",
    },
}

# Messages with values in them: (pattern, replacement) tried in order.
PATTERNS = {
    CHINESE: [
        (re.compile(r"^Must be one of: (.*)\.$"), r"必须是以下之一：\1。"),
        (re.compile(r"^Shorter than minimum length (\d+)\.$"), r"长度不能少于 \1。"),
        (re.compile(r"^Longer than maximum length (\d+)\.$"), r"长度不能超过 \1。"),
        (re.compile(r"^Length must be between (\d+) and (\d+)\.$"), r"长度必须在 \1 到 \2 之间。"),
        (re.compile(r"^Length must be (\d+)\.$"), r"长度必须为 \1。"),
        (re.compile(r"^Must be between (\S+) and (\S+)\.$"), r"必须在 \1 到 \2 之间。"),
        (re.compile(r"^Must be greater than or equal to (\S+) and less than or equal to (\S+)\.$"),
         r"必须在 \1 到 \2 之间。"),
        (re.compile(r"^Must be greater than or equal to (\S+)\.$"), r"必须大于或等于 \1。"),
        (re.compile(r"^Must be less than or equal to (\S+)\.$"), r"必须小于或等于 \1。"),
        (re.compile(r"^Must be greater than (\S+)\.$"), r"必须大于 \1。"),
        (re.compile(r"^Must be less than (\S+)\.$"), r"必须小于 \1。"),
        (re.compile(r"^(.*) is not a phone number\.$"), r"\1 不是电话号码。"),
        (re.compile(r"^(.*) is not a valid phone number; write it with its country code, e\.g\. (.*)\.$"),
         r"\1 不是有效的电话号码；请带上国家区号，例如 \2。"),
        (re.compile(r"^Sort by one of: (.*) \(prefix - for descending\)\.$"), r"排序字段可选：\1（加 - 表示降序）。"),
        (re.compile(r"^Customer (\S+) was not found\.$"), r"未找到客户 \1。"),
        (re.compile(r"^Must be text of at most (\d+) characters\.$"), r"必须是不超过 \1 个字符的文本。"),
        (re.compile(r"^(.+) is required\.$"), r"\1 为必填项。"),
        (re.compile(r"^A (\w+) user cannot own customers\.$"), r"\1 角色的用户不能负责客户。"),
    ],
}


def title(code, english_title, language):
    return TITLES.get(language, {}).get(code, english_title)


def message(text, language):
    table = MESSAGES.get(language)
    if table is None or not isinstance(text, str):
        return text
    if text in table:
        return table[text]
    for pattern, replacement in PATTERNS[language]:
        if pattern.match(text):
            return pattern.sub(replacement, text)
    return text


def field_errors(errors, language):
    """``errors`` ({field: [messages]}, nested for nested fields) with every message translated."""
    if language == ENGLISH:
        return errors
    if isinstance(errors, dict):
        return {key: field_errors(value, language) for key, value in errors.items()}
    if isinstance(errors, list):
        return [field_errors(item, language) for item in errors]
    return message(errors, language)
