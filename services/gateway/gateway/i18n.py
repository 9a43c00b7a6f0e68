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
