"""The bench HTML report is rendered from a Jinja2 template with autoescaping (it was f-strings): text from posts,
references and hypotheses can never become markup, and the page keeps its sections, charts and worst-segments
table (tests/test_bench.py opens it in Chromium)."""

from __future__ import annotations

import json
from pathlib import Path

from redtrans.bench import BenchConfig, parse_system, run_bench
from redtrans.bench.report import html_report
from tests.test_bench import write_outputs, write_suite

HOSTILE = '<img src=x onerror="alert(1)"> & </td></tr>'


def test_the_report_escapes_every_text_and_keeps_its_sections(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "suite.jsonl")
    good = write_outputs(tmp_path / "good.jsonl", lambda text, i: text)
    hostile = write_outputs(tmp_path / "hostile.jsonl", lambda text, i: HOSTILE if i == 0 else text)
    out = tmp_path / "out"
    results = run_bench(
        BenchConfig(suite="jsonl", data=str(suite), systems=[parse_system(f"outputs:{good}"),
                    parse_system(f"name=<b>x</b>,outputs={hostile}")], out=out, bootstrap_samples=20, worst=3),
        show_progress=False,
    )  # fmt: skip
    page = html_report(json.loads(json.dumps(results)), worst=3)
    assert page == (out / "report.html").read_text(encoding="utf-8")
    assert HOSTILE not in page and "<b>x</b>" not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; &lt;/td&gt;&lt;/tr&gt;" in page
    assert 'data-system="&lt;b&gt;x&lt;/b&gt;"' in page
    for section in ("Scores per direction and category", "SNS fidelity and output failures", "Significance",
                    "Worst segments (lowest sentence chrF++, 3 per system)", "Systems and signatures"):  # fmt: skip
        assert f"<h2>{section}" in page, section
    assert page.count("<svg ") >= 2 and page.count('<tr data-system="') == 6
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
