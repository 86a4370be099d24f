"""Import of the household registry from the spreadsheets county staff keep (CSV and XLSX).

The format, one row per **member** (the way staff keep their sheets), is defined once in ``COLUMNS``
below; the template's notes sheet, the export and this parser all read it from there.

- **Header row**: the first row that names 户口簿编号 (or ``book_no``) among the first ten rows, so
  a title row above the header is tolerated; normally it is row 1. Each column may be headed by its
  Chinese name, its English alias or a listed variant (full-width brackets, spaces and case do not
  matter). Required headers: 户口簿编号, 联户单元, 姓名, 与户主关系; the others may be left out.
  An unknown or repeated header is an error; a column with no header must be empty.
- **Household columns** (户口簿编号 … 留守老人, 统计年度 and the livestock counts) are repeated on
  each member row; a blank household cell means "as on the other rows of this household" (so
  merged cells work), but two filled cells that disagree are an error. 户口簿编号 is needed on every
  row. 户主姓名 left blank on every row is taken from the member whose relation is 户主.
- **Member columns** (姓名 … 身份证号): a row whose member cells are all blank describes the
  household alone (a household with no members listed). 性别 and 出生日期 left blank are taken from
  the ID number; filled in, they must agree with it. At most one 户主 per household.
- **Values**: flags 是/否, Y/N, 1/0, ✓/✗ (blank = 否); sex 男/女/M/F; dates YYYY-MM-DD, YYYY/M/D,
  YYYY.M.D, YYYY年M月D日, YYYYMMDD or an Excel date cell; ID numbers as text (a numeric Excel cell
  has already lost digits and is refused); a masked ID number as exported (``632623**********12``)
  means "the stored one, unchanged"; livestock: one 统计年度 (year) per household with head counts
  of 牦牛/绵羊/山羊/马 (blank = not counted, 0 = none).
- **Encodings**: UTF-8 with or without BOM, UTF-16 with BOM (Excel's "Unicode text", tab-separated)
  and GB18030 (what Chinese Excel writes as "CSV"); comma, tab or semicolon separated. XLSX is read
  from its first worksheet (by :mod:`services.registry.xlsx`), cached values of formulas. The file
  type is decided by its content.

Errors are ``{"row", "column", "message_zh", "message_en"}``: ``row`` is the spreadsheet row as
the user sees it (header = 1), ``column`` the header as written in the file; both are ``None`` for
an error about the file as a whole.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import math
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry import records, xlsx
from services.registry.idnumber import EARLIEST_BIRTH, IdNumber, InvalidIdNumber, parse_id_number
from services.registry.models import Household, OrgUnit
from services.registry.protection import Protector
from services.registry.schemas import PHONE_PATTERN, Actor, HouseholdIn, LivestockIn, MemberIn

# A 100,000-member sheet is about 30 MB as CSV (Tibetan script is three bytes a character), so the
# cap leaves room for the 200,000-row limit; XLSX is zipped and far smaller.
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_ROWS = 200_000
# An XLSX expands several times; this bounds what a crafted zip ("zip bomb") can make us inflate.
MAX_XLSX_UNCOMPRESSED_BYTES = 1024 * 1024 * 1024
# Enough to fix a file by; a list of every error of a wholly wrong 200,000-row file helps nobody.
MAX_ERRORS = 1000
HEADER_SEARCH_ROWS = 10

HEAD_RELATION = "户主"
YES = "是"
NO = "否"
MASKED_ID_PATTERN = re.compile(r"^\d{6}\*{8,12}[\dX]{2}$")
SCIENTIFIC_PATTERN = re.compile(r"^\d(\.\d+)?E\+?\d+$", re.IGNORECASE)
_PHONE = re.compile(PHONE_PATTERN)
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class Column:
    key: str
    header: str  # Chinese, as the template writes it
    alias: str  # English, accepted in its place
    level: str  # "household", "member" or "livestock" (household-level too)
    note_zh: str
    note_en: str
    example: Any
    required: bool = False  # the header must be present
    variants: tuple[str, ...] = ()


# A table reads best as a table: one column of the sheet per entry, kept out of the formatter.
# fmt: off
COLUMNS: tuple[Column, ...] = (
    Column("book_no", "户口簿编号", "book_no", "household",
           "户口簿编号，识别一户；同一户的每一行都必须填写（最多32字）",
           "household-book number: identifies the household; needed on every row of it (max 32)",
           "632623-示例-000001", required=True, variants=("户口本编号", "户号", "household_book_no")),
    Column("liaison_unit", "联户单元", "liaison_unit", "household",
           "联户单元编码（如 jiangqian-v1-lw001），或单元的数字编号",
           "liaison unit code (e.g. jiangqian-v1-lw001), or the unit's numeric id",
           "jiangqian-v1-lw001", required=True, variants=("联户单元编码", "联户组", "liaison_unit_code")),
    Column("head_name", "户主姓名", "head_name", "household",
           "户主姓名；留空则取与户主关系为“户主”的成员姓名",
           "head of household's name; if blank, taken from the member whose relation is 户主",
           "扎西多杰"),
    Column("head_name_bo", "户主藏文名", "head_name_bo", "household",
           "户主藏文名", "head's name in Tibetan script",
           "བཀྲ་ཤིས་རྡོ་རྗེ"),
    Column("address", "住址", "address", "household",
           "住址（最多255字）", "address (max 255 characters)",
           "甘德县江千乡江千一村", variants=("地址", "家庭住址")),
    Column("lat", "纬度", "lat", "household",
           "纬度，十进制度数（-90 至 90）", "latitude in decimal degrees (-90 to 90)",
           33.70512, variants=("latitude",)),
    Column("lon", "经度", "lon", "household",
           "经度，十进制度数（-180 至 180）", "longitude in decimal degrees (-180 to 180)",
           100.20345, variants=("longitude",)),
    Column("grassland_area_mu", "草场承包面积(亩)", "grassland_area_mu", "household",
           "草场承包面积，单位：亩", "grassland contract area in mu (亩)",
           1250.5, variants=("草场承包面积", "草场面积(亩)", "草场面积")),
    Column("low_income", "低保户", "low_income", "household",
           "是/否（也可写 Y/N、1/0、✓）；留空为否", "yes/no (是/否, Y/N, 1/0, ✓); blank means no",
           NO),
    Column("disability", "残疾", "disability", "household",
           "是/否：户内有残疾人", "yes/no: a disabled member",
           NO, variants=("残疾户",)),
    Column("five_guarantee", "五保户", "five_guarantee", "household",
           "是/否", "yes/no: five-guarantee household",
           NO),
    Column("left_behind_elderly", "留守老人", "left_behind_elderly", "household",
           "是/否", "yes/no: left-behind elderly",
           NO),
    Column("name", "姓名", "name", "member",
           "成员姓名（最多64字）；整行成员栏留空表示只登记户",
           "member's name (max 64); a row with every member cell blank records the household alone",
           "扎西多杰", required=True, variants=("成员姓名",)),
    Column("name_bo", "藏文名", "name_bo", "member",
           "成员藏文名", "member's name in Tibetan script",
           "བཀྲ་ཤིས་རྡོ་རྗེ", variants=("藏文姓名",)),
    Column("sex", "性别", "sex", "member",
           "男/女（或 M/F）；留空则按身份证号", "男/女 or M/F; if blank, from the ID number",
           "男"),
    Column("birth_date", "出生日期", "birth_date", "member",
           "YYYY-MM-DD、YYYY/M/D 或 Excel 日期；留空则按身份证号；须与身份证号一致",
           "YYYY-MM-DD, YYYY/M/D or an Excel date; if blank, from the ID number; must agree with it",
           date(1985, 3, 12), variants=("出生年月日",)),
    Column("relation", "与户主关系", "relation", "member",
           "户主、配偶、子、女、父、母、孙子、孙女……；每户至多一名户主（“本人”视同户主）",
           "relation to the head: 户主 (head; 本人 counts as 户主), 配偶, 子, 女...; one 户主 at most",
           HEAD_RELATION, required=True, variants=("关系",)),
    Column("ethnicity", "民族", "ethnicity", "member",
           "民族，如 藏族", "ethnicity, e.g. 藏族",
           "藏族"),
    Column("phone", "联系电话", "phone", "member",
           "联系电话", "phone number",
           "13912345678", variants=("电话", "手机号", "手机号码")),
    Column("id_number", "身份证号", "id_number", "member",
           "18位身份证号，末位可为X；请以文本格式填写（设为数字会丢失末几位）；留空或打码不改动已存的号码",
           "18-character ID number, last may be X; enter as text (a number cell loses digits); "
           "blank or masked keeps the stored number",
           "632623198503121238", variants=("身份证号码", "公民身份号码", "身份证")),
    Column("livestock_year", "统计年度", "livestock_year", "livestock",
           "牲畜统计年度（如 2025）；填了牲畜数则必填",
           "year the livestock was counted; needed with any count",
           2025, variants=("年度", "year")),
    Column("yak", "牦牛", "yak", "livestock",
           "牦牛头数（整数）；留空为未统计，0 为没有", "yak head count; blank = not counted, 0 = none",
           36),
    Column("sheep", "绵羊", "sheep", "livestock", "绵羊只数", "sheep head count", 120),
    Column("goat", "山羊", "goat", "livestock", "山羊只数", "goat head count", 15),
    Column("horse", "马", "horse", "livestock", "马匹数", "horse head count", 2),
)
# fmt: on
COLUMN_BY_KEY = {column.key: column for column in COLUMNS}
FLAG_KEYS = ("low_income", "disability", "five_guarantee", "left_behind_elderly")
SPECIES_KEYS = ("yak", "sheep", "goat", "horse")
HOUSEHOLD_KEYS = tuple(c.key for c in COLUMNS if c.level in ("household", "livestock") and c.key != "book_no")
HOUSEHOLD_KEY_SET = frozenset(HOUSEHOLD_KEYS)
MEMBER_KEYS = tuple(c.key for c in COLUMNS if c.level == "member")


def normalise_header(text: Any) -> str:
    # NFKC folds full-width brackets and letters; staff type headers by hand, spaces and all.
    folded = unicodedata.normalize("NFKC", str(text)).strip().lower()
    folded = re.sub(r"[\s\-]+", "_", folded).strip("_*")
    return folded


HEADER_LOOKUP: dict[str, str] = {}
for _column in COLUMNS:
    for _name in (_column.header, _column.alias, *_column.variants):
        HEADER_LOOKUP[normalise_header(_name)] = _column.key


# ---------------------------------------------------------------------------------------------
# Results and errors


@dataclass
class ImportResult:
    households: list[HouseholdIn] = field(default_factory=list)  # empty unless ``ok``
    errors: list[dict[str, Any]] = field(default_factory=list)  # the first MAX_ERRORS
    error_count: int = 0
    rows: int = 0  # data rows read (blank rows skipped)
    file_type: str | None = None  # "csv" / "xlsx"
    encoding: str | None = None  # of a CSV
    columns: tuple[str, ...] = ()  # keys of the columns present
    headers: dict[str, str] = field(default_factory=dict)  # key -> the header as written
    # book_no -> the rows of that household, to point the writer's errors at the file.
    rows_by_book: dict[str, list[int]] = field(default_factory=dict)
    member_rows_by_book: dict[str, list[int]] = field(default_factory=dict)  # in members' order

    @property
    def ok(self) -> bool:
        return self.error_count == 0


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.count = 0

    def add(self, row: int | None, column: str | None, zh: str, en: str) -> None:
        self.count += 1
        if len(self.items) < MAX_ERRORS:
            self.items.append({"row": row, "column": column, "message_zh": zh, "message_en": en})


class _CellError(Exception):
    def __init__(self, zh: str, en: str):
        super().__init__(en)
        self.zh = zh
        self.en = en


class _FileError(Exception):
    def __init__(self, zh: str, en: str):
        super().__init__(en)
        self.zh = zh
        self.en = en


# ---------------------------------------------------------------------------------------------
# Reading the file: type, encoding, rows


def _declared_kind(filename_or_type: str) -> str | None:
    value = (filename_or_type or "").strip().lower()
    if value in ("xlsx", "xlsm", XLSX_MIME) or value.endswith((".xlsx", ".xlsm")):
        return "xlsx"
    if value in ("csv", "txt", "text/csv", "text/plain", "application/csv") or value.endswith(
        (".csv", ".txt")
    ):
        return "csv"
    return None


_BINARY_SIGNATURES = (
    (b"%PDF", "PDF"),
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"Rar!", "RAR"),
    (b"7z\xbc\xaf", "7z"),
    (b"\x1f\x8b", "gzip"),
)


def detect_type(data: bytes, filename_or_type: str) -> str:
    """The file's type, "xlsx" or "csv", decided by its content; the declared name or type only
    words the error when the content is neither."""
    declared = _declared_kind(filename_or_type)
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return "xlsx"
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise _FileError(
            "不支持旧版 Excel（.xls）文件，请在 Excel 中另存为 .xlsx 或 CSV 后再导入",
            "old Excel (.xls) files are not supported: save as .xlsx or CSV in Excel and import that",
        )
    for signature, name in _BINARY_SIGNATURES:
        if data.startswith(signature):
            raise _FileError(
                f"不支持的文件类型（{name}），请上传 CSV 或 XLSX 文件",
                f"unsupported file type ({name}): upload a CSV or XLSX file",
            )
    if declared == "xlsx":
        raise _FileError(
            "文件名为 .xlsx，但内容不是有效的 XLSX 文件（可能已损坏或被改了扩展名）",
            "the name says .xlsx but the content is not an XLSX file (damaged, or renamed)",
        )
    if not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and b"\x00" in data[:65536]:
        raise _FileError(
            "不支持的文件类型，请上传 CSV 或 XLSX 文件", "unsupported file type: upload a CSV or XLSX file"
        )
    return "csv"


def decode_text(data: bytes) -> tuple[str, str]:
    """The text of a CSV and the encoding it was in."""
    if data.startswith(codecs.BOM_UTF8):
        encoding, body = "utf-8-sig", data[len(codecs.BOM_UTF8) :]
        try:
            return body.decode("utf-8"), encoding
        except UnicodeDecodeError:
            pass
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    else:
        # Strict UTF-8 almost never accepts GB18030 Chinese by accident, so it goes first.
        for encoding in ("utf-8", "gb18030"):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError:
                continue
    raise _FileError(
        "无法识别文件编码，请另存为 UTF-8 或 GB18030 编码的 CSV，或使用 XLSX",
        "the text encoding is not recognised: save as CSV in UTF-8 or GB18030, or use XLSX",
    )


def _csv_rows(data: bytes) -> tuple[Iterator[tuple[int, tuple[Any, ...]]], str]:
    text, encoding = decode_text(data)
    first_line = text[: text.find("\n")] if "\n" in text else text
    delimiter = max((",", "\t", ";"), key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)

    def rows() -> Iterator[tuple[int, tuple[Any, ...]]]:
        # A quoted value may span lines; Excel still shows it as one row, which is what we count.
        try:
            for number, row in enumerate(reader, start=1):
                yield number, tuple(row)
        except csv.Error as error:
            raise _FileError(
                f"CSV 格式错误（第{reader.line_num}行附近）：{error}",
                f"malformed CSV near line {reader.line_num}: {error}",
            ) from None

    return rows(), encoding


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, tuple[Any, ...]]]:
    corrupt = _FileError(
        "XLSX 文件已损坏或不完整，无法读取，请重新保存后再上传",
        "the XLSX file is damaged or incomplete and cannot be read: save it again and re-upload",
    )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sum(info.file_size for info in archive.infolist()) > MAX_XLSX_UNCOMPRESSED_BYTES:
                raise _FileError("XLSX 文件解压后过大", "the XLSX file expands to more than we accept")
            # A truncated member shows only when read: check every one before parsing any.
            if archive.testzip() is not None:
                raise corrupt
        rows = xlsx.read_rows(data)
    except xlsx.NotAWorkbook:
        raise _FileError(
            "这是压缩文件，但不是 XLSX 表格（如 .docx、.ods 或 .zip），请上传 CSV 或 XLSX",
            "a zip archive but not an XLSX workbook (.docx, .ods, .zip?): upload CSV or XLSX",
        ) from None
    except xlsx.NoWorksheet:
        raise _FileError("XLSX 文件中没有工作表", "the XLSX file has no worksheet") from None
    # zipfile raises NotImplementedError for a compression method it cannot read: to the user that
    # is a file we cannot open, like any other corruption.
    except (xlsx.XlsxError, zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError):
        raise corrupt from None

    def guarded() -> Iterator[tuple[int, tuple[Any, ...]]]:
        try:
            yield from rows
        except xlsx.XlsxError:
            raise corrupt from None

    return guarded()


# ---------------------------------------------------------------------------------------------
# Cell values


def _is_blank(value: Any) -> bool:
    return value is None or (value.__class__ is str and not value.strip())


def _is_blank_row(row: tuple[Any, ...]) -> bool:
    # Stops at the first filled cell, usually the first: this runs for every row of the file.
    return not any(cell is not None and (cell.__class__ is not str or cell.strip()) for cell in row)


def _text(value: Any) -> str:
    """A cell as text: integral numbers without ``.0`` (phones and book numbers are often numeric)."""
    if value.__class__ is str:
        text = value.strip()
        if "\u200b" in text or "\ufeff" in text:  # invisible characters pasted from web pages
            text = text.replace("\u200b", "").replace("\ufeff", "").strip()
        return text
    if isinstance(value, bool):
        return YES if value else NO
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    return str(value)


def _unwrap_text(text: str) -> str:
    # Ways to keep Excel from turning digits into a number: a leading apostrophe or tab, ="...".
    if text.startswith('="') and text.endswith('"'):
        text = text[2:-1]
    return text.lstrip("'\t").strip()


def _bounded_text(value: Any, limit: int) -> str:
    text = _text(value)
    if len(text) > limit:
        raise _CellError(f"超过{limit}个字符", f"longer than {limit} characters")
    return text


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _CellError("应为数字", "must be a number")
    try:
        number = float(value)  # numbers, and text float() reads as it is (the common case)
    except (TypeError, ValueError):
        # Full-width digits and thousands separators, as typed on a Chinese keyboard.
        text = unicodedata.normalize("NFKC", _text(value)).replace(",", "")
        try:
            number = float(text)
        except ValueError:
            raise _CellError(f"“{_text(value)}”不是数字", f"'{_text(value)}' is not a number") from None
    if not math.isfinite(number):
        raise _CellError("应为数字", "must be a number")
    return number


def _ranged(value: Any, low: float, high: float) -> float:
    number = _number(value)
    if not low <= number <= high:
        raise _CellError(f"应在 {low:g} 至 {high:g} 之间", f"must be between {low:g} and {high:g}")
    return number


def _count(value: Any, low: int, high: int) -> int:
    number = _number(value)
    if not number.is_integer():
        raise _CellError("应为整数", "must be a whole number")
    if not low <= number <= high:
        raise _CellError(f"应在 {low} 至 {high} 之间", f"must be between {low} and {high}")
    return int(number)


_FLAG_WORDS = {
    **dict.fromkeys(("是", "y", "yes", "1", "✓", "✔", "√", "true", "t", "有"), True),
    **dict.fromkeys(("否", "n", "no", "0", "✗", "✘", "×", "false", "f", "无"), False),
}


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    flag = _FLAG_WORDS.get(value) if value.__class__ is str else None
    if flag is None:
        flag = _FLAG_WORDS.get(unicodedata.normalize("NFKC", _text(value)).lower())
    if flag is not None:
        return flag
    raise _CellError(f"“{_text(value)}”应为 是 或 否", f"'{_text(value)}' must be yes or no (是/否)")


_SEX = {"男": "M", "m": "M", "male": "M", "女": "F", "f": "F", "female": "F"}


def _sex(value: Any) -> str:
    sex = _SEX.get(value) if value.__class__ is str else None
    if sex is None:
        sex = _SEX.get(unicodedata.normalize("NFKC", _text(value)).lower())
    if sex is None:
        raise _CellError(f"“{_text(value)}”应为 男 或 女", f"'{_text(value)}' must be male or female (男/女)")
    return sex


_DATE_PATTERNS = (
    re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?(?:\s+0?0:00(?::00)?)?$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
)


def _date(value: Any, today: date) -> date:
    if isinstance(value, datetime):
        born = value.date()
    elif isinstance(value, date):
        born = value
    elif value.__class__ is str and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            born = date.fromisoformat(value)  # the common case, and the export's
        except ValueError:
            raise _CellError(f"日期“{value}”不存在", f"the date '{value}' does not exist") from None
    else:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        text = unicodedata.normalize("NFKC", _text(value))
        for pattern in _DATE_PATTERNS:
            match = pattern.match(text)
            if match:
                try:
                    born = date(*(int(part) for part in match.groups()))
                except ValueError:
                    raise _CellError(f"日期“{text}”不存在", f"the date '{text}' does not exist") from None
                break
        else:
            raise _CellError(
                f"“{text}”不是日期，应为 YYYY-MM-DD", f"'{text}' is not a date: write YYYY-MM-DD"
            )
    if not EARLIEST_BIRTH <= born <= today:
        raise _CellError("出生日期不合理", "the birth date is out of range")
    return born


def _id_number(value: Any) -> IdNumber | None:
    """The checked number, or None for the masked form (keep the stored number)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise _CellError(
            "身份证号被存成了数字（Excel 只保留15位，末几位已丢失），请把该列设为文本后重新填写",
            "the ID number is stored as a number (Excel keeps 15 digits, the rest are lost): "
            "format the column as text and enter it again",
        )
    text = _unwrap_text(_text(value)).upper()
    if MASKED_ID_PATTERN.match(text):
        return None
    if SCIENTIFIC_PATTERN.match(text):
        raise _CellError(
            "身份证号被 Excel 转成了科学计数法，原号码已丢失，请把该列设为文本后重新填写",
            "Excel turned the ID number into scientific notation and lost it: format the column "
            "as text and enter it again",
        )
    try:
        return parse_id_number(text)
    except InvalidIdNumber as error:
        raise _CellError(error.message_zh, error.message_en) from None


_HEAD_ALIASES = {"户主", "本人", "head", "self"}


def _relation(value: Any, limit: int) -> str:
    text = _bounded_text(value, limit)
    return HEAD_RELATION if text.lower() in _HEAD_ALIASES else text


def _phone(value: Any) -> str:
    text = _unwrap_text(_text(value))
    if not _PHONE.match(text):
        raise _CellError(f"“{text}”不是有效的电话号码", f"'{text}' is not a valid phone number")
    return text


def _max_length(model: type, name: str) -> int:
    for item in model.model_fields[name].metadata:
        limit = getattr(item, "max_length", None)
        if limit is not None:
            return limit
    raise LookupError(name)


class _Parsers:
    """One converter per column key, each raising _CellError with both languages."""

    def __init__(self, unit_codes: dict[str, int]):
        today = date.today()  # once per file, not once per cell
        self.units = {code.strip().lower(): unit_id for code, unit_id in unit_codes.items()}
        self.unit_ids = set(unit_codes.values())
        lengths = {
            "book_no": _max_length(HouseholdIn, "book_no"),
            "head_name": _max_length(HouseholdIn, "head_name"),
            "head_name_bo": _max_length(HouseholdIn, "head_name_bo"),
            "address": _max_length(HouseholdIn, "address"),
            "name": _max_length(MemberIn, "name"),
            "name_bo": _max_length(MemberIn, "name_bo"),
            "ethnicity": _max_length(MemberIn, "ethnicity"),
            "relation": _max_length(MemberIn, "relation"),
        }
        self.by_key: dict[str, Any] = {
            key: (lambda value, key=key, limit=limit: _bounded_text(value, limit))
            for key, limit in lengths.items()
        }
        self.by_key["book_no"] = lambda value: _unwrap_text(_bounded_text(value, lengths["book_no"]))
        self.by_key.update(
            liaison_unit=self.unit,
            lat=lambda value: _ranged(value, -90, 90),
            lon=lambda value: _ranged(value, -180, 180),
            grassland_area_mu=lambda value: _ranged(value, 0, 10_000_000),
            sex=_sex,
            birth_date=lambda value: _date(value, today),
            relation=lambda value: _relation(value, lengths["relation"]),
            phone=_phone,
            id_number=_id_number,
            livestock_year=lambda value: _count(value, 1949, 2100),
        )
        for key in FLAG_KEYS:
            self.by_key[key] = _flag
        for key in SPECIES_KEYS:
            self.by_key[key] = lambda value: _count(value, 0, 1_000_000)

    def unit(self, value: Any) -> int:
        text = _unwrap_text(_text(value))
        unit_id = self.units.get(text.lower())
        if unit_id is None and text.isdigit() and int(text) in self.unit_ids:
            unit_id = int(text)
        if unit_id is None:
            raise _CellError(f"联户单元“{text}”不存在", f"no liaison unit '{text}'")
        return unit_id


# ---------------------------------------------------------------------------------------------
# Grouping rows into households


@dataclass
class _Household:
    book_no: str
    rows: list[int] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # household-level values, first stated
    value_rows: dict[str, int] = field(default_factory=dict)  # ... and the row that stated each
    members: list[MemberIn] = field(default_factory=list)
    member_rows: list[int] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)  # keys with a cell that did not parse
    broken: bool = False  # a row of it failed: it is not built, its errors are already reported


def _display(value: Any) -> str:
    if isinstance(value, bool):
        return YES if value else NO
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _header_row(
    rows: Iterator[tuple[int, tuple[Any, ...]]],
) -> tuple[int, tuple[Any, ...], list[tuple[int, tuple[Any, ...]]]]:
    """The header row (the first naming 户口簿编号 within HEADER_SEARCH_ROWS, else the first
    non-blank row) and the rows read past it while looking, which are data."""
    seen: list[tuple[int, tuple[Any, ...]]] = []
    for number, row in rows:
        seen.append((number, row))
        if any(
            not _is_blank(cell) and HEADER_LOOKUP.get(normalise_header(cell)) == "book_no" for cell in row
        ):
            return number, row, []
        if number >= HEADER_SEARCH_ROWS:
            break
    for index, (number, row) in enumerate(seen):
        if not _is_blank_row(row):
            return number, row, seen[index + 1 :]
    raise _FileError("文件是空的，没有表头", "the file is empty: no header row")


def parse_and_validate(data: bytes, filename_or_type: str, unit_codes: dict[str, int]) -> ImportResult:
    """Read and check every row of a CSV or XLSX file; households come back only if all is well.

    ``unit_codes`` maps liaison-unit codes to ids (see :func:`liaison_unit_codes`); a cell may also
    name one of those ids. Never raises for anything in the file: problems are in ``errors``.
    """
    result = ImportResult()
    errors = _Errors()
    try:
        if len(data) > MAX_FILE_BYTES:
            size, limit = len(data) / 1048576, MAX_FILE_BYTES // 1048576
            raise _FileError(
                f"文件过大（{size:.1f} MB），上限为 {limit} MB，请分成几个文件导入",
                f"the file is too large ({size:.1f} MB; the limit is {limit} MB): split it into several",
            )
        result.file_type = detect_type(data, filename_or_type)
        if result.file_type == "xlsx":
            rows = _xlsx_rows(data)
        else:
            rows, result.encoding = _csv_rows(data)
        _Reader(_Parsers(unit_codes), errors, result).read(rows)
    except _FileError as error:
        errors.add(None, None, error.zh, error.en)
    result.errors, result.error_count = errors.items, errors.count
    if not result.ok:
        result.households = []
    return result


class _Reader:
    """One pass over the rows: check each cell, group members by household, then build the items."""

    def __init__(self, parsers: _Parsers, errors: _Errors, result: ImportResult):
        self.parsers = parsers
        self.errors = errors
        self.result = result
        self.keys: list[str | None] = []  # per position in the row
        self.plan: list[tuple[int, str, Any]] = []  # (position, key, parser) of each named column
        self.written: dict[str, str] = {}  # key -> the header as written in the file
        self.households: dict[str, _Household] = {}
        self.id_rows: dict[str, int] = {}  # ID number -> the first row that gave it

    def column(self, key: str) -> str:
        return self.written.get(key, COLUMN_BY_KEY[key].header)

    def read(self, rows: Iterator[tuple[int, tuple[Any, ...]]]) -> None:
        header_number, header, pending = _header_row(rows)
        if not self._header(header_number, header):
            return  # without a sound header the cells cannot be read sensibly
        unnamed = [i for i, key in enumerate(self.keys) if key is None]
        data_rows = 0
        for number, row in itertools.chain(pending, rows):
            if _is_blank_row(row):
                continue
            data_rows += 1
            if data_rows > MAX_ROWS:
                raise _FileError(
                    f"行数超过上限 {MAX_ROWS:,}，请分成几个文件导入",
                    f"more than {MAX_ROWS:,} rows: split the file into several",
                )
            for i in list(unnamed):
                if i < len(row) and not _is_blank(row[i]):
                    unnamed.remove(i)  # once per column is enough
                    self.errors.add(
                        number, None, f"第{i + 1}列有数据但没有列名", f"column {i + 1} has data but no header"
                    )
            self._row(number, row)
        self.result.rows = data_rows
        if data_rows == 0:
            self.errors.add(None, None, "文件中没有数据行", "the file has no data rows")
            return
        for household in self.households.values():
            self._build(household)

    def _header(self, number: int, header: tuple[Any, ...]) -> bool:
        before = self.errors.count
        for cell in header:
            if _is_blank(cell):
                self.keys.append(None)
                continue
            text = _text(cell)
            key = HEADER_LOOKUP.get(normalise_header(text))
            if key is None:
                self.errors.add(number, text, f"无法识别的列名“{text}”", f"unknown column '{text}'")
            elif key in self.written:
                first = self.written[key]
                self.errors.add(
                    number, text, f"列“{text}”与“{first}”重复", f"column '{text}' repeats '{first}'"
                )
                key = None
            else:
                self.written[key] = text
            self.keys.append(key)
        for column in COLUMNS:
            if column.required and column.key not in self.written:
                self.errors.add(
                    number,
                    column.header,
                    f"缺少必填列“{column.header}”",
                    f"the required column '{column.header}' ({column.alias}) is missing",
                )
        self.result.columns = tuple(self.written)
        self.result.headers = self.written
        self.plan = [(i, key, self.parsers.by_key[key]) for i, key in enumerate(self.keys) if key]
        return self.errors.count == before

    def _row(self, number: int, row: tuple[Any, ...]) -> None:
        raw: dict[str, Any] = {}
        values: dict[str, Any] = {}
        failed: set[str] = set()
        width = len(row)
        for index, key, parse in self.plan:  # in column order: stop at the row's last cell
            if index >= width:
                break
            cell = row[index]
            if cell is None or (cell.__class__ is str and not cell.strip()):
                continue
            raw[key] = cell
            try:
                values[key] = parse(cell)
            except _CellError as error:
                failed.add(key)
                self.errors.add(number, self.column(key), error.zh, error.en)
        book_no = values.get("book_no")
        if "book_no" not in raw or book_no == "":
            self.errors.add(
                number, self.column("book_no"), "缺少户口簿编号", "the household-book number is missing"
            )
            return
        if book_no is None:
            return  # its error is reported; the row cannot be placed in a household
        household = self.households.get(book_no)
        if household is None:
            household = self.households[book_no] = _Household(book_no)
        household.rows.append(number)
        household.failed |= failed
        household.broken |= bool(failed)
        self._household_values(number, household, values)
        if any(key in raw for key in MEMBER_KEYS):
            self._member(number, household, raw, values, bool(failed))

    def _household_values(self, number: int, household: _Household, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key not in HOUSEHOLD_KEY_SET:
                continue
            if key not in household.values:
                household.values[key], household.value_rows[key] = value, number
            elif household.values[key] != value:
                household.broken = True
                first, old = household.value_rows[key], _display(household.values[key])
                self.errors.add(
                    number,
                    self.column(key),
                    f"同一户（{household.book_no}）第{first}行为“{old}”，此行为“{_display(value)}”，两者不一致",
                    f"disagrees with row {first} of the same household ({household.book_no}): "
                    f"'{old}' there, '{_display(value)}' here",
                )

    def _member(
        self, number: int, household: _Household, raw: dict[str, Any], values: dict[str, Any], bad: bool
    ) -> None:
        for key in ("name", "relation"):
            if key not in raw:
                bad = True
                column = COLUMN_BY_KEY[key]
                self.errors.add(
                    number, self.column(key), f"缺少{column.header}", f"the {column.alias} is missing"
                )
        parsed = values.get("id_number")
        if parsed is not None:
            bad |= self._id_agrees(number, parsed, values)
        if bad:
            household.broken = True
            return
        # Every column the file has is sent, blank ones as None: the file is the truth for what it
        # covers, and the write path leaves alone what it does not (and never clears an ID number).
        fields = {key: values.get(key) for key in MEMBER_KEYS if key in self.written}
        if parsed is not None:
            fields["id_number"] = parsed.number
        try:
            member = MemberIn.model_validate(fields)
        except ValidationError as error:
            household.broken = True
            self._validation(error, number)
            return
        household.members.append(member)
        household.member_rows.append(number)

    def _id_agrees(self, number: int, parsed: IdNumber, values: dict[str, Any]) -> bool:
        """Report a repeated ID number, or one the birth date or sex contradicts; True if any."""
        bad = False
        first = self.id_rows.setdefault(parsed.number, number)
        if first != number:
            bad = True
            self.errors.add(
                number,
                self.column("id_number"),
                f"身份证号与第{first}行重复",
                f"the same ID number as on row {first}",
            )
        born = parsed.birth_date.isoformat()
        if "birth_date" in values and values["birth_date"] != parsed.birth_date:
            bad = True
            self.errors.add(
                number,
                self.column("birth_date"),
                f"出生日期与身份证号不符（身份证号中为 {born}）",
                f"does not match the birth date in the ID number ({born})",
            )
        if "sex" in values and values["sex"] != parsed.sex:
            bad = True
            zh, en = ("男", "male") if parsed.sex == "M" else ("女", "female")
            self.errors.add(
                number,
                self.column("sex"),
                f"性别与身份证号不符（身份证号中为{zh}）",
                f"does not match the sex in the ID number ({en})",
            )
        return bad

    def _validation(self, error: ValidationError, number: int) -> None:
        # A backstop: the checks above mirror the schema, so this is reached only if the two drift.
        for item in error.errors(include_input=False, include_url=False):
            key = str(item["loc"][0]) if item["loc"] else ""
            column = self.column(key) if key in COLUMN_BY_KEY else None
            self.errors.add(number, column, f"取值无效：{item['msg']}", f"invalid value: {item['msg']}")

    def _build(self, household: _Household) -> None:
        self.result.rows_by_book[household.book_no] = household.rows
        self.result.member_rows_by_book[household.book_no] = household.member_rows
        values = household.values
        heads = [i for i, member in enumerate(household.members) if member.relation == HEAD_RELATION]
        for i in heads[1:]:
            household.broken = True
            first = household.member_rows[heads[0]]
            self.errors.add(
                household.member_rows[i],
                self.column("relation"),
                f"同一户（{household.book_no}）第{first}行已是户主，每户只能有一名户主",
                f"row {first} is already the head of household {household.book_no}: only one 户主 each",
            )
        if heads and "head_name" not in values:
            # Only the name is taken from the head's row: it is required, and a blank cell can mean
            # nothing else. A blank 户主藏文名 stays blank, as written.
            values["head_name"] = household.members[heads[0]].name
        # A value that did not parse is reported already; these are for values never given.
        if "head_name" not in values and "head_name" not in household.failed:
            household.broken = True
            self.errors.add(
                household.rows[0],
                self.column("head_name"),
                f"户口簿 {household.book_no} 缺少户主姓名（也没有关系为“户主”的成员）",
                f"household {household.book_no} has no head name (and no member whose relation is 户主)",
            )
        if "liaison_unit" not in values and "liaison_unit" not in household.failed:
            household.broken = True
            self.errors.add(
                household.rows[0],
                self.column("liaison_unit"),
                f"户口簿 {household.book_no} 缺少联户单元",
                f"household {household.book_no} has no liaison unit",
            )
        counted = [key for key in SPECIES_KEYS if key in values]
        if counted and "livestock_year" not in values and "livestock_year" not in household.failed:
            household.broken = True
            self.errors.add(
                household.value_rows[counted[0]],
                self.column("livestock_year"),
                "填了牲畜数，但缺少统计年度",
                "livestock counts need the year they were counted",
            )
        if household.broken:
            return
        try:
            item = HouseholdIn(**self._household_fields(household, counted))
        except ValidationError as error:
            for problem in error.errors(include_input=False, include_url=False):
                self.errors.add(
                    household.rows[0],
                    None,
                    f"户口簿 {household.book_no}：{problem['msg']}",
                    f"household {household.book_no}: {problem['msg']}",
                )
            return
        self.result.households.append(item)

    def _household_fields(self, household: _Household, counted: list[str]) -> dict[str, Any]:
        """What HouseholdIn gets: only the columns the file has, so the write path keeps the rest."""
        values = household.values
        fields: dict[str, Any] = {
            "book_no": household.book_no,
            "liaison_unit_id": values["liaison_unit"],
            "head_name": values["head_name"],
            "members": household.members,
        }
        for key in ("head_name_bo", "address", "lat", "lon", "grassland_area_mu"):
            if key in self.written or key in values:
                fields[key] = values.get(key)
        if any(key in self.written for key in FLAG_KEYS):
            fields["flags"] = {key for key in FLAG_KEYS if values.get(key)}
        if any(key in self.written for key in SPECIES_KEYS):
            fields["livestock"] = [
                LivestockIn(year=values["livestock_year"], species=key, head_count=values[key])
                for key in counted
            ]
        return fields


# ---------------------------------------------------------------------------------------------
# Writing


def liaison_unit_codes(session: Session, scope: str = "") -> dict[str, int]:
    """Code -> id of every liaison unit under the ``scope`` path (all for ``""``); units without a
    code are reachable by their id alone. A unit outside the scope reads as unknown."""
    query = select(OrgUnit.code, OrgUnit.id).where(OrgUnit.kind == "liaison")
    if scope:
        query = query.where(OrgUnit.path.startswith(scope, autoescape=True))
    rows = session.execute(query).all()
    codes = {code: unit_id for code, unit_id in rows if code}
    codes.update({str(unit_id): unit_id for code, unit_id in rows if not code})
    return codes


def import_file(
    session: Session,
    data: bytes,
    filename_or_type: str,
    actor: Actor,
    reason: str | None,
    protector: Protector,
    scope: str = "",
) -> dict[str, Any]:
    """Validate the whole file, then write all of it in one transaction, or nothing.

    ``scope`` (an org path; ``""`` for the whole county) bounds what the file may touch: liaison
    units outside it are unknown, and a book number registered outside it is refused, so a township
    cannot take over another township's households by listing them.

    Returns ``{"imported": True, "rows": n, "counts": {...}}`` (the counts of
    :func:`records.apply_households`) or ``{"imported": False, "errors": [...], "error_count": n,
    "errors_truncated": bool}``. The session must hold no pending work: this function ends its
    transactions itself, committing on success and rolling back on refusal or any failure.
    """
    try:
        unit_codes = liaison_unit_codes(session, scope)
        # End the read before parsing: on SQLite every transaction holds the write lock (BEGIN
        # IMMEDIATE), and other writers must not wait through seconds of parsing. The write path
        # checks the units again inside its own transaction.
        session.rollback()
        result = parse_and_validate(data, filename_or_type, unit_codes)
        if not result.ok:
            session.rollback()
            return _refused(result.errors, result.error_count)
        foreign = _registered_elsewhere(session, result, scope) if scope else []
        if foreign:
            session.rollback()
            return _refused(foreign[:MAX_ERRORS], len(foreign))
        _keep_unstated_flags(session, result)
        try:
            counts = records.apply_households(session, result.households, actor, reason, protector)
        except records.RecordError as error:
            session.rollback()
            problems = [_record_error(problem, result) for problem in error.problems]
            return _refused(problems[:MAX_ERRORS], len(problems))
        session.commit()
    except BaseException:
        session.rollback()
        raise
    counts.pop("household_ids", None)  # one per household: too much to hand back for a whole county
    return {"imported": True, "rows": result.rows, "counts": counts}


def _registered_elsewhere(session: Session, result: ImportResult, scope: str) -> list[dict[str, Any]]:
    """An error for each household of the file whose book number is registered outside ``scope``."""
    books = [item.book_no for item in result.households]
    errors = []
    column = result.headers.get("book_no", COLUMN_BY_KEY["book_no"].header)
    for start in range(0, len(books), 1000):
        rows = session.execute(
            select(Household.book_no, OrgUnit.path)
            .join(OrgUnit, OrgUnit.id == Household.liaison_unit_id)
            .where(Household.book_no.in_(books[start : start + 1000]))
        )
        errors += [
            {
                "row": result.rows_by_book[book_no][0],
                "column": column,
                "message_zh": "该户口簿编号已登记在您管辖范围以外的单元",
                "message_en": "this household book is registered to a unit outside your area",
            }
            for book_no, path in rows
            if not path.startswith(scope)
        ]
    return sorted(errors, key=lambda error: error["row"])


def _keep_unstated_flags(session: Session, result: ImportResult) -> None:
    """With only some flag columns in the file, the others keep their stored values.

    The write path takes ``flags`` as one set, so a file with 低保户 alone would otherwise clear
    残疾 and the rest for every household in it.
    """
    stated = [key for key in FLAG_KEYS if key in result.columns]
    unstated = [key for key in FLAG_KEYS if key not in result.columns]
    if not stated or not unstated:
        return
    by_book = {item.book_no: item for item in result.households}
    columns = [getattr(Household, f"flag_{key}") for key in unstated]
    books = list(by_book)
    for start in range(0, len(books), 1000):
        chunk = books[start : start + 1000]
        for book_no, *flags in session.execute(
            select(Household.book_no, *columns).where(Household.book_no.in_(chunk))
        ):
            item = by_book[book_no]
            item.flags = item.flags | {key for key, on in zip(unstated, flags, strict=True) if on}


def _refused(errors: list[dict[str, Any]], count: int) -> dict[str, Any]:
    return {
        "imported": False,
        "errors": errors,
        "error_count": count,
        "errors_truncated": count > len(errors),
    }


_FIELD_COLUMNS = {"liaison_unit_id": "liaison_unit"}


def _record_error(problem: records.RecordError, result: ImportResult) -> dict[str, Any]:
    """A refusal of the write path, pointed at the household's (or the member's) row in the file."""
    row = column = None
    parts = problem.field.split(".")
    if problem.index is not None and 0 <= problem.index < len(result.households):
        book_no = result.households[problem.index].book_no
        rows = result.rows_by_book.get(book_no) or [None]
        row = rows[0]
        if parts[0] == "members" and len(parts) > 1 and parts[1].isdigit():
            member_rows = result.member_rows_by_book.get(book_no, [])
            if int(parts[1]) < len(member_rows):
                row = member_rows[int(parts[1])]
    key = _FIELD_COLUMNS.get(parts[-1], parts[-1])
    if key in COLUMN_BY_KEY:
        column = result.headers.get(key, COLUMN_BY_KEY[key].header)
    return {"row": row, "column": column, "message_zh": problem.message_zh, "message_en": problem.message_en}
