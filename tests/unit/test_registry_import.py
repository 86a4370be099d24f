"""Registry import and export: the file format, every-row validation, all-or-nothing writes, re-import
as "no change", and the export round trip, on a fresh SQLite file and a fresh PostgreSQL database."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import zipfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lianhu.db import make_engine, make_session_factory, migrate
from services.registry import exporter, importer, xlsx
from services.registry.idnumber import check_character
from services.registry.models import AuditEntry, History, Household, Livestock, Member, OrgUnit
from services.registry.protection import Protector
from services.registry.schemas import Actor

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "registry" / "migrations"
HEADERS = [column.header for column in importer.COLUMNS]
UNIT_CODES = {"t-lw1": 101, "t-lw2": 102}
ACTOR = Actor(username="import-tester", role="governance_centre")


def id_number(born: str, seq: int, region: str = "632623") -> str:
    first17 = f"{region}{born}{seq:03d}"
    return first17 + check_character(first17)


def id_ending_in_x(born: str, male: bool = True) -> str:
    for seq in range(1 if male else 2, 1000, 2):
        number = id_number(born, seq)
        if number.endswith("X"):
            return number
    raise AssertionError("no X check digit for this date")


HEAD_A = id_number("19800501", 15)  # male; a digit check character (one test stores it as a number)
SPOUSE_A = id_number("19820310", 22)  # female
HEAD_B = id_ending_in_x("19750101")


def clean_rows() -> list[dict[str, Any]]:
    """Three households: a family of three with livestock, a single head with the X check digit and
    a flag, and a household listed without members."""
    return [
        {"户口簿编号": "B-001", "联户单元": "t-lw1", "户主姓名": "扎西多杰", "户主藏文名": "བཀྲ་ཤིས་རྡོ་རྗེ",
         "住址": "江千一村", "纬度": "33.70512", "经度": "100.20345", "草场承包面积(亩)": "1250.5",
         "低保户": "否", "残疾": "否", "五保户": "否", "留守老人": "否",
         "姓名": "扎西多杰", "藏文名": "བཀྲ་ཤིས་རྡོ་རྗེ", "性别": "男", "出生日期": "1980-05-01",
         "与户主关系": "户主", "民族": "藏族", "联系电话": "13912345678", "身份证号": HEAD_A,
         "统计年度": "2025", "牦牛": "30", "绵羊": "100", "山羊": "0", "马": "2"},
        # Household cells left blank on the other rows: "as above".
        {"户口簿编号": "B-001", "姓名": "卓玛", "性别": "女", "出生日期": "1982/3/10", "与户主关系": "配偶",
         "民族": "藏族", "身份证号": SPOUSE_A},
        {"户口簿编号": "B-001", "联户单元": "t-lw1", "姓名": "才让", "性别": "男", "出生日期": "2010.6.1",
         "与户主关系": "子", "民族": "藏族"},
        {"户口簿编号": "B-002", "联户单元": "t-lw2", "户主姓名": "索南", "低保户": "是", "残疾": "✓",
         "五保户": "N", "留守老人": "0", "姓名": "索南", "与户主关系": "户主", "身份证号": HEAD_B.lower()},
        {"户口簿编号": "B-003", "联户单元": "102", "户主姓名": "尼玛", "住址": "江千二村"},
    ]  # fmt: skip


def head(book_no: str, name: str, cells: dict[str, str] | None = None) -> dict[str, str]:
    """A one-member household row: the head, in t-lw1, with ``cells`` on top."""
    row = {"户口簿编号": book_no, "联户单元": "t-lw1", "户主姓名": name, "姓名": name, "与户主关系": "户主"}
    return row | (cells or {})


def csv_bytes(
    rows: list[dict[str, Any]],
    headers: list[str] = HEADERS,
    encoding: str = "utf-8-sig",
    delimiter: str = ",",
) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", delimiter=delimiter)
    writer.writerow(headers)
    for row in rows:
        writer.writerow([row.get(header, "") for header in headers])
    return buffer.getvalue().encode(encoding)


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def where(result_errors: list[dict[str, Any]]) -> set[tuple[int | None, str | None]]:
    return {(error["row"], error["column"]) for error in result_errors}


# ---------------------------------------------------------------------------------------------
# Parsing alone (no database)


def test_clean_file_parses_into_households():
    result = importer.parse_and_validate(csv_bytes(clean_rows()), "households.csv", UNIT_CODES)
    assert result.ok, result.errors
    assert (result.file_type, result.encoding, result.rows) == ("csv", "utf-8-sig", 5)
    by_book = {item.book_no: item for item in result.households}
    assert list(by_book) == ["B-001", "B-002", "B-003"]
    a = by_book["B-001"]
    assert (a.liaison_unit_id, a.head_name, a.lat, a.grassland_area_mu, a.flags) == (
        101,
        "扎西多杰",
        33.70512,
        1250.5,
        set(),
    )
    assert [(m.name, m.sex, m.birth_date, m.relation) for m in a.members] == [
        ("扎西多杰", "M", date(1980, 5, 1), "户主"),
        ("卓玛", "F", date(1982, 3, 10), "配偶"),
        ("才让", "M", date(2010, 6, 1), "子"),
    ]
    assert {(e.year, e.species, e.head_count) for e in a.livestock} == {
        (2025, "yak", 30),
        (2025, "sheep", 100),
        (2025, "goat", 0),
        (2025, "horse", 2),
    }
    b = by_book["B-002"]
    # The X check digit, typed in lower case, is the same number; sex and birth date come from it.
    assert b.members[0].id_number == HEAD_B and HEAD_B.endswith("X")
    assert (b.members[0].sex, b.members[0].birth_date) == ("M", date(1975, 1, 1))
    assert b.flags == {"low_income", "disability"}
    assert (b.livestock, b.address) == ([], None)
    c = by_book["B-003"]
    assert (c.liaison_unit_id, c.members, c.head_name) == (102, [], "尼玛")


def test_every_bad_row_is_reported_with_row_column_and_both_languages():
    bad = id_number("19900101", 33)
    wrong_check = HEAD_A[:-1] + ("1" if HEAD_A[-1] != "1" else "2")
    rows = clean_rows() + [
        # 7: a date that does not exist
        head("C-1", "甲", {"出生日期": "1985-02-30"}),
        # 8: wrong check digit
        head("C-2", "乙", {"身份证号": wrong_check}),
        # 9: birth date and sex both contradict the ID number
        head("C-3", "丙", {"身份证号": bad, "出生日期": "1990-01-02", "性别": "女"}),
        # 10: unknown liaison unit, a count that is not a number, a flag that is not yes/no
        head("C-4", "丁", {"联户单元": "no-such-unit", "统计年度": "2025", "牦牛": "三十", "低保户": "可能"}),
        # 11: the ID number of row 2 again
        head("C-5", "戊", {"身份证号": HEAD_A}),
        # 12-13: a second head ("本人" is the head too), and a household value contradicting row 12's
        head("C-6", "己", {"住址": "一村"}),
        {"户口簿编号": "C-6", "联户单元": "t-lw1", "住址": "二村", "姓名": "庚", "与户主关系": "本人"},
        # 14: a member without a name; 15: no household-book number
        {"户口簿编号": "C-7", "联户单元": "t-lw1", "户主姓名": "辛", "与户主关系": "户主", "性别": "男"},
        head("", "壬"),
        # 16: livestock without a year; a phone that is not one; latitude out of range
        head("C-8", "癸", {"绵羊": "12", "联系电话": "abc", "纬度": "95"}),
        # 17: Excel turned an ID number into scientific notation
        head("C-9", "子", {"身份证号": "6.32624E+17"}),
    ]  # fmt: skip
    result = importer.parse_and_validate(csv_bytes(rows), "mixed.csv", UNIT_CODES)
    assert not result.ok and result.households == []
    assert where(result.errors) == {
        (7, "出生日期"),
        (8, "身份证号"),
        (9, "出生日期"),
        (9, "性别"),
        (10, "联户单元"),
        (10, "牦牛"),
        (10, "低保户"),
        (11, "身份证号"),
        (13, "与户主关系"),
        (13, "住址"),
        (14, "姓名"),
        (15, "户口簿编号"),
        (16, "统计年度"),
        (16, "联系电话"),
        (16, "纬度"),
        (17, "身份证号"),
    }
    assert result.error_count == len(result.errors) == 16
    for error in result.errors:
        assert error["message_zh"] and error["message_en"]
        assert error["message_zh"] != error["message_en"]
    messages = {(e["row"], e["column"]): e for e in result.errors}
    assert "校验位" in messages[(8, "身份证号")]["message_zh"]
    assert "check character" in messages[(8, "身份证号")]["message_en"]
    assert "第2行" in messages[(11, "身份证号")]["message_zh"]
    assert "row 12" in messages[(13, "住址")]["message_en"]
    assert "科学计数法" in messages[(17, "身份证号")]["message_zh"]
    # The message names the other row, never repeats the ID number itself.
    assert all(HEAD_A not in e["message_zh"] + e["message_en"] for e in result.errors)


def test_unknown_missing_and_repeated_headers_are_row_1():
    headers = ["户口簿编号", "联户单元", "户主姓名", "姓名", "备注", "Name"]
    result = importer.parse_and_validate(csv_bytes([], headers=headers), "x.csv", UNIT_CODES)
    assert where(result.errors) == {(1, "备注"), (1, "Name"), (1, "与户主关系")}
    missing = next(e for e in result.errors if e["column"] == "与户主关系")
    assert "缺少" in missing["message_zh"] and "missing" in missing["message_en"]


def test_header_aliases_variants_and_a_title_row():
    english = {c.header: c.alias for c in importer.COLUMNS}
    headers = [english[h] for h in HEADERS]
    headers[headers.index("grassland_area_mu")] = "草场承包面积（亩）"  # full-width brackets
    headers[headers.index("id_number")] = "公民身份号码"
    headers[headers.index("book_no")] = " Book No "
    rows = [{headers[HEADERS.index(k)]: v for k, v in row.items()} for row in clean_rows()]
    text = "甘德县江千乡户籍信息表\r\n" + csv_bytes(rows, headers=headers).decode("utf-8-sig")
    result = importer.parse_and_validate(text.encode("utf-8"), "upload", UNIT_CODES)
    assert result.ok, result.errors
    plain = importer.parse_and_validate(csv_bytes(clean_rows()), "households.csv", UNIT_CODES)
    assert [h.model_dump() for h in result.households] == [h.model_dump() for h in plain.households]
    assert result.rows_by_book["B-001"] == [3, 4, 5]  # the title row pushed everything down one


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8", "utf-16"])
def test_csv_in_gb18030_plain_utf8_and_utf16(encoding):
    rows = clean_rows()
    # Excel's "Unicode text" is UTF-16 with a BOM and tab-separated.
    data = csv_bytes(rows, encoding=encoding, delimiter="\t" if encoding == "utf-16" else ",")
    if encoding == "gb18030":
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")  # really not UTF-8: Chinese is two bytes a character here
    result = importer.parse_and_validate(data, "households.csv", UNIT_CODES)
    assert result.ok, result.errors
    assert result.encoding == encoding
    head = result.households[0]
    assert (head.head_name, head.head_name_bo) == ("扎西多杰", "བཀྲ་ཤིས་རྡོ་རྗེ")


def test_xlsx_with_date_cells_numbers_and_ids_as_text():
    rows = [
        HEADERS,
        # Excel date cells, numeric lat/lon/counts/year/phone, a book number with leading zeros and
        # an ID number with the X check digit, both as text.
        ["000123", "t-lw1", "索南", None, None, 33.5, 100.25, 800, "是", "否", "否", "否",
         "索南", None, "男", datetime(1975, 1, 1), "户主", "藏族", 13912345678, HEAD_B,
         2025, 12, 40, 0, 1],
        ["000123", None, None, None, None, None, None, None, None, None, None, None,
         "卓玛", None, None, datetime(1982, 3, 10), "配偶", "藏族", None, SPOUSE_A,
         None, None, None, None, None],
    ]  # fmt: skip
    result = importer.parse_and_validate(xlsx_bytes(rows), "from-excel.xlsx", UNIT_CODES)
    assert result.ok, result.errors
    assert result.file_type == "xlsx"
    (household,) = result.households
    assert household.book_no == "000123"
    assert (household.lat, household.lon, household.grassland_area_mu) == (33.5, 100.25, 800)
    assert household.flags == {"low_income"}
    assert [m.id_number for m in household.members] == [HEAD_B, SPOUSE_A]
    assert household.members[0].phone == "13912345678"
    assert household.members[1].birth_date == date(1982, 3, 10)
    assert {(e.species, e.head_count) for e in household.livestock} == {
        ("yak", 12),
        ("sheep", 40),
        ("goat", 0),
        ("horse", 1),
    }


def test_xlsx_id_number_stored_as_a_number_is_refused():
    number = int(HEAD_A)
    rows = [
        ["户口簿编号", "联户单元", "户主姓名", "姓名", "与户主关系", "身份证号"],
        ["B-1", "t-lw1", "扎西", "扎西", "户主", number],
    ]
    result = importer.parse_and_validate(xlsx_bytes(rows), "ids.xlsx", UNIT_CODES)
    assert where(result.errors) == {(2, "身份证号")}
    assert "文本" in result.errors[0]["message_zh"] and "text" in result.errors[0]["message_en"]


MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def hand_made_xlsx(sheet_xml: str) -> bytes:
    """An XLSX written the way other tools do: a namespace prefix, relationships out of order, the
    1904 date system, shared strings with a phonetic guide, inline strings, a Chinese date style."""
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/></Types>'
        ),
        "_rels/.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>"
        ),
        "xl/workbook.xml": (
            f'<x:workbook xmlns:x="{MAIN_NS}" xmlns:r="{REL_NS}"><x:workbookPr date1904="1"/>'
            '<x:sheets><x:sheet name="户籍" sheetId="2" r:id="rId2"/>'
            '<x:sheet name="旧表" sheetId="1" r:id="rId1"/>'
            "</x:sheets></x:workbook>"
        ),
        "xl/_rels/workbook.xml.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{REL_NS}/worksheet" Target="/xl/worksheets/old.xml"/>'
            f'<Relationship Id="rId2" Type="{REL_NS}/worksheet" Target="worksheets/data.xml"/>'
            f'<Relationship Id="rId3" Type="{REL_NS}/styles" Target="styles.xml"/>'
            f'<Relationship Id="rId4" Type="{REL_NS}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>"
        ),
        "xl/styles.xml": (
            f'<styleSheet xmlns="{MAIN_NS}"><numFmts count="1">'
            '<numFmt numFmtId="176" formatCode="yyyy&quot;年&quot;m&quot;月&quot;d&quot;日&quot;"/></numFmts>'
            '<cellXfs count="4"><xf numFmtId="0"/><xf numFmtId="31"/><xf numFmtId="176"/><xf numFmtId="49"/>'
            "</cellXfs></styleSheet>"
        ),
        "xl/sharedStrings.xml": (
            f'<sst xmlns="{MAIN_NS}">'
            + "".join(
                f"<si><t>{text}</t></si>"
                for text in [
                    "户口簿编号",
                    "联户单元",
                    "户主姓名",
                    "姓名",
                    "与户主关系",
                    "出生日期",
                    "身份证号",
                    "联系电话",
                    "统计年度",
                    "牦牛",
                    "t-lw1",
                    "户主",
                    "配偶",
                ]
            )  # fmt: skip
            + '<si><r><t>扎</t></r><r><t xml:space="preserve">西</t></r>'
            '<rPh sb="0" eb="2"><t>zha xi</t></rPh></si>'
            "</sst>"
        ),
        "xl/worksheets/old.xml": f'<worksheet xmlns="{MAIN_NS}"><sheetData/></worksheet>',
        "xl/worksheets/data.xml": sheet_xml,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def serial_1904(day: date) -> int:
    return (day - date(1904, 1, 1)).days


def test_xlsx_written_by_other_tools_reads_as_excel_shows_it():
    header = "".join(f'<x:c r="{col}1" t="s"><x:v>{i}</x:v></x:c>' for i, col in enumerate("ABCDEFGHIJ"))
    sheet = (
        f'<x:worksheet xmlns:x="{MAIN_NS}"><x:sheetData>'
        f'<x:row r="1">{header}</x:row>'
        '<x:row r="2"><x:c r="A2" t="inlineStr"><x:is><x:t>000123</x:t></x:is></x:c>'
        '<x:c r="B2" t="s"><x:v>10</x:v></x:c><x:c r="C2" t="s"><x:v>13</x:v></x:c>'
        '<x:c r="D2" t="s"><x:v>13</x:v></x:c><x:c r="E2" t="s"><x:v>11</x:v></x:c>'
        f'<x:c r="F2" s="1"><x:v>{serial_1904(date(1975, 1, 1))}</x:v></x:c>'
        f'<x:c r="G2" t="inlineStr"><x:is><x:t>{HEAD_B}</x:t></x:is></x:c>'
        '<x:c r="H2"><x:v>13912345678</x:v></x:c><x:c r="I2"><x:v>2025</x:v></x:c>'
        '<x:c r="J2"><x:f>10+2</x:f><x:v>12</x:v></x:c></x:row>'
        # Row 3 is absent from the XML (blank in Excel); row 4 skips cells B and C.
        '<x:row r="4"><x:c r="A4" t="str"><x:v>000123</x:v></x:c>'
        '<x:c r="D4" t="inlineStr"><x:is><x:r><x:t>卓</x:t></x:r><x:r><x:t>玛</x:t></x:r></x:is></x:c>'
        '<x:c r="E4" t="s"><x:v>12</x:v></x:c>'
        f'<x:c r="F4" s="2"><x:v>{serial_1904(date(1982, 3, 10))}</x:v></x:c>'
        f'<x:c r="G4" t="inlineStr" s="3"><x:is><x:t>{SPOUSE_A}</x:t></x:is></x:c></x:row>'
        "</x:sheetData></x:worksheet>"
    )
    data = hand_made_xlsx(sheet)
    rows = list(xlsx.read_rows(data))
    assert [number for number, _ in rows] == [1, 2, 4]
    assert rows[1][1] == (
        "000123", "t-lw1", "扎西", "扎西", "户主", datetime(1975, 1, 1), HEAD_B, 13912345678, 2025, 12,
    )  # fmt: skip
    assert rows[2][1] == ("000123", None, None, "卓玛", "配偶", datetime(1982, 3, 10), SPOUSE_A)

    result = importer.parse_and_validate(data, "wps-export.xlsx", UNIT_CODES)
    assert result.ok, result.errors
    (household,) = result.households
    assert (household.book_no, household.head_name) == ("000123", "扎西")
    assert [(m.name, m.birth_date, m.id_number) for m in household.members] == [
        ("扎西", date(1975, 1, 1), HEAD_B),
        ("卓玛", date(1982, 3, 10), SPOUSE_A),
    ]
    assert result.rows_by_book["000123"] == [2, 4]

    with_dtd = '<!DOCTYPE x [<!ENTITY a "aaaa">]>' + sheet
    result = importer.parse_and_validate(hand_made_xlsx(with_dtd), "x.xlsx", UNIT_CODES)
    assert len(result.errors) == 1 and "damaged" in result.errors[0]["message_en"]


def test_xlsx_reader_agrees_with_openpyxl():
    for data in (
        exporter.template_xlsx(),
        xlsx_bytes([HEADERS, ["B-1", None, 3.25, True, datetime(2020, 1, 2)]]),
    ):
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        expected = []
        for row in workbook.worksheets[0].iter_rows(values_only=True):
            cells = list(row)
            while cells and cells[-1] is None:
                cells.pop()
            if cells:
                expected.append(tuple(cells))
        workbook.close()
        assert [row for _, row in xlsx.read_rows(data)] == expected


@pytest.mark.parametrize(
    ("data", "name", "fragment"),
    [
        (b"%PDF-1.7\n...", "households.csv", "PDF"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "photo.xlsx", "PNG"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "old.xls", ".xls"),
        (b"\x00\x01\x02binary\x00", "data.bin", "CSV"),
        ("户口簿编号,联户单元\n".encode(), "households.xlsx", ".xlsx"),
    ],
)
def test_a_wrong_file_type_is_one_clear_error(data, name, fragment):
    result = importer.parse_and_validate(data, name, UNIT_CODES)
    assert len(result.errors) == 1
    (error,) = result.errors
    assert (error["row"], error["column"]) == (None, None)
    assert fragment in error["message_zh"] or fragment in error["message_en"]


def test_a_corrupt_xlsx_is_one_clear_error():
    good = exporter.template_xlsx()
    for broken in (good[: len(good) // 2], good[:-30], good[:200]):
        result = importer.parse_and_validate(broken, "households.xlsx", UNIT_CODES)
        assert [(e["row"], e["column"]) for e in result.errors] == [(None, None)]
        assert "损坏" in result.errors[0]["message_zh"] and "damaged" in result.errors[0]["message_en"]
    # A zip that is not a workbook, and one whose sheet is not XML.
    other = io.BytesIO()
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("word/document.xml", "<w/>")
    result = importer.parse_and_validate(other.getvalue(), "households.xlsx", UNIT_CODES)
    assert len(result.errors) == 1 and "XLSX" in result.errors[0]["message_en"]
    garbled = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(garbled, "w") as target:
        for item in source.infolist():
            body = source.read(item)
            target.writestr(item, b"<not xml" if item.filename.startswith("xl/worksheets/") else body)
    result = importer.parse_and_validate(garbled.getvalue(), "households.xlsx", UNIT_CODES)
    assert len(result.errors) == 1 and "damaged" in result.errors[0]["message_en"]


def test_file_size_and_row_limits(monkeypatch):
    data = csv_bytes(clean_rows())
    monkeypatch.setattr(importer, "MAX_FILE_BYTES", len(data) - 1)
    result = importer.parse_and_validate(data, "households.csv", UNIT_CODES)
    assert len(result.errors) == 1 and "MB" in result.errors[0]["message_en"]
    monkeypatch.setattr(importer, "MAX_FILE_BYTES", len(data))
    monkeypatch.setattr(importer, "MAX_ROWS", 4)
    result = importer.parse_and_validate(data, "households.csv", UNIT_CODES)
    assert len(result.errors) == 1 and "4" in result.errors[0]["message_en"]
    monkeypatch.setattr(importer, "MAX_ROWS", 5)
    assert importer.parse_and_validate(data, "households.csv", UNIT_CODES).ok


def test_errors_are_capped_but_counted(monkeypatch):
    monkeypatch.setattr(importer, "MAX_ERRORS", 3)
    rows = [{"户口簿编号": f"D-{i}", "联户单元": "nowhere", "户主姓名": "甲"} for i in range(10)]
    result = importer.parse_and_validate(csv_bytes(rows), "x.csv", UNIT_CODES)
    assert (len(result.errors), result.error_count) == (3, 10)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_the_template_is_a_valid_import_of_its_example(fmt):
    data = exporter.template_csv() if fmt == "csv" else exporter.template_xlsx()
    if fmt == "csv":
        assert data.startswith(codecs.BOM_UTF8)
    result = importer.parse_and_validate(data, f"template.{fmt}", {"jiangqian-v1-lw001": 7})
    assert result.ok, result.errors
    (example,) = result.households
    assert example.liaison_unit_id == 7 and example.members[0].id_number == "632623198503121238"
    assert len(example.livestock) == 4
    if fmt == "xlsx":
        workbook = openpyxl.load_workbook(io.BytesIO(data))
        assert workbook.sheetnames == ["户籍", "填写说明"]
        notes = list(workbook["填写说明"].iter_rows(values_only=True))
        assert [row[0] for row in notes[1 : 1 + len(HEADERS)]] == HEADERS
        assert all(row[3] and row[4] for row in notes[1 : 1 + len(HEADERS)])  # Chinese and English
        # ID numbers typed into the template later stay text.
        assert workbook["户籍"].column_dimensions["T"].number_format == "@"


# ---------------------------------------------------------------------------------------------
# Against the database, on both engines


@dataclass
class Registry:
    sessions: sessionmaker
    protector: Protector
    units: dict[str, int]

    def import_(self, data: bytes, name: str = "households.csv", reason: str | None = "test") -> dict:
        with self.sessions() as session:
            return importer.import_file(session, data, name, ACTOR, reason, self.protector)

    def count(self, model: type) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(model)) or 0

    def export(self, fmt: str, clear: bool = False, unit_path: str | None = None) -> bytes:
        with self.sessions() as session:
            return exporter.export_households(session, unit_path, fmt, self.protector, clear)


def _unit(session: Session, parent: OrgUnit | None, kind: str, level: int, code: str) -> OrgUnit:
    unit = OrgUnit(parent_id=parent.id if parent else None, kind=kind, level=level, name=code, code=code)
    session.add(unit)
    session.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    return unit


@pytest.fixture
def registry(database_url):
    migrate(MIGRATIONS, database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        county = _unit(session, None, "county", 1, "t-county")
        township = _unit(session, county, "township", 2, "t-town")
        village = _unit(session, township, "village", 3, "t-v1")
        other_village = _unit(session, township, "village", 3, "t-v2")
        units = {
            "t-lw1": _unit(session, village, "liaison", 4, "t-lw1").id,
            "t-lw2": _unit(session, other_village, "liaison", 4, "t-lw2").id,
            "t-v1": village.id,
        }
    yield Registry(sessions, Protector(os.urandom(32), os.urandom(32)), units)
    engine.dispose()


def clean_rows_for(registry: Registry) -> list[dict[str, Any]]:
    rows = clean_rows()
    rows[-1]["联户单元"] = str(registry.units["t-lw2"])  # by id rather than code
    return rows


def clean_file(registry: Registry) -> bytes:
    return csv_bytes(clean_rows_for(registry))


def test_a_mixed_file_imports_nothing(registry):
    rows = clean_rows_for(registry) + [head("C-1", "甲", {"联户单元": "t-lw9"})]
    answer = registry.import_(csv_bytes(rows))
    assert answer["imported"] is False
    assert [(e["row"], e["column"]) for e in answer["errors"]] == [(7, "联户单元")]
    assert answer["error_count"] == 1 and answer["errors_truncated"] is False
    assert registry.count(Household) == registry.count(Member) == registry.count(AuditEntry) == 0


def test_clean_file_then_the_same_file_again_changes_nothing(registry):
    data = clean_file(registry)
    first = registry.import_(data)
    assert first["imported"] is True, first
    assert first["rows"] == 5
    assert first["counts"] == {
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "members_added": 4,
        "members_updated": 0,
        "members_not_in_file": 0,
        "history_rows": 0,
    }
    assert (registry.count(Household), registry.count(Member), registry.count(Livestock)) == (3, 4, 4)
    with registry.sessions() as session:
        stored = session.scalars(select(Member).where(Member.name == "索南")).one()
        assert registry.protector.decrypt(stored.id_number_cipher) == HEAD_B  # the X, upper case
        assert stored.id_number_masked == HEAD_B[:6] + "*" * 10 + HEAD_B[-2:]
        assert stored.id_number_index == registry.protector.blind_index(HEAD_B)
        child = session.scalars(select(Member).where(Member.name == "才让")).one()
        assert (child.id_number_cipher, child.birth_date, child.sex) == (None, date(2010, 6, 1), "M")
    history, audit = registry.count(History), registry.count(AuditEntry)

    again = registry.import_(data)
    assert again["imported"] is True
    assert again["counts"] == {
        "created": 0,
        "updated": 0,
        "unchanged": 3,
        "members_added": 0,
        "members_updated": 0,
        "members_not_in_file": 0,
        "history_rows": 0,
    }
    assert (registry.count(History), registry.count(AuditEntry)) == (history, audit)
    assert (registry.count(Household), registry.count(Member), registry.count(Livestock)) == (3, 4, 4)


def test_an_edit_in_the_file_updates_with_history(registry):
    registry.import_(clean_file(registry))
    rows = clean_rows_for(registry)
    rows[1]["联系电话"] = "15800001111"  # the spouse gets a phone
    rows[0]["牦牛"] = "28"
    answer = registry.import_(csv_bytes(rows))
    counts = answer["counts"]
    assert (counts["created"], counts["updated"], counts["unchanged"]) == (0, 1, 2)
    assert (counts["members_updated"], counts["history_rows"]) == (1, 2)
    with registry.sessions() as session:
        fields = set(session.scalars(select(History.field)))
        assert fields == {"phone", "livestock.2025.yak"}


def test_columns_left_out_keep_what_is_stored(registry):
    registry.import_(clean_file(registry))
    # Only the required columns and one flag: address, GPS, other flags, livestock, ID numbers stay.
    headers = ["户口簿编号", "联户单元", "户主姓名", "姓名", "与户主关系", "五保户"]
    rows = [
        {
            "户口簿编号": "B-002",
            "联户单元": "t-lw2",
            "户主姓名": "索南",
            "姓名": "索南",
            "与户主关系": "户主",
            "五保户": "是",
        }
    ]
    answer = registry.import_(csv_bytes(rows, headers=headers))
    assert answer["counts"]["updated"] == 1 and answer["counts"]["history_rows"] == 1
    with registry.sessions() as session:
        b = session.scalars(select(Household).where(Household.book_no == "B-002")).one()
        assert (b.flag_low_income, b.flag_disability, b.flag_five_guarantee) == (True, True, True)
        a = session.scalars(select(Household).where(Household.book_no == "B-001")).one()
        assert (a.address, a.lat) == ("江千一村", 33.70512)
        member = session.scalars(select(Member).where(Member.name == "索南")).one()
        assert member.id_number_index == registry.protector.blind_index(HEAD_B)


def test_an_id_number_of_another_stored_household_is_refused_at_its_row(registry):
    registry.import_(clean_file(registry))
    rows = [
        {
            "户口簿编号": "B-100",
            "联户单元": "t-lw1",
            "户主姓名": "多杰",
            "姓名": "多杰",
            "与户主关系": "户主",
        },
        {"户口簿编号": "B-100", "姓名": "卓玛", "与户主关系": "配偶", "身份证号": SPOUSE_A},
    ]
    before = registry.count(Household), registry.count(Member), registry.count(AuditEntry)
    answer = registry.import_(csv_bytes(rows))
    assert answer["imported"] is False
    assert [(e["row"], e["column"]) for e in answer["errors"]] == [(3, "身份证号")]
    assert "B-001" in answer["errors"][0]["message_en"]
    assert (registry.count(Household), registry.count(Member), registry.count(AuditEntry)) == before


@pytest.mark.parametrize(("fmt", "clear"), [("csv", False), ("csv", True), ("xlsx", False), ("xlsx", True)])
def test_export_reimports_to_no_change(registry, fmt, clear):
    assert registry.import_(clean_file(registry))["imported"]
    history, audit = registry.count(History), registry.count(AuditEntry)
    data = registry.export(fmt, clear=clear)
    answer = registry.import_(data, f"export.{fmt}")
    assert answer["imported"] is True, answer
    assert answer["counts"]["unchanged"] == 3
    assert answer["counts"]["history_rows"] == answer["counts"]["members_not_in_file"] == 0
    assert (registry.count(History), registry.count(AuditEntry)) == (history, audit)

    exported = importer.parse_and_validate(data, fmt, exported_units(registry))
    ids = [m.id_number for h in exported.households for m in h.members]
    if clear:
        assert ids == [HEAD_A, SPOUSE_A, None, HEAD_B]
        original = importer.parse_and_validate(clean_file(registry), "csv", exported_units(registry))
        assert [h.model_dump() for h in exported.households] == [h.model_dump() for h in original.households]
    else:
        assert ids == [None, None, None, None]  # masked cells: keep the stored numbers
        text = data.decode("utf-8-sig") if fmt == "csv" else _xlsx_text(data)
        assert HEAD_A not in text and HEAD_A[:6] + "**********" + HEAD_A[-2:] in text


def exported_units(registry: Registry) -> dict[str, int]:
    return {"t-lw1": registry.units["t-lw1"], "t-lw2": registry.units["t-lw2"]}


def _xlsx_text(data: bytes) -> str:
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    return "\n".join(str(cell) for row in workbook.worksheets[0].iter_rows(values_only=True) for cell in row)


def test_export_of_a_subtree_and_its_shape(registry):
    registry.import_(clean_file(registry))
    with registry.sessions() as session:
        village_path = session.get(OrgUnit, registry.units["t-v1"]).path
    data = registry.export("csv", unit_path=village_path)
    assert data.startswith(codecs.BOM_UTF8) and b"\r\n" in data
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == HEADERS
    # Only t-lw1's household, head first, household columns on every row.
    assert [(r[0], r[12], r[16]) for r in rows[1:]] == [
        ("B-001", "扎西多杰", "户主"),
        ("B-001", "卓玛", "配偶"),
        ("B-001", "才让", "子"),
    ]
    assert all(r[4] == "江千一村" and r[20] == "2025" and r[21] == "30" for r in rows[1:])
    with pytest.raises(ValueError):
        registry.export("csv", unit_path="/1/%")
    with pytest.raises(ValueError):
        registry.export("pdf")
    with registry.sessions() as session, pytest.raises(ValueError):
        exporter.export_households(session, None, "csv", None, True)


def test_the_benchmark_runs_end_to_end(capsys, tmp_path):
    # The figures come from running it by hand; this only keeps the machinery from rotting.
    from bench import registry_import as bench

    bench.main(["--rows", "300", "--export", "--profile", str(tmp_path / "import.prof")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert (tmp_path / "import.prof").stat().st_size > 0
    figures = json.loads(last)
    assert figures["rows"] == 300 and figures["rows_per_s"] > 0
    assert figures["counts"]["members_added"] == 300
    assert figures["reimport_unchanged"] is True and figures["export"]["csv_reimport_unchanged"] is True
