"""How a recogniser's words become a report's text."""

from __future__ import annotations

import pytest

from services.speech.engine import tidy_text


@pytest.mark.parametrize(
    ("words", "text"),
    [
        ("家里 老人 昏迷 不醒", "家里老人昏迷不醒"),
        ("草场 边界 有 纠纷 ， 请 处理", "草场边界有纠纷，请处理"),
        ("三 号 牧场 有 5 头 牛 病 了", "三号牧场有 5 头牛病了"),
        ("wifi 坏 了", "wifi 坏了"),
        ("안녕하세요 병원", "안녕하세요 병원"),
        ("  ", ""),
        ("", ""),
    ],
)
def test_spaces_between_chinese_characters_are_dropped(words, text):
    assert tidy_text(words) == text
