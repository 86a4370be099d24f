"""Streaming read of an XLSX workbook's first worksheet: cell values by row, as Excel shows them.

openpyxl builds objects for every cell and (for workbooks written without a ``<dimension>``)
parses the sheet twice: 100,000 rows of 25 columns took over a minute. This reads the sheet and the
shared strings with expat callbacks, a few microseconds a cell, and keeps memory flat by feeding the
zip member in chunks. openpyxl still writes the template and exports, and supplies its date-format
test; everything here is read-only and refuses DTDs (an XLSX never has one).

Values come out as openpyxl's read-only mode gives them with ``data_only=True``: ``str``, ``int``,
``float``, ``bool``, ``datetime`` (a number in a date-formatted cell), or ``None``; a formula
gives its cached value. Besides the built-in date formats, the ones Chinese Excel uses for dates
(ids 27-36 and 50-58, e.g. ``yyyy"年"m"月"d"日"``) count as dates, which openpyxl misses.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from xml.etree import ElementTree
from xml.parsers import expat

from openpyxl.styles.numbers import is_date_format

CHUNK_BYTES = 1 << 20
MAX_COLUMN = 16_384  # XFD, Excel's last column
# Built-in number formats that are dates or times: the standard ones, and the East Asian ids that
# Chinese Excel writes for 1985年3月12日 and its kin (their codes are locale-defined, not stored).
DATE_FORMAT_IDS = frozenset({*range(14, 23), *range(27, 37), *range(45, 48), *range(50, 59)})
_DIGITS = "0123456789"
EPOCH_1900 = datetime(1899, 12, 30)  # with Excel's fictitious 1900-02-29 accounted for below
EPOCH_1904 = datetime(1904, 1, 1)


class XlsxError(Exception):
    """The workbook cannot be read: damaged, not a spreadsheet, or without a worksheet."""


class NotAWorkbook(XlsxError):
    """A zip archive, but no spreadsheet in it (a .docx, an .ods, a plain .zip)."""


class NoWorksheet(XlsxError):
    """A workbook without a worksheet (only chart sheets, say)."""


class _LocalNames(dict):
    """Qualified name -> local name ("x:c" -> "c"), worked out once per distinct name.

    Matching local names accepts any prefix and both the transitional and the strict OOXML
    namespaces; expat's own namespace processing would cost more than it tells us here.
    """

    def __missing__(self, name: str) -> str:
        local = self[name] = name.rpartition(":")[2]
        return local


def _parse_small(archive: zipfile.ZipFile, name: str) -> ElementTree.Element:
    data = archive.read(name)
    if b"<!DOCTYPE" in data[:4096].upper():
        raise XlsxError(f"{name}: a DTD in a workbook part")
    return ElementTree.fromstring(data)


def _children(element: ElementTree.Element, local: str) -> Iterator[ElementTree.Element]:
    return (child for child in element.iter() if child.tag.rpartition("}")[2] == local)


def _attribute(element: ElementTree.Element, local: str) -> str | None:
    for key, value in element.attrib.items():
        if key.rpartition("}")[2] == local:
            return value
    return None


def _resolve(base: str, target: str) -> str:
    """A relationship target as a path inside the zip."""
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(posixpath.join(posixpath.dirname(base), target))


def _relationships(archive: zipfile.ZipFile, part: str) -> dict[str, tuple[str, str]]:
    """Id -> (type, path) of a part's relationships."""
    rels_name = posixpath.join(posixpath.dirname(part), "_rels", posixpath.basename(part) + ".rels")
    if rels_name not in archive.namelist():
        return {}
    found = {}
    for rel in _children(_parse_small(archive, rels_name), "Relationship"):
        target = rel.get("Target") or ""
        if rel.get("TargetMode") == "External":
            continue
        found[rel.get("Id") or ""] = (rel.get("Type") or "", _resolve(part, target))
    return found


class _Workbook:
    """Where the first worksheet is, and what it needs to be read: strings, date styles, epoch."""

    def __init__(self, archive: zipfile.ZipFile):
        self.archive = archive
        package = _relationships(archive, "")  # _rels/.rels
        workbook = next(
            (path for kind, path in package.values() if kind.endswith("/officeDocument")), "xl/workbook.xml"
        )
        if workbook not in archive.namelist():
            raise NotAWorkbook("no workbook part")
        root = _parse_small(archive, workbook)
        properties = next(_children(root, "workbookPr"), None)
        date1904 = properties is not None and (properties.get("date1904") or "").lower() in ("1", "true")
        self.epoch = EPOCH_1904 if date1904 else EPOCH_1900
        rels = _relationships(archive, workbook)
        self.sheet_path: str | None = None
        for sheet in _children(root, "sheet"):
            kind, path = rels.get(_attribute(sheet, "id") or "", ("", ""))
            if kind.endswith("/worksheet") and path in archive.namelist():
                self.sheet_path = path  # the first in the book's order, as the user sees the tabs
                break
        if self.sheet_path is None:
            raise NoWorksheet("no worksheet")
        self.strings: list[str] = []
        self.date_styles: frozenset[int] = frozenset()
        for kind, path in rels.values():
            if kind.endswith("/sharedStrings"):
                self.strings = _shared_strings(archive, path)
            elif kind.endswith("/styles"):
                self.date_styles = _date_styles(_parse_small(archive, path))


def _date_styles(root: ElementTree.Element) -> frozenset[int]:
    custom = {
        int(fmt.get("numFmtId") or -1): fmt.get("formatCode") or "" for fmt in _children(root, "numFmt")
    }
    cell_formats = next(_children(root, "cellXfs"), None)
    if cell_formats is None:
        return frozenset()
    dates = set()
    for index, xf in enumerate(child for child in cell_formats if child.tag.rpartition("}")[2] == "xf"):
        number_format = int(xf.get("numFmtId") or 0)
        if number_format in custom:
            if is_date_format(custom[number_format]):
                dates.add(index)
        elif number_format in DATE_FORMAT_IDS:
            dates.add(index)
    return frozenset(dates)


def _parser() -> Any:
    parser = expat.ParserCreate()
    parser.buffer_text = True  # one text callback per run of characters, not per chunk of them

    def no_dtd(*_args: Any) -> None:
        raise XlsxError("a DTD in a workbook part")

    parser.StartDoctypeDeclHandler = no_dtd
    parser.EntityDeclHandler = no_dtd
    return parser


def _feed(parser: Any, source: io.BufferedIOBase) -> Iterator[None]:
    """Feed the parser a chunk at a time, pausing after each so the caller can hand rows on."""
    while True:
        chunk = source.read(CHUNK_BYTES)
        if not chunk:
            parser.Parse(b"", True)
            yield
            return
        parser.Parse(chunk, False)
        yield


def _shared_strings(archive: zipfile.ZipFile, path: str) -> list[str]:
    strings: list[str] = []
    parts: list[str] = []
    state = {"in_text": False, "phonetic": 0}
    names = _LocalNames()

    def start(name: str, _attrs: dict[str, str]) -> None:
        local = names[name]
        if local == "si":
            parts.clear()
        elif local == "t":
            state["in_text"] = True
        elif local == "rPh":  # the phonetic guide of East Asian text is not part of the value
            state["phonetic"] += 1

    def end(name: str) -> None:
        local = names[name]
        if local == "si":
            strings.append("".join(parts))
        elif local == "t":
            state["in_text"] = False
        elif local == "rPh":
            state["phonetic"] -= 1

    def text(data: str) -> None:
        if state["in_text"] and not state["phonetic"]:
            parts.append(data)

    parser = _parser()
    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, text
    with archive.open(path) as source:
        for _ in _feed(parser, source):
            pass
    return strings


class _Columns(dict):
    """Column letters -> 1-based index ("AB" -> 28), worked out once per column."""

    def __missing__(self, letters: str) -> int:
        index = 0
        for character in letters:
            if not "A" <= character <= "Z":
                raise ValueError(f"not a cell reference: {letters!r}")
            index = index * 26 + ord(character) - 64
        self[letters] = index
        return index


class _SheetReader:
    def __init__(self, book: _Workbook):
        self.book = book
        self.rows: list[tuple[int, tuple[Any, ...]]] = []
        self.row_number = 0
        self.cells: dict[int, Any] = {}
        self.column = 0
        self.cell_type = "n"
        self.cell_style = 0
        self.text: list[str] = []
        self.collecting = False  # inside <v>, or <t> of an inline string
        self.phonetic = 0
        self.names = _LocalNames()
        self.columns = _Columns()

    def start(self, name: str, attrs: dict[str, str]) -> None:
        local = self.names[name]
        if local == "c":
            reference = attrs.get("r")
            self.column = self.columns[reference.rstrip(_DIGITS)] if reference else self.column + 1
            self.cell_type = attrs.get("t", "n")
            style = attrs.get("s")
            self.cell_style = int(style) if style else 0
            self.text = []
        elif local == "v" or (local == "t" and self.cell_type == "inlineStr"):
            self.collecting = not self.phonetic
        elif local == "row":
            number = attrs.get("r")
            self.row_number = int(number) if number else self.row_number + 1
            self.cells = {}
            self.column = 0
        elif local == "rPh":
            self.phonetic += 1

    def end(self, name: str) -> None:
        local = self.names[name]
        if local == "c":
            if self.text and 0 < self.column <= MAX_COLUMN:
                self.cells[self.column] = self.value("".join(self.text))
        elif local in ("v", "t"):
            self.collecting = False
        elif local == "row":
            if self.cells:
                width = max(self.cells)
                self.rows.append((self.row_number, tuple(self.cells.get(i) for i in range(1, width + 1))))
        elif local == "rPh":
            self.phonetic -= 1

    def characters(self, data: str) -> None:
        if self.collecting:
            self.text.append(data)

    def value(self, text: str) -> Any:
        kind = self.cell_type
        if kind == "s":
            return self.book.strings[int(text)]
        if kind in ("str", "inlineStr", "e"):
            return text
        if kind == "b":
            return text.strip() in ("1", "true")
        if kind == "d":
            return datetime.fromisoformat(text.strip().rstrip("Z"))
        number: int | float = float(text) if any(c in text for c in ".eE") else int(text)
        if self.cell_style in self.book.date_styles:
            return self.serial_date(number)
        return number

    def serial_date(self, serial: float) -> datetime:
        days = int(serial)
        if self.book.epoch is EPOCH_1900 and 0 < serial < 60:
            days += 1  # Excel counts a 1900-02-29 that never was; serials before it are one day off
        seconds = round((serial - int(serial)) * 86_400)
        return self.book.epoch + timedelta(days=days, seconds=seconds)


def read_rows(data: bytes) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """(row number, cell values) of the first worksheet, blank rows left out, in sheet order.

    Raises :class:`XlsxError` for a damaged workbook, at the start or while rows are read.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        book = _Workbook(archive)
        reader = _SheetReader(book)
        parser = _parser()
        parser.StartElementHandler = reader.start
        parser.EndElementHandler = reader.end
        parser.CharacterDataHandler = reader.characters
        source = archive.open(book.sheet_path or "")
    except XlsxError:
        raise
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, zlib.error, ValueError, IndexError) as error:
        raise XlsxError(str(error)) from None
    except (expat.ExpatError, ElementTree.ParseError) as error:
        raise XlsxError(f"malformed XML: {error}") from None
    return _rows(reader, parser, source)


def _rows(reader: _SheetReader, parser: Any, source: Any) -> Iterator[tuple[int, tuple[Any, ...]]]:
    with source:
        try:
            for _ in _feed(parser, source):
                yield from reader.rows
                reader.rows.clear()
        except XlsxError:
            raise
        except (expat.ExpatError, zipfile.BadZipFile, EOFError, OSError, zlib.error) as error:
            raise XlsxError(f"damaged worksheet: {error}") from None
        except (ValueError, IndexError, OverflowError) as error:
            # A cell whose text does not fit its type (a shared-string index past the table, ...).
            raise XlsxError(f"malformed cell: {error}") from None
