"""The bench HTML report names CJK and emoji fonts, and Chromium renders Chinese and emoji as glyphs, not boxes.

Debian's fonts-noto-cjk and fonts-noto-color-emoji are installed by `make test`. The check draws characters
on a canvas with the font the report's CSS gives its table cells and compares pixels: without a CJK font
every Han character is the same .notdef box (the same bitmap as an unassigned code point); without a colour
emoji font 🔥 has no colour. A screenshot of the report is saved under pytest's tmp dir (path printed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from redtrans.bench import BenchConfig, parse_system, run_bench
from redtrans.bench.report import FONT_STACK

ROWS = [
    ("zh", "en", "comment", "今天的奶茶也太好喝了吧😭 #探店", "The milk tea today is way too good 😭 #explore"),
    ("zh", "en", "note-title", "周末去爬山，累瘫了但是风景超美🏔️", "Went hiking this weekend, exhausted but the view 🏔️"),
    ("en", "zh", "comment", "This coffee shop is a hidden gem ☕🔥", "这家咖啡店是宝藏小店☕🔥"),
    ("en", "zh", "note-content", "Not me crying over a dog video again 🐶", "我又看狗狗视频看哭了🐶"),
]

# Pixels of one character drawn in the cells' font, as a string key; plus whether any pixel has colour.
_DRAW = """
([chars, font]) => chars.map(ch => {
  const c = document.createElement('canvas'); c.width = 64; c.height = 64;
  const g = c.getContext('2d'); g.fillStyle = '#fff'; g.fillRect(0, 0, 64, 64);
  g.fillStyle = '#000'; g.font = '40px ' + font; g.textBaseline = 'top'; g.fillText(ch, 4, 8);
  const d = g.getImageData(0, 0, 64, 64).data; let ink = 0, colour = 0, key = '';
  for (let i = 0; i < d.length; i += 4) {
    const dark = d[i] < 128 || d[i+1] < 128 || d[i+2] < 128; key += dark ? '1' : '0'; ink += dark;
    if (Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]) > 60) colour++;
  }
  return {ink, colour, key, width: g.measureText(ch).width};
})
"""


def test_report_css_names_cjk_and_emoji_fonts(tmp_path: Path) -> None:
    assert '"Noto Sans CJK SC"' in FONT_STACK and '"Noto Color Emoji"' in FONT_STACK
    assert FONT_STACK.index("CJK") < FONT_STACK.index("Emoji") and "sans-serif" in FONT_STACK


def test_chinese_and_emoji_render_as_glyphs_in_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium (make test installs it)")
    from playwright.sync_api import sync_playwright

    suite = tmp_path / "suite.jsonl"
    hyps = tmp_path / "hyps.jsonl"
    with suite.open("w", encoding="utf-8") as s, hyps.open("w", encoding="utf-8") as h:
        for i, (src, tgt, cat, source, ref) in enumerate(ROWS):
            s.write(json.dumps({"id": f"p{i}", "source": source, "reference": ref, "src": src, "tgt": tgt,
                                "category": cat}, ensure_ascii=False) + "\n")  # fmt: skip
            h.write(json.dumps({"id": f"p{i}", "translation": ref[: len(ref) // 2]}, ensure_ascii=False) + "\n")
    out = tmp_path / "out"
    run_bench(
        BenchConfig(
            suite="jsonl",
            data=str(suite),
            systems=[parse_system(f"outputs:{hyps}")],
            out=out,
            bootstrap_samples=10,
            worst=4,
        ),  # fmt: skip
        show_progress=False,
    )
    shot = tmp_path / "report-cjk-emoji.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto((out / "report.html").as_uri())
            page.wait_for_load_state("load")
            cell = page.locator("#worst tbody td", has_text="奶茶").first
            assert "Noto Sans CJK SC" in cell.evaluate("td => getComputedStyle(td).fontFamily")
            font = cell.evaluate("td => getComputedStyle(td).fontFamily")
            han, tofu, emoji = "奶茶爬山", "\U0010fffd\U0010fffe", "🔥😭"
            drawn = page.evaluate(_DRAW, [list(han + tofu + emoji), font])
            han_d, tofu_d, emoji_d = drawn[:4], drawn[4:6], drawn[6:]
            # Each Han character is its own glyph (four different bitmaps), none of them the missing-glyph box.
            assert len({d["key"] for d in han_d}) == 4, "Han characters all render alike: tofu"
            assert all(d["ink"] > 50 for d in han_d)
            assert not {d["key"] for d in han_d} & {d["key"] for d in tofu_d}
            # Colour emoji: coloured pixels, and the two emoji differ.
            assert all(d["colour"] > 50 for d in emoji_d), [(d["colour"], d["ink"], d["width"]) for d in drawn[6:]]
            assert emoji_d[0]["key"] != emoji_d[1]["key"]
            # The page itself: the worst-segments table with Chinese and emoji, as a test artifact.
            page.locator("#worst").scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"report screenshot: {shot}")
