"""Traditional Chinese output: bare zh-Hant in Taiwan's standard characters (s2tw), and the one-to-many
characters OpenCC gets wrong in context (干/乾/幹, 发/發/髮, 面/麵, 里/裡/裏, 台/臺) corrected per region by the
reviewed phrase table. Every sentence must come out right; a row is (Simplified, zh-Hant, zh-TW, zh-HK)."""

from __future__ import annotations

import pytest

from redtrans.languages import PHRASE_FIXES, opencc_config, to_chinese_script

SENTENCES = [
    # 干: 乾 (dry), 幹 (do), 干 (interfere)
    ("头发干了，可以出门了", "頭髮乾了，可以出門了", "頭髮乾了，可以出門了", "頭髮乾了，可以出門了"),
    ("洗完头发还没干，等一下", "洗完頭髮還沒乾，等一下", "洗完頭髮還沒乾，等一下", "洗完頭髮還沒乾，等一下"),
    ("衣服干了吗？", "衣服乾了嗎？", "衣服乾了嗎？", "衣服乾了嗎？"),
    ("衣服干嘛这么贵", "衣服幹嘛這麼貴", "衣服幹嘛這麼貴", "衣服幹嘛這麼貴"),
    ("皮肤干到起皮", "皮膚乾到起皮", "皮膚乾到起皮", "皮膚乾到起皮"),
    ("这两天嘴唇都干了", "這兩天嘴唇都乾了", "這兩天嘴唇都乾了", "這兩天嘴唇都乾了"),
    ("鞋子湿了还没干透", "鞋子溼了還沒乾透", "鞋子溼了還沒乾透", "鞋子濕了還沒乾透"),
    ("你在干什么呢", "你在幹什麼呢", "你在幹什麼呢", "你在幹什麼呢"),
    ("今天干活干累了", "今天幹活幹累了", "今天幹活幹累了", "今天幹活幹累了"),
    ("今天干嘛去", "今天幹嘛去", "今天幹嘛去", "今天幹嘛去"),
    ("天干地支", "天干地支", "天干地支", "天干地支"),
    ("这个人真能干", "這個人真能幹", "這個人真能幹", "這個人真能幹"),
    ("饼干配奶茶", "餅乾配奶茶", "餅乾配奶茶", "餅乾配奶茶"),
    ("我们干杯吧", "我們乾杯吧", "我們乾杯吧", "我們乾杯吧"),
    ("不要干涉别人的生活", "不要干涉別人的生活", "不要干涉別人的生活", "不要干涉別人的生活"),
    # 发: 發 (send, start), 髮 (hair)
    ("我去染个发", "我去染個髮", "我去染個髮", "我去染個髮"),
    ("换了新发型好看吗", "換了新髮型好看嗎", "換了新髮型好看嗎", "換了新髮型好看嗎"),
    ("他有了新发现", "他有了新發現", "他有了新發現", "他有了新發現"),
    ("我发了一条笔记", "我發了一條筆記", "我發了一條筆記", "我發了一條筆記"),
    ("他的头发白了", "他的頭髮白了", "他的頭髮白了", "他的頭髮白了"),
    ("后天出发去台北", "後天出發去臺北", "後天出發去臺北", "後天出發去台北"),
    # 面: 面 (face, side), 麵 (noodles; 麪 in Hong Kong's standard)
    ("这家的面很好吃", "這家的麵很好吃", "這家的麵很好吃", "這家的麪很好吃"),
    ("面坨了，不好吃了", "麵坨了，不好吃了", "麵坨了，不好吃了", "麪坨了，不好吃了"),
    ("今天吃什么面？", "今天吃什麼麵？", "今天吃什麼麵？", "今天吃什麼麪？"),
    ("方便面不健康", "方便麵不健康", "泡麵不健康", "方便麪不健康"),
    ("我们明天见面吧", "我們明天見面吧", "我們明天見面吧", "我們明天見面吧"),
    ("表面上看没问题", "表面上看沒問題", "表面上看沒問題", "表面上看沒問題"),
    # 里: 裡 (Taiwan) / 裏 (Hong Kong) inside, 里 (li, names)
    ("家里有人吗", "家裡有人嗎", "家裡有人嗎", "家裏有人嗎"),
    ("这里的风景真美", "這裡的風景真美", "這裡的風景真美", "這裏的風景真美"),
    ("还有五公里就到了", "還有五公里就到了", "還有五公里就到了", "還有五公里就到了"),
    ("百里挑一的好看", "百里挑一的好看", "百里挑一的好看", "百里挑一的好看"),
    ("马里在非洲", "馬里在非洲", "馬里在非洲", "馬里在非洲"),
    # 台: 臺 (Taiwan's standard) / 台 (Hong Kong), 颱 (typhoon), 檯/枱 (table)
    ("台风要来了", "颱風要來了", "颱風要來了", "颱風要來了"),
    ("他的台风很稳", "他的臺風很穩", "他的臺風很穩", "他的台風很穩"),
    ("舞台灯光很美", "舞臺燈光很美", "舞臺燈光很美", "舞台燈光很美"),
    ("我买了一台新电脑", "我買了一臺新電腦", "我買了一臺新電腦", "我買了一台新電腦"),
    ("阳台上种了花", "陽臺上種了花", "陽臺上種了花", "陽台上種了花"),
    ("台积电的股票涨了", "台積電的股票漲了", "台積電的股票漲了", "台積電的股票漲了"),
    ("台灯坏了", "檯燈壞了", "檯燈壞了", "枱燈壞了"),
]


def test_bare_zh_hant_is_taiwan_standard_characters() -> None:
    assert opencc_config("zh-Hant") == "s2tw"  # no phrase conversion: 鼠标 stays 鼠標, not 滑鼠
    assert to_chinese_script("在家里吃面条", "zh-Hant") == "在家裡吃麵條"  # not s2t's 在家裏喫麪條
    assert to_chinese_script("这个鼠标", "zh-Hant") == "這個鼠標"


@pytest.mark.parametrize(("tag", "column"), [("zh-Hant", 1), ("zh-TW", 2), ("zh-HK", 3)])
def test_every_sentence_comes_out_right_per_region(tag: str, column: int) -> None:
    assert len(SENTENCES) >= 30
    wrong = [(row[0], to_chinese_script(row[0], tag), row[column]) for row in SENTENCES
             if to_chinese_script(row[0], tag) != row[column]]  # fmt: skip
    assert wrong == []


def test_the_phrase_table_only_changes_what_opencc_got_wrong() -> None:
    """Every correction is a same-length rewrite of one-to-many characters (or an exception kept as is)."""
    ambiguous = set("乾幹干發髮面麵麪里裡裏台臺颱檯枱")
    for wrong, right in PHRASE_FIXES.items():
        assert len(wrong) == len(right), wrong
        changed = {(a, b) for a, b in zip(wrong, right, strict=True) if a != b}
        assert all(a in ambiguous and b in ambiguous for a, b in changed), (wrong, right)
