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
        "overloaded": "服务繁忙，请稍后重试",
        "service_timeout": "服务响应超时",
        "query_timeout": "查询耗时过长",
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
        # pipelines and opportunities (sales.pipeline_schemas, sales.pipeline)
        "A pipeline has exactly one won stage and one lost stage.": "一个销售流程必须恰好有一个赢单阶段和一个输单阶段。",
        "A pipeline needs at least one open stage.": "一个销售流程至少需要一个进行中的阶段。",
        "Stage keys must be unique within a pipeline.": "同一销售流程中的阶段键不能重复。",
        "Too many decimals for this currency.": "该币种不允许这么多位小数。",
        "Say why the opportunity was lost.": "请说明输单原因。",
        "Only a move to a lost stage takes a lost_reason.": "只有移到输单阶段时才需要 lost_reason。",
        "Must not be before close_from.": "不能早于 close_from。",
        "Must not be below amount_min.": "不能小于 amount_min。",
        "You may not assign opportunities to another user.": "你不能把商机分配给其他用户。",
        "Unknown pipeline.": "销售流程不存在。",
        "A pipeline with this name exists.": "已存在同名的销售流程。",
        "This pipeline already has a stage with this key.": "该销售流程已有此键的阶段。",
        "Unknown or deleted customer.": "客户不存在或已删除。",
        # contracts and their attachments (sales.contract_schemas, sales.contracts)
        "Must be after start_date.": "必须晚于 start_date。",
        "The file must have 1 to 20971520 bytes (20 MB).": "文件大小必须在 1 到 20971520 字节（20 MB）之间。",
        "Not valid base64.": "不是有效的 base64。",
        "Unknown order.": "订单不存在。",
        "The order belongs to another customer.": "该订单属于其他客户。",
        "Not a media type like application/pdf.": "不是有效的媒体类型（例如 application/pdf）。",
        "Must not be in the future.": "不能是将来的时间。",
        "Missing: send the file as 'file'.": "缺少文件：请以 'file' 字段上传。",
        # products, price lists, quotes, orders and payments (sales.catalogue_schemas, sales.order_schemas,
        # sales.catalogue, sales.documents, sales.orders, sales.quotes) and money (sales.money)
        "Not a valid amount: write it like \"1234.50\".": "金额无效：请写成 \"1234.50\" 的形式。",
        "Must not be negative.": "不能为负数。",
        "At most two decimals.": "最多两位小数。",
        "Use a three-letter ISO 4217 code, e.g. CNY.": "请使用三个字母的 ISO 4217 币种代码，例如 CNY。",
        "1-64 letters, digits, . _ / or -, starting with a letter or digit.":
            "请使用 1 到 64 个字母、数字或 . _ / -，并以字母或数字开头。",
        "This SKU is taken.": "该 SKU 已被使用。",
        "This name is taken.": "该名称已被使用。",
        "There is no product with this id.": "没有这个 id 的产品。",
        "There is no active product with this id.": "没有这个 id 的在售产品。",
        "Overlaps another price of this product in the list.": "与该价目表中此产品的另一个价格时段重叠。",
        "Must not be before valid_from.": "不能早于 valid_from。",
        "A customer has at most one price list.": "一个客户最多只能属于一个价目表。",
        "Required for a line without a product.": "没有产品的明细行必须填写此项。",
        "Give 1 to 200 lines.": "请提供 1 到 200 行明细。",
        "Required when the first line has no product.": "第一行明细没有产品时必须填写。",
        "You may not give records to another user.": "你不能把记录分配给其他用户。",
        "There is no opportunity with this id.": "没有这个 id 的商机。",
        "The opportunity must be of the same customer.": "商机必须属于同一个客户。",
        "Must not be in the past.": "不能是过去的日期。",
        "Must be more than 0.": "必须大于 0。",
        "More than the outstanding amount.": "超过了未付金额。",
        # tasks and notification preferences
        "Must not be after due_at.": "不能晚于 due_at。",
        "You may not give tasks to another user.": "您不能把任务分配给其他用户。",
        "Not a member of your team.": "不是您团队的成员。",
        "The inbox cannot be turned off.": "站内信不能关闭。",
        "Use HH:MM (24-hour).": "请使用 HH:MM（24 小时制）。",
        "Not a known time zone (use an IANA name like Asia/Shanghai).": "未知的时区（请使用 IANA 名称，如 Asia/Shanghai）。",
        "Must differ from start.": "必须与开始时间不同。",
        "The last active admin must stay one.": "必须保留至少一个启用的管理员。",
        # passwords (gateway.password_policy, gateway.auth, gateway.users)
        "Use at least 12 characters.": "请至少使用 12 个字符。",
        "This password is one of the most common ones; choose another.": "这是最常见的密码之一，请换一个。",
        "The password must not be your email address.": "密码不能是你的邮箱地址。",
        "The new password must differ from the current one.": "新密码必须与当前密码不同。",
        "The current password is not correct.": "当前密码不正确。",
        "This is the last active admin: make another admin first.": "这是最后一个启用的管理员：请先设置另一个管理员。",
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
        (re.compile(r"^Use one of: (.*)\.$"), r"请使用以下之一：\1。"),
        (re.compile(r"^At most (\d+) decimals\.$"), r"最多 \1 位小数。"),
        (re.compile(r"^Must be from (\S+) to (\S+)\.$"), r"必须在 \1 到 \2 之间。"),
        (re.compile(r"^Must be above (\S+) to (\S+)\.$"), r"必须大于 \1 且不超过 \2。"),
        (re.compile(r"^The total must be at most (\S+)\.$"), r"总额不能超过 \1。"),
        (re.compile(r"^The product is priced in (\w+) and has no (\w+) price for this customer; give the "
                    r"unit_price\.$"), r"该产品以 \1 定价，且此客户没有 \2 价格；请填写 unit_price。"),
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


# --- webhooks (notifications.webhook_schemas, notifications.ssrf) ---------------------
MESSAGES[CHINESE].update({
    'Each event type is exact ("order.placed"), a prefix ("order.*") or "*".':
        '每个事件类型须为精确类型（"order.placed"）、前缀（"order.*"）或 "*"。',
    "Only http and https URLs can be called.": "只能调用 http 和 https 地址。",
    "A URL must not contain credentials (user:password@).": "地址中不能包含凭据（user:password@）。",
    "The URL has no host.": "地址中没有主机名。",
    "Not a valid URL.": "不是有效的地址。",
})
PATTERNS[CHINESE] += [
    (re.compile(r"^The host (\S+) does not resolve\.$"), r"无法解析主机 \1。"),
    (re.compile(r"^The host (\S+) resolves to (\S+), an? ([a-z -]+) address; "
                r"only an admin's allow_private_network permits that\.$"),
     r"主机 \1 解析为 \2（\3 地址）；只有管理员设置 allow_private_network 后才允许。"),
]

# --- text the databases cannot store (gateway.http.refuse_nul_characters) -------------
MESSAGES[CHINESE].update({
    "Must not contain NUL (\\x00) characters.": "不能包含 NUL（\\x00）字符。",
})
