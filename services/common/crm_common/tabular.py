"""Reading and writing tables (CSV and XLSX), knowing nothing of customers.

What comes in is whatever a spreadsheet user saves: CSV from Excel in UTF-8
(with or without a BOM) or in the Chinese Windows code page (GBK, of which
GB18030 is a superset), separated by commas, semicolons (European locales)
or tabs; or an XLSX workbook. What goes out opens correctly in Excel: CSV in
UTF-8 with a BOM (without it, Excel reads UTF-8 as the local code page and
garbles Chinese), or XLSX.

Row numbers are those a spreadsheet user sees: the header is row 1, the
first data row is row 2, and blank rows are skipped but still counted, so a
reported "row 7" is row 7 in the user's program.
"""
import codecs
import csv
import io
import zipfile
from datetime import date, datetime, time

from crm_common.errors import ValidationFailed

CSV, XLSX = "csv", "xlsx"
FORMATS = (CSV, XLSX)
# What a written file is served as (the charset because the CSV is UTF-8 with a BOM).
CONTENT_TYPES = {
    CSV: "text/csv; charset=utf-8",
    XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
CSV_DELIMITERS = (",", ";", "\t")
# A cell starting with one of these is a formula to Excel, LibreOffice and
# Google Sheets (CSV/formula injection): a customer named "=HYPERLINK(...)"
# must not run in the spreadsheet of whoever exports it.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# The largest field a CSV may hold (csv's default of 128 KiB refuses long notes).
csv.field_size_limit(16 * 1024 * 1024)


def _not_a_table(reason):
    return ValidationFailed("The file is not a CSV or XLSX table.", {"file": [reason]})


class Table:
    """A table read from a file: ``header`` (column names) and ``rows()``,
    which yields (row_number, [cell text, ...]) with one cell per column."""

    def __init__(self, file_format, header, rows):
        self.format = file_format
        self.header = header
        self._rows = rows

    def rows(self):
        width = len(self.header)
        for number, values in self._rows:
            values = [_unescape(value) for value in values[:width]]
            if not any(values):
                continue
            yield number, values + [""] * (width - len(values))


def detect_format(content):
    """``xlsx`` for a ZIP container (what XLSX is), else ``csv``."""
    return XLSX if content[:4] == b"PK\x03\x04" else CSV


def read_table(content):
    """The table in ``content`` (bytes of a CSV or XLSX file); ValidationFailed naming ``file`` otherwise."""
    if not content:
        raise _not_a_table("The file is empty.")
    file_format = detect_format(content)
    header, rows = _read_xlsx(content) if file_format == XLSX else _read_csv(content)
    header = [name.strip() for name in header]
    if not any(header):
        raise _not_a_table("The first row must name the columns.")
    return Table(file_format, header, rows)


# --- CSV -------------------------------------------------------------------

def _decode(content):
    if b"\x00" in content[:65536]:
        # UTF-16 or binary: nothing a spreadsheet saves as "CSV" that we read.
        raise _not_a_table("The file is neither CSV (UTF-8 or GBK text) nor XLSX.")
    if content.startswith(codecs.BOM_UTF8):
        content = content[len(codecs.BOM_UTF8):]
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        # GB18030 decodes every GBK (and GB2312) file the same way.
        return content.decode("gb18030")
    except UnicodeDecodeError:
        raise _not_a_table("The text is neither UTF-8 nor GBK/GB18030.")


def _sniff_delimiter(first_line):
    """The separator the header row uses most; a comma when it names a single column."""
    counts = {delimiter: first_line.count(delimiter) for delimiter in CSV_DELIMITERS}
    best = max(CSV_DELIMITERS, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _read_csv(content):
    text = _decode(content)
    delimiter = _sniff_delimiter(text.split("\n", 1)[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise _not_a_table("The file is empty.")
    except csv.Error as error:
        raise _not_a_table(f"The CSV cannot be read: {error}.")

    def rows():
        # One record is one spreadsheet row, even when a quoted cell spans lines.
        try:
            for number, values in enumerate(reader, start=2):
                yield number, [value.strip() for value in values]
        except csv.Error as error:
            raise ValidationFailed("The CSV cannot be read.",
                                   {"file": [f"Row {reader.line_num}: {error}."]})

    return header, rows()


# --- XLSX ------------------------------------------------------------------

def _read_xlsx(content):
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header = next(rows, None)
    except (zipfile.BadZipFile, KeyError, ValueError, IndexError, OSError) as error:
        raise _not_a_table(f"The XLSX workbook cannot be read ({type(error).__name__}).")
    if header is None:
        raise _not_a_table("The first sheet is empty.")

    def numbered():
        try:
            # read_only iter_rows yields every row from the first, empty ones
            # included, so the count is the sheet's row number.
            for number, values in enumerate(rows, start=2):
                yield number, [cell_text(value) for value in values]
        finally:
            workbook.close()

    return [cell_text(value) for value in header], numbered()


def cell_text(value):
    """A cell's value as the text the user sees; dates in ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        # Phone numbers and ids typed into Excel arrive as floats: 13800138000.0.
        return str(int(value))
    return str(value).strip()


# --- writing ---------------------------------------------------------------

def neutralise(value):
    """A cell value safe to open in a spreadsheet: text that would start a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def _unescape(value):
    # The reading side of ``neutralise``: an exported file re-imports with
    # its values unchanged. (Excel itself never saves the apostrophe.)
    if value.startswith("'") and value[1:2] and value[1:].startswith(FORMULA_TRIGGERS):
        return value[1:]
    return value


def _cells(row):
    return [neutralise("" if value is None else value) for value in row]


def write_csv(header, rows):
    """CSV bytes: UTF-8 with a BOM, comma separated, every value neutralised."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(_cells(header))
    for row in rows:
        writer.writerow(_cells(row))
    return buffer.getvalue().encode("utf-8")


def write_xlsx(header, rows, sheet_title="Sheet1"):
    """XLSX bytes, written row by row (openpyxl write_only keeps no cells in memory)."""
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    def cells(row):
        # XML cannot hold most control characters; openpyxl refuses them.
        return [ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value
                for value in _cells(row)]

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(sheet_title)
    sheet.append(cells(header))
    for row in rows:
        sheet.append(cells(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def write_table(file_format, header, rows):
    if file_format == XLSX:
        return write_xlsx(header, rows)
    return write_csv(header, rows)
