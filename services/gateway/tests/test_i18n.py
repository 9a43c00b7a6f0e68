"""gateway.i18n: titles and validation messages in English or Simplified Chinese."""
import pytest

from gateway import i18n


def test_english_is_left_as_it_is():
    errors = {"email": ["Not a valid email address."]}
    assert i18n.field_errors(errors, "en") is errors
    assert i18n.title("not_found", "Not found", "en") == "Not found"


def test_titles_of_every_error_code_have_a_chinese_form():
    from crm_common import errors
    from gateway.http import MethodNotAllowed, PayloadTooLarge

    codes = {value.code for value in vars(errors).values()
             if isinstance(value, type) and issubclass(value, errors.CrmError)}
    codes |= {MethodNotAllowed.code, PayloadTooLarge.code}
    assert codes <= set(i18n.TITLES["zh-CN"])


@pytest.mark.parametrize("english, chinese", [
    ("Missing data for required field.", "缺少必填字段。"),
    ("Unknown field.", "未知字段。"),
    ("Must be one of: admin, sales.", "必须是以下之一：admin, sales。"),
    ("Shorter than minimum length 12.", "长度不能少于 12。"),
    ("Length must be between 12 and 1024.", "长度必须在 12 到 1024 之间。"),
    ("Must be between 1 and 200.", "必须在 1 到 200 之间。"),
    ("Must be greater than or equal to 1 and less than or equal to 200.", "必须在 1 到 200 之间。"),
    ("Something nobody translated.", "Something nobody translated."),
])
def test_messages_are_translated(english, chinese):
    assert i18n.message(english, "zh-CN") == chinese


def test_nested_errors_are_translated_throughout():
    errors = {"address": {"city": ["Missing data for required field."]},
              "tags": {"0": ["Not a valid string."]}, "_schema": ["Must be a JSON object."]}
    assert i18n.field_errors(errors, "zh-CN") == {
        "address": {"city": ["缺少必填字段。"]},
        "tags": {"0": ["不是有效的字符串。"]},
        "_schema": ["必须是 JSON 对象。"],
    }
