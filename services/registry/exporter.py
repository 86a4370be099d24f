"""Export of the household registry in the import format, and the blank template.

Both write exactly the columns of :data:`services.registry.importer.COLUMNS`, so an export (or a
filled-in template) imports back; an unedited export re-imports to "no change". One row per member;
a household with no members is one row with the member cells blank. Households come in book-number
order, members head first then in the order they were registered, livestock for the latest year
counted. XLSX puts the data on the first sheet (户籍) and the column notes on a second (填写说明);
CSV is UTF-8 with a BOM (so Excel opens it in Chinese) and CRLF line ends.

Rows are produced household chunk by household chunk and written as they come (CSV in chunks,
XLSX through openpyxl's write-only workbook), so 100,000 members never sit in memory as objects.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.registry.importer import COLUMNS, HEAD_RELATION, NO, YES
from services.registry.models import FLAGS, Household, Livestock, Member, OrgUnit
from services.registry.protection import Protector, UndecryptableValue

log = logging.getLogger(__name__)

DATA_SHEET = "户籍"
NOTES_SHEET = "填写说明"
CHUNK = 1000
UNIT_PATH = re.compile(r"^/(\d+/)+$")
# Cells Excel must keep as typed text: long digit strings would become numbers and lose digits.
TEXT_COLUMNS = frozenset({"book_no", "liaison_unit", "phone", "id_number"})
COLUMN_WIDTHS = {"book_no": 20, "liaison_unit": 20, "address": 24, "id_number": 21, "phone": 14}
SEX_TEXT = {"M": "男", "F": "女"}

GENERAL_NOTES = (
    ("每行填写一名家庭成员；同一户的各行户口簿编号相同，户的信息（联户单元、住址、标识、牲畜等）在各行重复填写或只填一行。",
     "One row per household member; the rows of one household share its book number, and the household "
     "columns (unit, address, flags, livestock...) are repeated on each row or filled on one of them."),
    ("第1行的列名可用中文或英文；未列出的列可以不要，已有的数据保持不变。",
     "Headers may be Chinese or English; a column left out leaves the stored data as it is."),
    ("整个文件先全部检查，有任何错误都不会导入，并列出每个错误所在的行和列；同一文件重复导入不会改变数据。",
     "The whole file is checked first: any error and nothing is imported, every error listed by row "
     "and column. Importing the same file again changes nothing."),
    ("身份证号、户口簿编号、电话请用文本格式；"
     "导出的打码身份证号（如 632623**********12）导入时保持原号码不变。",
     "Keep ID numbers, book numbers and phones as text; a masked ID number from an export "
     "(632623**********12) keeps the stored number."),
)  # fmt: skip
TEMPLATE_NOTE = (
    "模板第2行是示例，导入前请删除。",
    "Row 2 of the template is an example: delete it before importing.",
)


def template_rows() -> list[list[Any]]:
    """The header and the one example row, typed as the XLSX writes them."""
    return [[column.header for column in COLUMNS], [column.example for column in COLUMNS]]


def template_csv() -> bytes:
    return b"".join(_csv_chunks(template_rows()))


def template_xlsx() -> bytes:
    return _xlsx(template_rows(), template=True)


def export_households(
    session: Session,
    unit_path: str | None,
    fmt: Literal["csv", "xlsx"],
    protector: Protector | None,
    include_id_numbers: bool,
) -> bytes:
    """The households under ``unit_path`` (a materialised path like ``/1/5/``; None for all).

    ID numbers come out masked unless ``include_id_numbers``, when they are decrypted with
    ``protector``. This function does not decide who may have them: the caller checks the actor's
    role (``records.can_see_sensitive``) and writes the ``read_sensitive`` audit entry for the export.
    """
    if fmt not in ("csv", "xlsx"):
        raise ValueError(f"unknown export format {fmt!r}: csv or xlsx")
    if include_id_numbers and protector is None:
        raise ValueError("clear ID numbers need the protector to decrypt them")
    rows = export_rows(session, unit_path, protector if include_id_numbers else None)
    if fmt == "csv":
        return b"".join(_csv_chunks(rows))
    return _xlsx(rows)


def iter_export_csv(
    session: Session, unit_path: str | None, protector: Protector | None, include_id_numbers: bool
) -> Iterator[bytes]:
    """The CSV export as chunks of bytes, for a streaming HTTP response; same rules as above."""
    if include_id_numbers and protector is None:
        raise ValueError("clear ID numbers need the protector to decrypt them")
    yield from _csv_chunks(export_rows(session, unit_path, protector if include_id_numbers else None))


def export_rows(
    session: Session, unit_path: str | None, decrypt_with: Protector | None
) -> Iterator[list[Any]]:
    """The header, then one typed row per member (dates as dates, numbers as numbers)."""
    if unit_path is not None and not UNIT_PATH.match(unit_path):
        raise ValueError(f"not a unit path: {unit_path!r}")
    yield [column.header for column in COLUMNS]
    ids_query = (
        select(Household.id)
        .join(OrgUnit, OrgUnit.id == Household.liaison_unit_id)
        .order_by(Household.book_no)
    )
    if unit_path is not None:
        ids_query = ids_query.where(OrgUnit.path.startswith(unit_path, autoescape=True))
    ids = list(session.scalars(ids_query))
    for start in range(0, len(ids), CHUNK):
        yield from _chunk_rows(session, ids[start : start + CHUNK], decrypt_with)


def _chunk_rows(session: Session, ids: list[int], decrypt_with: Protector | None) -> Iterator[list[Any]]:
    households = {
        row.id: row
        for row in session.execute(
            select(*Household.__table__.c, OrgUnit.code.label("unit_code"))
            .join(OrgUnit, OrgUnit.id == Household.liaison_unit_id)
            .where(Household.id.in_(ids))
        )
    }
    members: dict[int, list[Any]] = defaultdict(list)
    for row in session.execute(
        select(*Member.__table__.c).where(Member.household_id.in_(ids)).order_by(Member.id)
    ):
        members[row.household_id].append(row)
    livestock: dict[int, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for household_id, year, species, head_count in session.execute(
        select(Livestock.household_id, Livestock.year, Livestock.species, Livestock.head_count).where(
            Livestock.household_id.in_(ids)
        )
    ):
        livestock[household_id][year][species] = head_count

    for household_id in ids:  # already in book-number order
        household = households[household_id]
        years = livestock.get(household_id)
        year = max(years) if years else None
        counts = years[year] if year is not None else {}
        values: dict[str, Any] = {
            "book_no": household.book_no,
            "liaison_unit": household.unit_code or str(household.liaison_unit_id),
            "head_name": household.head_name,
            "head_name_bo": household.head_name_bo,
            "address": household.address,
            "lat": household.lat,
            "lon": household.lon,
            "grassland_area_mu": household.grassland_area_mu,
            **{flag: YES if getattr(household, f"flag_{flag}") else NO for flag in FLAGS},
            "livestock_year": year,
            **counts,
        }
        people = sorted(members.get(household_id, []), key=lambda m: (m.relation != HEAD_RELATION, m.id))
        for member in people or [None]:
            if member is not None:
                values.update(
                    name=member.name,
                    name_bo=member.name_bo,
                    sex=SEX_TEXT.get(member.sex or ""),
                    birth_date=member.birth_date,
                    relation=member.relation,
                    ethnicity=member.ethnicity,
                    phone=member.phone,
                    id_number=_id_number(member, decrypt_with),
                )
            yield [values.get(column.key) for column in COLUMNS]


def _id_number(member: Any, decrypt_with: Protector | None) -> str | None:
    if decrypt_with is None or member.id_number_cipher is None:
        return member.id_number_masked
    try:
        return decrypt_with.decrypt(member.id_number_cipher)
    except UndecryptableValue:
        # The masked form re-imports as "keep the stored number"; the operator needs the member id.
        log.warning("member %s: stored ID number cannot be decrypted; exported masked", member.id)
        return member.id_number_masked


# ---------------------------------------------------------------------------------------------
# Writers


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _csv_chunks(rows: Iterable[list[Any]], rows_per_chunk: int = 2000) -> Iterator[bytes]:
    yield codecs.BOM_UTF8
    buffer = io.StringIO()
    # Excel's own CSV line ends; QUOTE_MINIMAL quotes only cells with commas, quotes or newlines.
    writer = csv.writer(buffer, lineterminator="\r\n")
    for count, row in enumerate(rows, start=1):
        writer.writerow([_csv_text(value) for value in row])
        if count % rows_per_chunk == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _xlsx(rows: Iterable[list[Any]], template: bool = False) -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(DATA_SHEET)
    for index, column in enumerate(COLUMNS, start=1):
        dimension = sheet.column_dimensions[get_column_letter(index)]
        dimension.width = COLUMN_WIDTHS.get(column.key, 12)
        if column.key in TEXT_COLUMNS:
            # Text format on the whole column, so numbers typed in later stay text too.
            dimension.number_format = "@"
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    text_positions = [i for i, column in enumerate(COLUMNS) if column.key in TEXT_COLUMNS]
    date_positions = [i for i, column in enumerate(COLUMNS) if column.key == "birth_date"]
    for count, row in enumerate(rows):
        if count == 0:
            cells: list[Any] = []
            for value in row:
                cell = WriteOnlyCell(sheet, value)
                cell.font = bold
                cells.append(cell)
            sheet.append(cells)
            continue
        out: list[Any] = list(row)
        for i in text_positions:
            if out[i] is not None:
                cell = WriteOnlyCell(sheet, str(out[i]))
                cell.number_format = "@"
                out[i] = cell
        for i in date_positions:
            if out[i] is not None:
                cell = WriteOnlyCell(sheet, out[i])
                cell.number_format = "yyyy-mm-dd"
                out[i] = cell
        sheet.append(out)
    _notes_sheet(workbook.create_sheet(NOTES_SHEET), bold, template)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _notes_sheet(sheet: Any, bold: Any, template: bool) -> None:
    from openpyxl.cell import WriteOnlyCell

    for letter, width in zip("ABCDEF", (18, 20, 8, 50, 60, 22), strict=True):
        sheet.column_dimensions[letter].width = width
    header = ["列名", "English header", "必填", "说明", "Notes", "示例 / Example"]
    cells = []
    for text in header:
        cell = WriteOnlyCell(sheet, text)
        cell.font = bold
        cells.append(cell)
    sheet.append(cells)
    for column in COLUMNS:
        example = column.example.isoformat() if isinstance(column.example, date) else column.example
        sheet.append(
            [
                column.header,
                column.alias,
                "是" if column.required else "",
                column.note_zh,
                column.note_en,
                example,
            ]
        )
    sheet.append([])
    for zh, en in (TEMPLATE_NOTE, *GENERAL_NOTES) if template else GENERAL_NOTES:
        sheet.append([None, None, None, zh, en])
