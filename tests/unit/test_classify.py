"""The routing classifier against reports as liaison workers write (or speak) them.

Each row is a real-looking report with the category and urgency county staff would expect. Speech
transcripts are written with spaces between words, as the Vosk Chinese model returns them.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from lianhu.events import MatchedTerm
from services.routing.classify import (
    CATEGORY_CODES,
    DEFAULT_RULES_PATH,
    DEPARTMENTS,
    Classification,
    Rules,
    RulesError,
    classify,
    load_rules,
    normalise_tibetan,
)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules()


# (id, report, category, urgency)
CHINESE_REPORTS = [
    ("cordyceps-quarrel", "两户牧民因为草场上挖虫草的事吵起来了，请村里来调解", "dispute", "urgent"),
    ("debt-quarrel", "我们社有两家人因为借钱不还闹矛盾，差点打起来", "dispute", "urgent"),
    ("asr-fight", "村 里 两 家 人 为了 牛 的 事情 打架 了 正在 调解", "dispute", "urgent"),
    ("domestic-violence", "家庭矛盾，丈夫家暴妻子", "dispute", "urgent"),
    (
        "boundary-overgrazing",
        "上贡麻乡和下贡麻乡两个村的草场边界有争议，对方越界放牧",
        "grassland_boundary",
        "general",
    ),
    ("asr-yaks-cross", "邻村的牦牛 越界 到 我们 冬季牧场 吃草", "grassland_boundary", "general"),
    ("contract-fence", "草场承包合同上的界线和实际的网围栏不一致", "grassland_boundary", "general"),
    ("boundary-fight", "因为草场纠纷两家人打起来了，有人受伤", "grassland_boundary", "urgent"),
    ("house-fire", "江千乡一户牧民家着火了，快来人", "safety_hazard", "urgent"),
    ("asr-stove-gas", "冬 天 帐篷 里 烧 炉子 有 煤气中毒 的 危险", "safety_hazard", "urgent"),
    ("thin-ice", "河上的冰面已经开始融化，有小孩在上面玩，存在安全隐患", "safety_hazard", "urgent"),
    ("landslide", "公路边山体滑坡，有落石", "safety_hazard", "urgent"),
    ("snowstorm", "昨晚开始下暴雪，积雪有四十公分，牛羊没有草吃", "weather_disaster", "urgent"),
    ("asr-hail", "我们 这里 下了 冰雹 草场 都 被 打坏 了", "weather_disaster", "urgent"),
    ("snow-trapped", "发生雪灾，有三户牧民被困在冬窝子里", "weather_disaster", "urgent"),
    ("flash-flood", "山洪暴发冲走了两顶帐篷", "weather_disaster", "urgent"),
    ("house-down-safe", "下藏科乡一户牧民的房屋倒塌，人员已转移，无人员伤亡", "house_collapse", "general"),
    ("wall-cracks", "房子墙体出现裂缝，怕塌了", "house_collapse", "general"),
    ("asr-tent-blown", "大风 把 帐篷 吹翻 了", "house_collapse", "general"),
    ("house-down-pinned", "房屋倒塌，老人被压住了", "house_collapse", "urgent"),
    ("unconscious", "病人昏迷不醒", "illness", "urgent"),
    ("fever", "阿妈发高烧三天了，想去县医院看病", "illness", "general"),
    ("obstructed-labour", "一名孕妇难产，需要救护车", "illness", "urgent"),
    ("asr-fall", "老人 摔倒 了 腿 可能 骨折 了", "illness", "general"),
    ("echinococcosis", "村里有三个人查出包虫病，需要去州医院治疗", "illness", "general"),
    ("asr-dog-bite", "孩子 被 狗 咬 了 流 了 很多 血", "illness", "general"),
    ("foot-and-mouth", "我家的牦牛最近不吃草，死了三头，怀疑是口蹄疫", "livestock", "general"),
    ("sudden-deaths", "社里的羊群突然死亡十几只，请兽医来看看", "livestock", "urgent"),
    ("asr-died-of-disease", "牦牛 病死 了 五 头", "livestock", "general"),
    ("wolves", "昨晚狼咬死了四只羊", "livestock", "general"),
    ("yak-deaths-count", "牦牛死亡12头", "livestock", "general"),
    ("stray-yak", "我家走失的牦牛找到了吗", "livestock", "general"),
    ("returnees", "有三名外出务工人员从西宁返乡，需要登记", "population_movement", "general"),
    ("outsiders", "村里来了几个外地人，开着外地车辆到处转", "population_movement", "general"),
    ("suspicious", "发现可疑人员在草场附近转悠", "population_movement", "general"),
    ("asr-rodents", "草场 鼠害 很 严重 到处 都是 黑土滩", "ecology", "general"),
    ("sand-mining", "有人在河道里偷偷采砂", "ecology", "general"),
    ("poaching", "发现有人盗猎藏羚羊", "ecology", "general"),
    ("grazing-ban", "禁牧区里还有人放牧", "ecology", "general"),
    ("no-food", "孤寡老人家里没有吃的了，也没有牛粪取暖", "livelihood", "general"),
    ("dibao-question", "申请低保需要什么材料？", "livelihood", "general"),
    ("hardship", "家里有残疾人，生活困难，希望得到临时救助", "livelihood", "general"),
    ("road-cut", "通往岗龙乡的公路被冲断了，车过不去", "infrastructure", "general"),
    ("power-cut", "村里停电两天了", "infrastructure", "general"),
    ("no-signal", "冬窝子那边没有信号，打不通电话", "infrastructure", "general"),
    ("asr-water", "饮水 管道 冻 住 了 全村 吃水 困难", "infrastructure", "general"),
    ("subsidy-question", "请问今年的草原补奖什么时候发？", "policy", "general"),
    ("insurance-question", "想咨询一下医保怎么报销", "policy", "general"),
    ("resettlement", "生态移民的政策是什么", "policy", "general"),
    ("suggest-water-points", "建议在村里多建几个牲畜饮水点", "suggestion", "general"),
    ("suggest-clinic", "希望乡里能增设一个流动诊疗点", "suggestion", "general"),
    ("small-talk", "今天天气不错", "other", "general"),
    ("asr-phone-update", "扎西多杰 联系 电话 已 更新", "other", "general"),
    ("only-a-cry", "救命！快来！", "other", "urgent"),
]

TIBETAN_REPORTS = [
    ("heavy-snow-road", "ཁ་བ་ཆེན་པོ་བབས་ནས་ལམ་ཁ་བཀག་སོང་།", "weather_disaster", "urgent"),
    ("blizzard-losses", "བུ་ཡུག་དྲག་པོ་བྱུང་། ཕྱུགས་ཟོག་མང་པོ་ཤི་སོང་།", "weather_disaster", "urgent"),
    ("hail", "སེར་བ་བབས་ནས་རྩྭ་ལ་གནོད་སྐྱོན་ཐེབས།", "weather_disaster", "urgent"),
    ("house-down-injured", "ཁང་པ་རྡིབ་སོང་། ནང་མི་གཉིས་ལ་རྨས་སྐྱོན་ཕོག", "house_collapse", "general"),
    ("earthquake-wall", "ས་ཡོམ་བྱུང་ནས་ཁང་པའི་རྩིག་པ་གས་སོང་།", "weather_disaster", "urgent"),
    ("tent-down", "སྦྲ་ནག་རྡིབ་སོང་།", "house_collapse", "general"),
    ("house-down-urgent", "ཁང་པ་རྡིབ་སོང་། ཛ་དྲག་ཡིན།", "house_collapse", "urgent"),
    ("patient-fainted", "ནད་པ་བརྒྱལ་སོང་། མྱུར་དུ་སྨན་ཁང་ལ་སྐྱེལ་དགོས།", "illness", "urgent"),
    ("mother-fever", "ཨ་མ་ལ་ཚད་པ་ཆེན་པོ་ཕོག་འདུག སྨན་པ་དགོས།", "illness", "general"),
    ("serious-illness", "ན་ཚ་ཚབས་ཆེ་བའི་ནད་པ་ཞིག་ཡོད།", "illness", "urgent"),
    ("boundary-dispute", "རྩྭ་ཐང་གི་ས་མཚམས་ཐད་རྩོད་གཞི་བྱུང་།", "grassland_boundary", "general"),
    ("households-quarrel", "ཁྱིམ་ཚང་གཉིས་ཀྱི་བར་ལ་རྩོད་རྙོག་བྱུང་། ཞི་འདུམ་བྱེད་རོགས།", "dispute", "urgent"),
    ("cordyceps-quarrel", "དབྱར་རྩྭ་དགུན་འབུ་རྐོ་སྐབས་རྩོད་པ་བྱུང་།", "dispute", "urgent"),
    ("sick-herd", "གཡག་དང་ལུག་མང་པོ་ན་འདུག ཕྱུགས་སྨན་པ་མངགས་རོགས།", "livestock", "general"),
    ("fire", "མེ་སྐྱོན་བྱུང་སོང་། མྱུར་དུ་ཤོག", "safety_hazard", "urgent"),
    ("landslide", "ས་རུད་བྱུང་ནས་ལམ་ཁ་བཀག་སོང་།", "safety_hazard", "urgent"),
    ("road-bridge", "ལམ་ཁ་ཆད་འདུག ཟམ་པ་ཉམས་གསོ་བྱེད་དགོས།", "infrastructure", "general"),
    ("power-cut", "གློག་ཆད་ནས་ཉིན་གསུམ་སོང་།", "infrastructure", "general"),
    ("subsidy-question", "ལོ་འདིའི་རྩྭ་ཐང་སྐྱབས་སྐྱོར་ག་དུས་སྤྲོད་ཀྱི་ཡོད།", "policy", "general"),
    (
        "returnees",
        "ཕྱི་ཡུལ་ནས་ལས་ཀ་བྱས་ཏེ་ཕ་ཡུལ་ལ་ལོག་ཡོང་བའི་མི་གསུམ་ཡོད།",
        "population_movement",
        "general",
    ),
    ("pikas", "ཨ་བྲ་མང་དྲགས་ནས་རྩྭ་ཐང་ཉམས་ཆག་ཏུ་སོང་།", "ecology", "general"),
    ("poacher", "རི་དྭགས་གསོད་མཁན་ཞིག་མཐོང་སོང་།", "ecology", "general"),
    ("no-food", "ཁ་ཟས་མེད་པའི་ཁྱིམ་ཚང་ཞིག་ཡོད། འཚོ་བའི་དཀའ་ངལ་ཆེན་པོ་འདུག", "livelihood", "general"),
    ("suggestion", "ང་ཚོའི་བསམ་འཆར་ཞིག་ཞུ་རྒྱུ་ཡིན།", "suggestion", "general"),
    ("greeting", "བཀྲ་ཤིས་བདེ་ལེགས།", "other", "general"),
    # ཁ་བ (snow) must not fire inside ཁ་བཏགས (khata), nor ལུག (sheep) inside ལུགས (system).
    ("khata-is-not-snow", "ཁ་བཏགས་ཕུལ།", "other", "general"),
    ("system-is-not-sheep", "ལམ་ལུགས་གསར་པ", "other", "general"),
    # A case particle fused onto an open syllable still matches: ཁ་བས "by the snow".
    ("fused-particle", "ཁ་བས་ལམ་ཁ་བཀག", "weather_disaster", "urgent"),
]

MIXED_REPORTS = [
    ("fainted-both", "ནད་པ་བརྒྱལ་སོང 病人昏迷", "illness", "urgent"),
    ("chinese-with-tibetan-yak", "ཕྱུགས་ནད་ 口蹄疫 牦牛", "livestock", "general"),
    ("tibetan-snow-chinese-trapped", "ཁ་བ་ཆེན་པོ་བབས། 牧民被困", "weather_disaster", "urgent"),
]


def _params(rows: list[tuple[str, str, str, str]]) -> list[Any]:
    return [pytest.param(text, category, urgency, id=name) for name, text, category, urgency in rows]


@pytest.mark.parametrize(("text", "category", "urgency"), _params(CHINESE_REPORTS))
def test_chinese_reports(rules: Rules, text: str, category: str, urgency: str) -> None:
    result = classify(text, rules)
    assert (result.category, result.urgency) == (category, urgency), result.explanation
    assert result.language == "zh"


@pytest.mark.parametrize(("text", "category", "urgency"), _params(TIBETAN_REPORTS))
def test_tibetan_reports(rules: Rules, text: str, category: str, urgency: str) -> None:
    result = classify(text, rules)
    assert (result.category, result.urgency) == (category, urgency), result.explanation
    assert result.language == "bo"


@pytest.mark.parametrize(("text", "category", "urgency"), _params(MIXED_REPORTS))
def test_mixed_language_reports(rules: Rules, text: str, category: str, urgency: str) -> None:
    result = classify(text, rules)
    assert (result.category, result.urgency) == (category, urgency), result.explanation
    assert result.language == "mixed"
    assert {term.language for term in result.matched} == {"zh", "bo"}


def test_the_tables_cover_every_category() -> None:
    for rows in (CHINESE_REPORTS, TIBETAN_REPORTS):
        assert len({row[2] for row in rows}) >= 12
    covered = {row[2] for row in CHINESE_REPORTS + TIBETAN_REPORTS}
    assert covered == set(CATEGORY_CODES)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param("ཁ་བ་ཆེན་པོ་བབས་ནས་ལམ་ཁ་བཀག་སོང་།", id="tsheg-and-shad"),
        pytest.param("ཁ༌བ༌ཆེན༌པོ༌བབས༌ནས༌ལམ༌ཁ༌བཀག༌སོང༌།", id="non-breaking-tsheg"),
        pytest.param("ཁ་བ་ཆེན་པོ་བབས་ནས་ལམ་ཁ་བཀག་སོང", id="no-shad"),
        pytest.param("ཁ་བ་ཆེན་པོ་བབས་ནས་ལམ་ཁ་བཀག་སོང་", id="trailing-tsheg"),
        pytest.param("༄༅། །ཁ་བ་ཆེན་པོ་བབས་ནས། །ལམ་ཁ་བཀག་སོང༎", id="head-mark-and-double-shad"),
        pytest.param("ཁ་བ ཆེན་པོ བབས་ནས ལམ་ཁ བཀག་སོང", id="spaces-like-asr"),
    ],
)
def test_tibetan_punctuation_variants_agree(rules: Rules, variant: str) -> None:
    result = classify(variant, rules)
    assert (result.category, result.urgency) == ("weather_disaster", "urgent")
    assert [(term.term, term.category) for term in result.matched] == [
        ("ཁ་བ་ཆེན་པོ", "weather_disaster"),
        ("ལམ་ཁ", "infrastructure"),
    ]


@pytest.mark.parametrize(("name", "text", "category", "urgency"), CHINESE_REPORTS[:12])
def test_asr_spacing_does_not_change_the_result(
    rules: Rules, name: str, text: str, category: str, urgency: str
) -> None:
    compact = classify("".join(text.split()), rules)
    spaced = classify(" ".join("".join(text.split())), rules)  # a space between every character
    assert (compact.category, compact.urgency) == (spaced.category, spaced.urgency) == (category, urgency)
    assert compact.matched == spaced.matched


@pytest.mark.parametrize("text", ["ཁ་བས་ལམ་བཀག", "ཁ་བར་ལམ་བཀག", "ཁ་བའི་གནོད་སྐྱོན"])
def test_fused_case_particles_still_match(rules: Rules, text: str) -> None:
    result = classify(text, rules)
    assert result.category == "weather_disaster"
    assert MatchedTerm(category="weather_disaster", term="ཁ་བ", language="bo") in result.matched


def test_normalise_tibetan() -> None:
    assert normalise_tibetan("ཁ་བ༌ཆེན་པོ་།") == ["ཁ", "བ", "ཆེན", "པོ"]
    assert normalise_tibetan("༄༅། །བཀྲ་ཤིས་བདེ་ལེགས། །") == ["བཀྲ", "ཤིས", "བདེ", "ལེགས"]
    assert normalise_tibetan("牦牛 གཡག་ 3 头") == ["གཡག"]
    assert normalise_tibetan("") == []
    assert normalise_tibetan("   ") == []
    # NFC: the precomposed and the decomposed spelling of གྷ are one syllable.
    assert normalise_tibetan("\u0f43") == normalise_tibetan("\u0f42\u0fb7")


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\u3000"])
def test_empty_text_is_other_and_general(rules: Rules, text: str) -> None:
    result = classify(text, rules)
    assert (result.category, result.urgency, result.language) == ("other", "general", "unknown")
    assert result.matched == []
    assert result.explanation


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("牦牛病了", "zh"),
        ("གཡག་ན་འདུག", "bo"),
        ("གཡག་ན་འདུག 牦牛病了", "mixed"),
        ("1234 ok", "unknown"),
        ("扎西 ཀ", "zh"),  # one stray letter of the other script is not a mixed report
    ],
)
def test_language_detection(rules: Rules, text: str, language: str) -> None:
    assert classify(text, rules).language == language


def test_evidence_and_explanation_say_why(rules: Rules) -> None:
    result = classify("发生雪灾，有三户牧民被困在冬窝子里", rules)
    assert isinstance(result, Classification)
    assert all(isinstance(term, MatchedTerm) for term in result.matched)
    assert MatchedTerm(category="weather_disaster", term="雪灾", language="zh") in result.matched
    assert MatchedTerm(category="weather_disaster", term="被困", language="zh", urgent=True) in result.matched
    for needle in ("weather_disaster", "自然灾害", "雪灾", "被困", "urgent", "紧急"):
        assert needle in result.explanation


def test_tibetan_evidence_uses_the_term_as_written(rules: Rules) -> None:
    result = classify("ནད་པ་བརྒྱལ་སོང་།", rules)
    assert MatchedTerm(category="illness", term="ནད་པ", language="bo") in result.matched
    assert MatchedTerm(category="illness", term="བརྒྱལ", language="bo", urgent=True) in result.matched
    assert "ནད་པ" in result.explanation


def test_the_winning_category_comes_first_then_the_runners_up(rules: Rules) -> None:
    result = classify("草场 鼠害 很 严重 到处 都是 黑土滩", rules)
    assert [term.category for term in result.matched] == ["ecology", "ecology", "grassland_boundary"]


def test_a_longer_term_hides_the_shorter_ones_inside_it(rules: Rules) -> None:
    terms = [term.term for term in classify("两家因为草场纠纷吵了一架", rules).matched]
    assert "草场纠纷" in terms
    assert "纠纷" not in terms
    assert "草场" not in terms


def test_a_repeated_word_counts_once(rules: Rules) -> None:
    result = classify("牦牛牦牛牦牛", rules)
    assert [term.term for term in result.matched] == ["牦牛"]


def test_ties_go_to_life_and_safety(rules: Rules) -> None:
    # 危房 (house_collapse) and 雪灾 (weather_disaster) score the same.
    result = classify("雪灾过后发现一处危房", rules)
    assert result.category == "house_collapse"
    assert "weather_disaster" in result.explanation


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("房子里有个病人发烧了", "illness"),
        ("去医院的路断了", "infrastructure"),
        ("ཁང་པའི་ནང་ལ་ནད་པ་ཞིག་ཡོད།", "illness"),
        ("草场上的帐篷被压塌了", "house_collapse"),
    ],
)
def test_weak_keywords_say_where_not_what(rules: Rules, text: str, category: str) -> None:
    result = classify(text, rules)
    assert result.category == category, result.explanation


def test_weak_keywords_alone_still_decide(rules: Rules) -> None:
    assert classify("我家的房子", rules).category == "house_collapse"


def test_question_wording_keeps_a_general_category_general(rules: Rules) -> None:
    result = classify("请问今年的草原补奖什么时候发？", rules)
    assert (result.category, result.urgency) == ("policy", "general")
    assert "请问" in result.explanation


def test_question_wording_never_lowers_an_urgent_category(rules: Rules) -> None:
    result = classify("请问村里两家人的纠纷怎么调解", rules)
    assert (result.category, result.urgency) == ("dispute", "urgent")


def test_an_urgent_term_beats_question_wording(rules: Rules) -> None:
    result = classify("请问病人昏迷了怎么办", rules)
    assert (result.category, result.urgency) == ("illness", "urgent")


@pytest.mark.parametrize(
    ("text", "urgency"),
    [
        ("房屋倒塌，暂无人员伤亡", "general"),
        ("房屋倒塌，有人员伤亡", "urgent"),
        ("我家的牛走失了", "general"),
        ("我家的孩子走失了", "urgent"),
        ("牦牛死亡3头", "general"),
        ("牦牛大批死亡", "urgent"),
    ],
)
def test_urgent_exceptions(rules: Rules, text: str, urgency: str) -> None:
    assert classify(text, rules).urgency == urgency


# --- rules: deadlines, departments, content -----------------------------------------------------------

EXPECTED_DEPARTMENTS = {
    "dispute": "justice",
    "grassland_boundary": "natural_resources",
    "safety_hazard": "emergency",
    "weather_disaster": "emergency",
    "house_collapse": "housing",
    "illness": "health",
    "livestock": "agriculture",
    "population_movement": "public_security",
    "ecology": "forestry_grassland",
    "livelihood": "civil_affairs",
    "infrastructure": "transport",
    "policy": None,
    "suggestion": None,
    "other": None,
}


@pytest.mark.parametrize(("category", "department"), EXPECTED_DEPARTMENTS.items())
def test_department_for(rules: Rules, category: str, department: str | None) -> None:
    assert rules.department_for(category) == department


@pytest.mark.parametrize(
    ("category", "urgency", "hours"),
    [
        ("illness", "urgent", 24),
        ("house_collapse", "urgent", 24),
        ("weather_disaster", "urgent", 24),
        ("safety_hazard", "urgent", 24),
        ("dispute", "urgent", 72),
        ("dispute", "general", 168),
        ("policy", "general", 168),
        ("other", "general", 168),
    ],
)
def test_deadline_for(rules: Rules, category: str, urgency: str, hours: int) -> None:
    assert rules.deadline_for(category, urgency) == timedelta(hours=hours)


def test_every_urgent_deadline_is_no_longer_than_the_general_one(rules: Rules) -> None:
    for code in CATEGORY_CODES:
        assert rules.deadline_for(code, "urgent") <= rules.deadline_for(code, "general")


def test_deadline_and_department_reject_unknown_input(rules: Rules) -> None:
    with pytest.raises(KeyError, match="yak"):
        rules.deadline_for("yak", "urgent")
    with pytest.raises(KeyError, match="yak"):
        rules.department_for("yak")
    with pytest.raises(ValueError, match="critical"):
        rules.deadline_for("illness", "critical")


def test_packaged_rules(rules: Rules) -> None:
    assert isinstance(rules.version, str) and rules.version
    assert rules.default_deadline_hours == 168
    assert tuple(rules.categories) == CATEGORY_CODES
    urgent_by_default = {code for code, rule in rules.categories.items() if rule.default_urgency == "urgent"}
    assert urgent_by_default == {"safety_hazard", "weather_disaster", "dispute"}
    for code, rule in rules.categories.items():
        assert rule.code == code and rule.name_zh and rule.name_bo
        if code != "other":
            assert len(rule.keywords_zh) >= 15, code
            assert len(rule.keywords_bo) + len(rule.weak_keywords_bo) >= 6, code
        assert all(isinstance(term, tuple) and term for term in rule.keywords_bo)
    for word in ("昏迷", "不省人事", "被困", "失踪", "走失", "着火", "紧急", "救命", "快来"):
        assert word in rules.urgent_terms_zh
    assert set(DEPARTMENTS) >= {rule.department for rule in rules.categories.values()} - {None}
    assert "reviewed by" in DEFAULT_RULES_PATH.read_text(encoding="utf-8")


def test_rules_built_in_code_classify_too() -> None:
    base = load_rules()
    categories = dict(base.categories)
    rules = Rules(version="test", default_deadline_hours=168, categories=categories, urgent_terms_zh=("快",))
    result = classify("牦牛病了，快", rules)
    assert (result.category, result.urgency) == ("livestock", "urgent")


# --- loading: broken files fail loudly, naming the problem ---------------------------------------------


def _packaged() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _without_livestock(data: dict) -> None:
    del data["categories"]["livestock"]


def _extra_category(data: dict) -> None:
    data["categories"]["weather"] = copy.deepcopy(data["categories"]["weather_disaster"])


def _bad_urgency(data: dict) -> None:
    data["categories"]["illness"]["default_urgency"] = "critical"


def _unknown_department(data: dict) -> None:
    data["categories"]["ecology"]["department"] = "forestry"


def _zero_hours(data: dict) -> None:
    data["categories"]["dispute"]["deadline_hours"]["urgent"] = 0


def _urgent_longer_than_general(data: dict) -> None:
    data["categories"]["policy"]["deadline_hours"] = {"general": 24, "urgent": 48}


def _unquoted_version(data: dict) -> None:
    data["version"] = 2026.11


def _keyword_in_two_categories(data: dict) -> None:
    data["categories"]["illness"]["keywords"]["zh"].append("牦牛")


def _keyword_both_strong_and_weak(data: dict) -> None:
    data["categories"]["house_collapse"]["weak_keywords"]["zh"].append("危房")


def _misspelt_key(data: dict) -> None:
    data["categories"]["policy"]["keyword"] = data["categories"]["policy"].pop("keywords")


def _chinese_in_tibetan_list(data: dict) -> None:
    data["categories"]["livestock"]["keywords"]["bo"].append("牦牛")


def _space_in_chinese_keyword(data: dict) -> None:
    data["categories"]["livestock"]["keywords"]["zh"].append("牦 牛")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(_without_livestock, "missing category code.*livestock", id="missing-category"),
        pytest.param(_extra_category, "unknown category code.*weather", id="unknown-category"),
        pytest.param(_bad_urgency, "illness.default_urgency.*critical", id="bad-urgency"),
        pytest.param(_unknown_department, "ecology.department.*forestry", id="unknown-department"),
        pytest.param(_zero_hours, "dispute.deadline_hours.urgent.*positive", id="zero-hours"),
        pytest.param(_urgent_longer_than_general, "policy.deadline_hours.*longer", id="urgent-longer"),
        pytest.param(_unquoted_version, "version", id="unquoted-version"),
        pytest.param(_keyword_in_two_categories, "牦牛.*both illness and livestock", id="shared-keyword"),
        pytest.param(
            _keyword_both_strong_and_weak,
            "危房.*keywords and weak_keywords of house_collapse",
            id="weak-twice",
        ),
        pytest.param(_misspelt_key, "policy.*unknown key.*keyword", id="misspelt-key"),
        pytest.param(_chinese_in_tibetan_list, "livestock.keywords.bo.*non-Tibetan", id="zh-in-bo"),
        pytest.param(_space_in_chinese_keyword, "livestock.keywords.zh.*space", id="space-in-zh"),
    ],
)
def test_load_rules_rejects_a_broken_file(tmp_path: Path, mutate: Any, message: str) -> None:
    data = _packaged()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(RulesError, match=message) as caught:
        load_rules(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("categories: [unclosed\n", "not valid YAML", id="bad-yaml"),
        pytest.param("- just\n- a list\n", "expected a mapping", id="not-a-mapping"),
        pytest.param("", "expected a mapping", id="empty-file"),
    ],
)
def test_load_rules_rejects_unparseable_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RulesError, match=message):
        load_rules(path)


def test_load_rules_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "nowhere.yaml")


def test_load_rules_accepts_str_and_path_and_defaults(tmp_path: Path) -> None:
    data = _packaged()
    data["version"] = "test-1"
    del data["categories"]["policy"]["deadline_hours"]  # falls back to default_deadline_hours
    data["categories"]["illness"]["deadline_hours"] = {"general": 48}  # urgent falls back to general
    path = _write(tmp_path, data)
    for source in (path, str(path)):
        rules = load_rules(source)
        assert rules.version == "test-1"
        assert rules.deadline_for("policy", "general") == timedelta(hours=168)
        assert rules.deadline_for("policy", "urgent") == timedelta(hours=168)
        assert rules.deadline_for("illness", "urgent") == timedelta(hours=48)
    assert load_rules(None) == load_rules(DEFAULT_RULES_PATH)
