"""Resident identity card numbers (GB 11643-1999): checksum, embedded birth date and sex.

An 18-character number is 6 digits of region, 8 of birth date (YYYYMMDD), 3 of sequence (odd for
men, even for women) and a check character from ISO 7064 MOD 11-2, where 10 is written ``X``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARACTERS = "10X98765432"
EARLIEST_BIRTH = date(1890, 1, 1)


class InvalidIdNumber(ValueError):
    """Why a number is not a valid ID number, in Chinese and English."""

    def __init__(self, message_zh: str, message_en: str):
        super().__init__(message_en)
        self.message_zh = message_zh
        self.message_en = message_en


@dataclass(frozen=True)
class IdNumber:
    number: str
    region: str
    birth_date: date
    sex: str  # "M" / "F"


def check_character(first17: str) -> str:
    return CHECK_CHARACTERS[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def parse_id_number(value: str, today: date | None = None) -> IdNumber:
    # Full-width digits and a lower-case x come from phones and spreadsheets; both are the same number.
    number = value.strip().translate(str.maketrans("０１２３４５６７８９ｘＸ", "0123456789XX")).upper()
    if len(number) != 18:
        raise InvalidIdNumber(
            f"身份证号应为18位，实为{len(number)}位", f"must be 18 characters, not {len(number)}"
        )
    if not (number.isascii() and number[:17].isdigit() and (number[17].isdigit() or number[17] == "X")):
        raise InvalidIdNumber("身份证号只能包含数字，末位可为X", "only digits, and X as the last character")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise InvalidIdNumber(
            "身份证号中的出生日期不存在", "the birth date inside it does not exist"
        ) from None
    if not EARLIEST_BIRTH <= born <= (today or date.today()):
        raise InvalidIdNumber("身份证号中的出生日期不合理", "the birth date inside it is out of range")
    if check_character(number[:17]) != number[17]:
        raise InvalidIdNumber("身份证号校验位错误", "the check character does not match")
    return IdNumber(number, number[:6], born, "M" if int(number[16]) % 2 else "F")


def mask_id_number(number: str) -> str:
    """``632621**********12``: region and last two, what most staff may see."""
    return f"{number[:6]}{'*' * (len(number) - 8)}{number[-2:]}"
