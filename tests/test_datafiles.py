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
    assert validate_input(path, FileFields()).bad_rows == 1  # a row-level problem: that row fails when run
    with pytest.raises(InputError) as info:
        validate_input(path, FileFields(), strict=True)
    assert str(info.value).startswith(f"{path}: row 2: field 'text' is empty")
    dup = write_csv(tmp_path / "dup.csv", "id,text,tgt\n1,你好,en\n1,再见,xx\n")
    with pytest.raises(InputError) as info:
        validate_input(dup, FileFields())
    assert f"{dup}: row 2: unknown language 'xx'" in str(info.value)
    assert "(and 1 more: rows 2)" in str(info.value)  # one line: the duplicate id is row 2's other problem
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
    proc = _cli("translate", "-i", str(src), "-o", str(tmp_path / "out.jsonl"), "--tgt", "en", "--strict",
                "--engine", "standin")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert f"{src}: row 2: field 'text' is empty" in lines[0]
    assert not (tmp_path / "out.jsonl").exists()


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


# -- issue 33: outputs in the format their name says, CSV read as Excel writes it, input columns kept ---------
def _standin(*args: str) -> subprocess.CompletedProcess[str]:
    return _cli("translate", "--engine", "standin", "--tgt", "en", *args)


def _table_rows(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in read_rows(path)]


def test_each_output_extension_gets_its_format_and_others_are_refused_before_any_work(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "posts.csv", "id,text\n1,今天好开心\n2,周末去爬山\n")
    proc = _standin("-i", str(src), "-o", str(tmp_path / "out.csv"))
    assert proc.returncode == 0, proc.stderr
    for name in ("out.jsonl", "out.tsv", "out.parquet", "out/"):
        translate_file(_translator(), src, tmp_path / name, tgt="en")
    assert [row["id"] for _, row in read_jsonl(tmp_path / "out.jsonl")] == ["1", "2"]
    csv_text = (tmp_path / "out.csv").read_text(encoding="utf-8")
    assert csv_text.splitlines()[0].startswith("id,text,translation,src,tgt,flags,")
    assert (tmp_path / "out.tsv").read_text(encoding="utf-8").splitlines()[0].startswith("id\ttext\ttranslation\t")
    assert pq.read_table(tmp_path / "out.parquet").column("id").to_pylist() == ["1", "2"]
    dataset = datasets.load_dataset("parquet", data_dir=str(tmp_path / "out"), split="train")
    assert dataset["id"] == ["1", "2"] and (tmp_path / "out" / "part-00000.parquet").is_file()
    # Every output reads back as the same rows (CSV/TSV cells are text: lists as JSON).
    jsonl_rows = _table_rows(tmp_path / "out.jsonl")
    for name in ("out.parquet", "out"):  # the same rows; columns no row filled (error, attempts) are null
        assert [{k: v for k, v in r.items() if v is not None} for r in _table_rows(tmp_path / name)] == jsonl_rows
    assert [r["translation"] for r in _table_rows(tmp_path / "out.tsv")] == [r["translation"] for r in jsonl_rows]
    assert _table_rows(tmp_path / "out.csv")[0]["flags"] == "[]"
    refused = tmp_path / "refused"
    refused.mkdir()
    for name, hint in (("out.json", "JSON Lines is .jsonl"), ("out.txt", "--output takes .jsonl, .csv")):
        proc = _standin("-i", str(src), "-o", str(refused / name))
        assert proc.returncode == 2 and hint in proc.stderr, proc.stderr
    assert not list(refused.iterdir())  # nothing written: no output, no journal, no lock


def test_a_csv_output_is_journaled_and_resumes(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "posts.csv", "post\n" + "".join(f"{r['text']}\n" for r in ROWS))
    out = tmp_path / "out.csv"
    fields = FileFields(text="post")
    translate_file(_translator(), src, out, fields, src="zh", tgt="en")
    journal = journal_path(out)
    assert journal == tmp_path / "out.csv.journal.jsonl"
    first = journal.read_text(encoding="utf-8").splitlines()[0]
    journal.write_text(first + "\n", encoding="utf-8")  # killed after one row
    out.unlink()
    again = translate_file(_translator(), src, out, fields, src="zh", tgt="en")
    assert (again.skipped, again.written) == (1, 2)
    assert [r["id"] for r in _table_rows(out)] == ["row-1", "row-2", "row-3"]


def test_excel_csv_with_a_bom_and_a_bom_jsonl_are_read(tmp_path: Path) -> None:
    excel = tmp_path / "excel.csv"
    excel.write_bytes('\ufeffid,text\r\n1,你好\r\n2,"两行\r\n文字"\r\n'.encode())
    assert _table_rows(excel) == [{"id": "1", "text": "你好"}, {"id": "2", "text": "两行\r\n文字"}]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes('\ufeff{"id": "1", "text": "你好"}\n'.encode())
    assert _table_rows(jsonl) == [{"id": "1", "text": "你好"}]
    named_json = tmp_path / "posts.json"  # an input named .json is still read as JSON Lines
    named_json.write_bytes(jsonl.read_bytes())
    assert _table_rows(named_json) == [{"id": "1", "text": "你好"}]
    proc = _standin("-i", str(excel), "-o", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 0, proc.stderr


def test_a_ragged_csv_row_is_a_file_line_error_not_a_shifted_row(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "posts.csv", 'id,text\n0,"two\nlines"\n1,hi,extra\n2,ok\n')
    with pytest.raises(InputError) as info:
        list(read_rows(src))
    assert str(info.value).startswith(f"{src}:4: row 2 has 3 cells, the header 2 (id, text)")
    short = write_csv(tmp_path / "short.tsv", "id\ttext\n1\n")
    with pytest.raises(InputError, match=r"short.tsv:2: row 1 has 1 cells"):
        list(read_rows(short))
    proc = _standin("-i", str(src), "-o", str(tmp_path / "out.jsonl"))
    assert proc.returncode == 2 and f"{src}:4: row 2 has 3 cells" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out.jsonl").exists()


def test_input_columns_are_kept_and_collisions_prefixed(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "posts.csv", "id,text,likes,user,status\n1,今天好开心,3,amy,draft\n2,周末去爬山,5,bo,live\n"
    )
    proc = _standin("-i", str(src), "-o", str(tmp_path / "all.jsonl"))
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "input." in line]
    assert len(notes) == 1 and "status → input.status" in notes[0], proc.stderr  # said once, not per row
    rows = _table_rows(tmp_path / "all.jsonl")
    assert [(r["likes"], r["user"], r["input.status"], r["status"]) for r in rows] == [
        ("3", "amy", "draft", "ok"),
        ("5", "bo", "live", "ok"),
    ]
    assert list(rows[0])[:5] == ["id", "text", "translation", "src", "tgt"]
    translate_file(_translator(), src, tmp_path / "none.jsonl", tgt="en", keep="none")
    assert not {"likes", "user", "input.status"} & set(_table_rows(tmp_path / "none.jsonl")[0])
    translate_file(_translator(), src, tmp_path / "some.csv", tgt="en", keep="likes")
    some = _table_rows(tmp_path / "some.csv")[0]
    assert "likes" in some and not {"user", "input.status"} & set(some)
    proc = _standin("-i", str(src), "-o", str(tmp_path / "bad.jsonl"), "--keep-columns", "likes,views")
    assert proc.returncode == 2 and "'views'" in proc.stderr and not (tmp_path / "bad.jsonl").exists()


def test_the_hf_translation_schema_in_and_back_out(tmp_path: Path) -> None:
    src = tmp_path / "mt.jsonl"
    src.write_text(
        json.dumps({"translation": {"zh": "今天好开心", "en": None}, "likes": 3}, ensure_ascii=False) + "\n"
        + json.dumps({"translation": {"zh": "周末去爬山"}, "likes": 5}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    out = tmp_path / "out"
    fields = FileFields(text="translation.zh", translation="translation.en")
    translate_file(_translator(), src, out, fields, src="zh", tgt="en")
    dataset = datasets.load_dataset("parquet", data_dir=str(out), split="train")
    assert dataset.features["translation"] == {"zh": datasets.Value("string"), "en": datasets.Value("string")}
    assert [t["zh"] for t in dataset["translation"]] == ["今天好开心", "周末去爬山"]
    assert all(t["en"] and t["en"] != t["zh"] for t in dataset["translation"])
    assert dataset["likes"] == [3, 5] and dataset["text"] == ["今天好开心", "周末去爬山"]
    # A real column whose name has a dot wins over the nested reading; `a\.b` forces it.
    dotted = tmp_path / "dotted.jsonl"
    dotted.write_text(json.dumps({"a.b": "周末去爬山", "a": {"b": "今天好开心"}}, ensure_ascii=False) + "\n",
                      encoding="utf-8")  # fmt: skip
    for spec in ("a.b", "a\\.b"):
        translate_file(_translator(), dotted, tmp_path / f"{len(spec)}.jsonl", FileFields(text=spec), "zh", "en")
        assert _table_rows(tmp_path / f"{len(spec)}.jsonl")[0]["text"] == "周末去爬山", spec
    from redtrans.datafiles import FieldPath

    assert FieldPath("a.b").get({"a": {"b": 1}}) == 1 and FieldPath("a\\.b").get({"a": {"b": 1}}) is None
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"translation": "plain", "text": "你好"}, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="field 'translation' is str, so it cannot hold 'translation.en'"):
        validate_input(bad, FileFields(translation="translation.en"))


def test_parquet_outputs_have_one_schema_with_or_without_flags(tmp_path: Path) -> None:
    """A run with no flags used to store flags as list<null>, which cannot be loaded beside a run with flags."""
    clean, flagged = tmp_path / "clean.parquet", tmp_path / "flagged.parquet"
    translate_file(_translator(), _rows_file(tmp_path, ROWS[:1]), clean)
    translate_file(Translator(FailSecond()), _rows_file(tmp_path, ROWS[1:2], "b.jsonl"), flagged)
    schemas = [pq.read_schema(p) for p in (clean, flagged)]
    assert schemas[0].field("flags").type == schemas[1].field("flags").type
    assert str(schemas[0].field("flags").type).startswith("list<") and "null" not in str(schemas[0])
    both = datasets.load_dataset("parquet", data_files=[str(clean), str(flagged)], split="train")
    assert both["status"] == ["ok", "failed"]


def _rows_file(tmp_path: Path, rows: list[dict[str, Any]], name: str = "a.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_dataset_folder_is_sharded_with_a_manifest_and_reads_back(tmp_path: Path) -> None:
    from redtrans.datafiles import MANIFEST_NAME, export_journal, open_shard, read_manifest, write_manifest

    journal = tmp_path / "journal.jsonl"
    rows = [{"id": str(i), "text": f"t{i}", "n": i, "tags": ["a"] if i % 2 else []} for i in range(7)]
    rows.append({"id": "3", "text": "t3 again", "n": 3, "tags": []})  # a later row of an id wins
    journal.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "ds"
    (out / "part-00009.parquet").parent.mkdir()
    (out / "part-00009.parquet").write_bytes(b"left from an earlier run")
    assert export_journal(journal, out, {"tags": "list<string>"}, shard_rows=3) == 7
    manifest = read_manifest(out)
    assert manifest is not None and [(s.file, s.rows) for s in manifest.shards] == [
        ("part-00000.parquet", 3), ("part-00001.parquet", 3), ("part-00002.parquet", 1)]  # fmt: skip
    assert manifest.rows == 7 and manifest.columns["tags"] == "list<item: string>"
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME, *(s.file for s in manifest.shards)]
    loaded = datasets.load_dataset("parquet", data_dir=str(out), split="train")
    assert loaded["id"] == ["0", "1", "2", "4", "5", "6", "3"] and loaded["text"][-1] == "t3 again"
    assert [r["id"] for r in _table_rows(out)] == loaded["id"]  # our reader follows the manifest
    # The same API for other writers (the Ray jobs): stream a shard, commit it, record it.
    import pyarrow as pa

    schema = pa.schema([("id", pa.string())])
    with open_shard(tmp_path / "ray", 0, schema) as shard:
        shard.write([{"id": "x"}, {"id": "y"}])
        assert not (tmp_path / "ray" / "part-00000.parquet").exists()  # not in place until committed
        committed = shard.commit()
    write_manifest(tmp_path / "ray", [committed], schema)
    assert [r["id"] for r in _table_rows(tmp_path / "ray")] == ["x", "y"]
    (tmp_path / "ray" / committed.file).unlink()
    with pytest.raises(InputError, match="incomplete dataset"):
        list(read_rows(tmp_path / "ray"))


def test_a_folder_with_other_files_is_not_overwritten(tmp_path: Path) -> None:
    from redtrans.datafiles import output_format

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(InputError, match="other files"):
        output_format(tmp_path / "mine")
    assert output_format(tmp_path / "new") == output_format(f"{tmp_path}/v1.2/") == "dataset"
    with pytest.raises(InputError, match="end a folder's name with /"):
        output_format(tmp_path / "v1.2")


def test_an_export_streams_any_journal_into_one_schema(tmp_path: Path) -> None:
    """Arrow's JSON reader does the conversion (no Python objects per row); what it cannot take as is, a column
    of mixed types, a later row of an id, a line longer than its block, a column of empty objects, is handled."""
    from redtrans.datafiles import export_journal

    journal = tmp_path / "journal.jsonl"
    rows = [
        {"id": "a", "n": 1, "mixed": 1, "empty": {}, "big": 2**70, "long": "长" * 200_000, "nested": {"x": [1]}},
        {"id": "b", "n": 2.5, "mixed": "two", "empty": {}, "big": None, "long": "", "nested": {"y": "z"}},
        {"id": "a", "n": 3, "mixed": [3], "empty": None, "big": 1, "long": "short", "nested": None},
    ]
    journal.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.parquet"
    assert export_journal(journal, out, {"id": "string", "flags": "list<string>"}) == 2
    table = pq.read_table(out)
    assert table.column_names == ["id", "flags", "n", "mixed", "empty", "big", "long", "nested"]
    assert str(table.schema.field("n").type) == "double" and str(table.schema.field("flags").type).startswith("list")
    assert {name: str(table.schema.field(name).type) for name in ("mixed", "empty", "big")} == dict.fromkeys(
        ("mixed", "empty", "big"), "string"
    )  # no common type: JSON text
    got = {row["id"]: row for row in table.to_pylist()}
    assert got["b"]["mixed"] == "two" and got["a"]["mixed"] == "[3]" and got["a"]["n"] == 3.0  # a's last row
    assert got["b"]["long"] == "" and got["a"]["long"] == "short" and got["b"]["flags"] is None
    assert got["b"]["nested"] == {"x": None, "y": "z"} and got["b"]["empty"] == "{}"
    assert not list(tmp_path.glob(".*.tmp"))  # the normalized copy is gone
    long_only = tmp_path / "long.jsonl"
    long_only.write_text(json.dumps({"id": "x", "text": "长" * 200_000}, ensure_ascii=False) + "\n", "utf-8")
    assert export_journal(long_only, tmp_path / "long.parquet") == 1  # a line longer than Arrow's default block
    assert len(pq.read_table(tmp_path / "long.parquet").column("text")[0].as_py()) == 200_000
