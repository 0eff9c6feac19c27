"""Data where it lives: JSONL, CSV, Parquet and HF dataset folders through one reader; translate writes Parquet
by journaling JSONL and converting at the end, resumable as before; bench reads a Parquet suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from redtrans.datafiles import journal_path, open_rows, read_rows, write_parquet
from redtrans.engines.base import GenResult
from redtrans.errors import InputError
from redtrans.jsonl import read_jsonl
from redtrans.translate_file import FileFields, translate_file, validate_input
from redtrans.translator import Translator
from tests.stand_ins import PseudoTranslator, Reply, StandInUpstream, completion

pq = pytest.importorskip("pyarrow.parquet")
datasets = pytest.importorskip("datasets")

ROOT = Path(__file__).resolve().parent.parent
ROWS = [
    {"id": "a", "text": "今天的奶茶也太好喝了吧", "src": "zh", "tgt": "en"},
    {"id": "b", "text": "这家店绝绝子 🔥", "src": "zh", "tgt": "en"},
    {"id": "c", "text": "周末去爬山", "src": "zh", "tgt": "en"},
]


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_every_format_gives_the_same_rows(tmp_path: Path) -> None:
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    csv_file = write_csv(
        tmp_path / "posts.csv", "id,text,src,tgt\n" + "".join(f"{r['id']},{r['text']},zh,en\n" for r in ROWS)
    )
    parquet = tmp_path / "posts.parquet"
    write_parquet(ROWS, parquet)
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(saved))
    dict_dir = tmp_path / "saved_dict"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])}
    ).save_to_disk(str(dict_dir))
    expected = [(i, r) for i, r in enumerate(ROWS, 1)]
    for spec in (jsonl, csv_file, parquet, saved, f"{dict_dir}#train"):
        assert list(read_rows(spec)) == expected, spec
    assert [r["id"] for _, r in read_rows(f"{dict_dir}#test")] == ["a"]
    with pytest.raises(InputError, match="has splits test, train|has splits train, test"):
        list(read_rows(dict_dir))
    with pytest.raises(InputError, match="no split 'dev'"):
        list(read_rows(f"{dict_dir}#dev"))
    assert open_rows(jsonl).where(3) == f"{jsonl}:3"
    assert open_rows(csv_file).where(3) == f"{csv_file}: row 3"


def test_csv_keeps_strings_as_written(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", 'id,text\n007,NA\n8,"two\nlines, quoted"\n')
    assert [row for _, row in read_rows(path)] == [
        {"id": "007", "text": "NA"},
        {"id": "8", "text": "two\nlines, quoted"},
    ]
    tsv = write_csv(tmp_path / "x.tsv", "id\ttext\n1\thello, world\n")
    assert [row for _, row in read_rows(tsv)] == [{"id": "1", "text": "hello, world"}]


def test_csv_problems_name_the_row(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "posts.csv", "id,text\n1,你好\n2,\n3,再见\n")
    with pytest.raises(InputError) as info:
        validate_input(path, FileFields())
    assert str(info.value) == f"{path}: row 2: field 'text' is missing or empty"
    dup = write_csv(tmp_path / "dup.csv", "id,text,tgt\n1,你好,en\n1,再见,xx\n")
    with pytest.raises(InputError) as info:
        validate_input(dup, FileFields())
    assert f"{dup}: row 2: unknown language 'xx'" in str(info.value)
    assert f"{dup}: row 2: duplicate id '1'" in str(info.value)
    with pytest.raises(InputError, match="header"):
        validate_input(write_csv(tmp_path / "empty.csv", ""), FileFields())


def test_missing_inputs_and_hub_ids_never_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    with pytest.raises(InputError, match="input file not found"):
        open_rows(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="neither a dataset"):
        open_rows(tmp_path)
    source = open_rows("someone/not-cached-dataset")
    assert source.kind == "hf-hub"
    with pytest.raises(InputError, match="local Hugging Face cache"):
        list(source)
    assert os.environ.get("HF_HUB_OFFLINE") is None  # restored after the read


def _translator() -> Translator:
    return Translator(PseudoTranslator())


def test_translate_csv_to_parquet_journals_and_resumes(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "posts.csv", "post,lang\n" + "".join(f"{r['text']},zh\n" for r in ROWS))
    out = tmp_path / "out.parquet"
    fields = FileFields(text="post", src="lang")
    summary = translate_file(_translator(), src, out, fields, tgt="en")
    assert (summary.total, summary.written, summary.failed) == (3, 3, 0)
    assert summary.journal == journal_path(out) == tmp_path / "out.parquet.journal.jsonl"
    table = pq.read_table(out).to_pylist()
    assert [r["id"] for r in table] == ["row-1", "row-2", "row-3"]
    assert all(r["status"] == "ok" and r["src"] == "zh" and r["tgt"] == "en" for r in table)
    assert table[1]["translation"].endswith("🔥")
    # A kill after the first row: the journal has one row; the re-run does the rest and rewrites the Parquet.
    journal = journal_path(out)
    first = journal.read_text(encoding="utf-8").splitlines()[0]
    journal.write_text(first + "\n" + first[:25], encoding="utf-8")  # plus a torn line
    out.unlink()
    again = translate_file(_translator(), src, out, fields, tgt="en")
    assert (again.skipped, again.written) == (1, 2)
    assert sorted(r["id"] for r in pq.read_table(out).to_pylist()) == ["row-1", "row-2", "row-3"]


class FailSecond(PseudoTranslator):
    def generate(self, requests: list[Any]) -> list[GenResult]:
        results = super().generate(requests)
        for request, result in zip(requests, results, strict=True):
            if "绝绝子" in request.messages[-1]["content"]:
                result.text = ""
        return results


def test_parquet_output_holds_failed_rows_with_their_status(tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    write_parquet(ROWS, src)
    out = tmp_path / "out.parquet"
    summary = translate_file(Translator(FailSecond()), src, out)
    assert summary.failed == 1
    rows = {r["id"]: r for r in pq.read_table(out).to_pylist()}
    assert rows["b"]["status"] == "failed" and rows["b"]["attempts"] == 1 and rows["b"]["error"]
    assert rows["a"]["status"] == "ok" and rows["a"]["attempts"] is None and isinstance(rows["a"]["flags"], list)
    # The re-run retries the failed row (as with JSONL) and the Parquet file follows the journal.
    translate_file(_translator(), src, out)
    rows = {r["id"]: r for r in pq.read_table(out).to_pylist()}
    assert rows["b"]["status"] == "ok" and len(rows) == 3


def test_a_saved_dataset_folder_is_an_input(tmp_path: Path) -> None:
    saved = tmp_path / "ds"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(saved))
    out = tmp_path / "out.jsonl"
    translate_file(_translator(), saved, out)
    assert [row["id"] for _, row in read_jsonl(out)] == ["a", "b", "c"]


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redtrans", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", "OPENAI_API_KEY": ""},
    )


def test_cli_translates_a_csv_into_parquet(tmp_path: Path) -> None:
    """`redtrans translate -i posts.csv -o out.parquet` against a real OpenAI-compatible endpoint on loopback.

    Replaces the expectation of tests/test_errors.py::test_a_csv_given_as_jsonl: a .csv is now read as CSV."""
    src = write_csv(tmp_path / "posts.csv", "id,text\n1,你好\n2,今天好开心\n")

    def behave(index: int, body: dict[str, Any]) -> Reply:
        return Reply(body=completion(body, "hello there"))

    with StandInUpstream(behave) as upstream:
        out = tmp_path / "out.parquet"
        proc = _cli("translate", "-i", str(src), "-o", str(out), "--tgt", "en", "--model", upstream.url)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = pq.read_table(out).to_pylist()
    assert [(r["id"], r["translation"], r["status"]) for r in rows] == [
        ("1", "hello there", "ok"),
        ("2", "hello there", "ok"),
    ]
    assert journal_path(out).is_file()


def test_cli_names_the_csv_row_in_one_line(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "posts.csv", "id,text\n1,你好\n2,\n")
    proc = _cli("translate", "-i", str(src), "-o", str(tmp_path / "out.jsonl"), "--tgt", "en")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert f"{src}: row 2: field 'text' is missing or empty" in lines[0]


def test_bench_runs_on_a_parquet_suite(tmp_path: Path) -> None:
    from redtrans.bench import BenchConfig, parse_system, run_bench
    from redtrans.bench.suites import load_suite

    suite_rows = [
        {"id": "s1", "source": "今天的奶茶也太好喝了吧", "reference": "The milk tea today is so good", "src": "zh",
         "tgt": "en", "category": "comment"},
        {"id": "s2", "source": "周末去爬山，累瘫了", "reference": "Went hiking this weekend, exhausted", "src": "zh",
         "tgt": "en", "category": "comment"},
        {"id": "s3", "source": "This coffee shop is a hidden gem", "reference": "這家咖啡店是隱藏的寶藏", "src": "en",
         "tgt": "zh-Hant", "category": "title"},
    ]  # fmt: skip
    data = tmp_path / "suite.parquet"
    write_parquet(suite_rows, data)
    suite = load_suite("parquet", str(data))
    assert [(s.id, s.src, s.tgt, s.category) for s in suite.segments][2] == ("s3", "en", "zh", "title")
    assert suite.name == "parquet" and len(suite.sha256) == 64
    hyps = tmp_path / "hyps.jsonl"
    hyps.write_text(
        "".join(
            json.dumps({"id": r["id"], "translation": r["reference"]}, ensure_ascii=False) + "\n" for r in suite_rows
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    config = BenchConfig(suite="parquet", data=str(data), systems=[parse_system(f"outputs:{hyps}")], out=out,
                         bootstrap_samples=10)  # fmt: skip
    run_bench(config, show_progress=False)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["suite"]["name"] == "parquet"
    text = json.dumps(results)
    assert '"bleu": 1.0' in text or "100.0" in text  # references as hypotheses score perfectly
    bad = tmp_path / "bad.parquet"
    write_parquet([{"source": "x", "reference": "y", "src": "zh", "tgt": "en"}, {"source": "", "reference": "y"}], bad)
    from redtrans.errors import SuiteError

    with pytest.raises(SuiteError, match=r"bad.parquet: row 2: field 'source'"):
        load_suite("parquet", str(bad))
