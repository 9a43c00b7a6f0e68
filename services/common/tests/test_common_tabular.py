"""Reading the tables users upload, and writing tables that open safely in Excel."""
import csv
import io
from datetime import date, datetime

import pytest
from openpyxl import Workbook, load_workbook

from crm_common.errors import ValidationFailed

from crm_common import tabular

CHINESE_CSV = "姓名,电话,标签\n张三,13800138000,重要客户\n李四,+86 139 0013 9000,华东\n"


def read(content):
    table = tabular.read_table(content)
    return table.header, list(table.rows())


def xlsx(rows):
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("encoded", [
    CHINESE_CSV.encode("utf-8"),
    b"\xef\xbb\xbf" + CHINESE_CSV.encode("utf-8"),
    CHINESE_CSV.encode("gbk"),
], ids=["utf-8", "utf-8 with BOM", "gbk"])
def test_chinese_csv_reads_the_same_in_every_encoding_excel_saves(encoded):
    header, rows = read(encoded)
    assert header == ["姓名", "电话", "标签"]
    assert rows == [(2, ["张三", "13800138000", "重要客户"]), (3, ["李四", "+86 139 0013 9000", "华东"])]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_the_separator_is_sniffed(delimiter):
    text = delimiter.join(["name", "email", "city"]) + "\n" + delimiter.join(["Ann", "ann@x.cn", "Paris, FR"]) + "\n"
    if delimiter == ",":
        text = 'name,email,city\nAnn,ann@x.cn,"Paris, FR"\n'
    header, rows = read(text.encode())
    assert header == ["name", "email", "city"]
    assert rows == [(2, ["Ann", "ann@x.cn", "Paris, FR"])]


def test_row_numbers_are_the_spreadsheets_with_blank_rows_skipped_and_multiline_cells_one_row():
    text = 'name,notes\nAnn,"line one\nline two"\n,\n\nBob,short\n'
    _, rows = read(text.encode())
    # Header row 1, Ann row 2, two blank rows (3, 4), Bob row 5.
    assert rows == [(2, ["Ann", "line one\nline two"]), (5, ["Bob", "short"])]


def test_short_and_long_rows_fit_the_header_and_cells_are_trimmed():
    _, rows = read(b"a,b,c\n 1 ,2\n3,4,5,6\n")
    assert rows == [(2, ["1", "2", ""]), (3, ["3", "4", "5"])]


def test_xlsx_first_sheet_values_as_text_with_iso_dates():
    content = xlsx([
        ["name", "phone", "since", "met", "vip"],
        ["Ann", 13800138000, date(2024, 3, 1), datetime(2024, 3, 1, 9, 30), True],
        [None, None, None, None, None],
        ["Bob", "+86 139 0013 9000", None, None, False],
    ])
    header, rows = read(content)
    assert header == ["name", "phone", "since", "met", "vip"]
    assert rows == [
        (2, ["Ann", "13800138000", "2024-03-01", "2024-03-01T09:30:00", "true"]),
        (4, ["Bob", "+86 139 0013 9000", "", "", "false"]),
    ]


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"\x00\x01\x02binary\x00", "neither CSV"),
    (b"PK\x03\x04 not really a zip", "XLSX"),
    (b"\xff\xfe\xfd\x81\x30", "neither UTF-8 nor GBK"),
    (b"\n\n", "name the columns"),
], ids=["empty", "binary", "broken zip", "undecodable", "no header"])
def test_a_file_that_is_no_table_is_a_422_naming_file(content, reason):
    with pytest.raises(ValidationFailed) as raised:
        read(content)
    assert list(raised.value.errors) == ["file"]
    assert reason in raised.value.errors["file"][0]


def test_csv_export_has_a_bom_and_neutralises_formulas():
    content = tabular.write_csv(["name", "phone", "notes"], [
        ["=HYPERLINK(\"http://evil\")", "+8613800138000", "@SUM(A1)"],
        ["张三", None, "-1 plain"],
        ["\tTabbed", "ok", "fine"],
    ])
    assert content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert rows == [
        ["name", "phone", "notes"],
        ["'=HYPERLINK(\"http://evil\")", "'+8613800138000", "'@SUM(A1)"],
        ["张三", "", "'-1 plain"],
        ["'\tTabbed", "ok", "fine"],
    ]


def test_xlsx_export_never_writes_a_formula():
    content = tabular.write_xlsx(["name", "notes"], [["=1+1", "bell\x07 removed"], ["张三", None]])
    sheet = load_workbook(io.BytesIO(content)).worksheets[0]
    assert sheet["A2"].value == "'=1+1" and sheet["A2"].data_type == "s"
    assert sheet["B2"].value == "bell removed"
    assert sheet["A3"].value == "张三"


@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_what_is_written_reads_back_unchanged(file_format):
    rows = [["=cmd", "+8613800138000", "张三, 李四", "'quoted already"]]
    content = tabular.write_table(file_format, ["a", "b", "c", "d"], rows)
    table = tabular.read_table(content)
    assert table.format == file_format
    assert list(table.rows()) == [(2, rows[0])]
