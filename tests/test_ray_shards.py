"""Our own shards of a `translate --ray` folder, without Ray: planning, commit, resume (issue 34 item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from redtrans.datafiles import open_rows
from redtrans.engines import EngineSpec, create_engine
from redtrans.errors import ConfigError, InputError
from redtrans.resume import translation_settings
from redtrans.scale import shards as sh
from redtrans.scale.raydata import actor_spec, job_settings, pool_size
from redtrans.translate_file import FileFields, translate_file
from redtrans.translator import Translator, TranslatorConfig

SPEC = EngineSpec(kind="standin", deterministic=True)
CONFIG = TranslatorConfig()


def _posts(path: Path, n: int, changed: dict[int, str] | None = None) -> Path:
    texts = ["今天的奶茶好好喝", "this hotpot place is fire", "周末去成都看熊猫", "no cap best latte ever"]
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            text = (changed or {}).get(i, f"{texts[i % 4]} {i}")
            out.write(json.dumps({"id": f"p{i}", "text": text}, ensure_ascii=False) + "\n")
    return path


def _run(folder: Path, posts: Path, translator: Translator, settings: str, overwrite: bool = False,
         retry_failed: bool = False) -> sh.Plan:  # fmt: skip
    """What `translate_ray` does, with the shards done here in turn instead of on actors."""
    plan = sh.plan_translate(posts, folder, FileFields(), settings, total=40, shard_rows=10, overwrite=overwrite)
    todo, _ = sh.pending_shards(plan, retry_failed)
    for shard in todo:
        sh.translate_shard(translator, folder, shard, settings, retry_failed)
    sh.finish(plan)
    return plan


@pytest.fixture
def translator() -> Translator:
    return Translator(create_engine(SPEC), CONFIG)


def test_shards_by_key_resume_and_no_duplicates(tmp_path: Path, translator: Translator) -> None:
    posts = _posts(tmp_path / "posts.jsonl", 40)
    folder = tmp_path / "out"
    settings = job_settings(SPEC, CONFIG, None, None)
    plan = _run(folder, posts, translator, settings)
    assert plan.shards == 4 and sum(c.rows for c in plan.expected) == 40
    rows = [row for _, row in open_rows(folder)]  # the datafiles reader takes the folder by its manifest
    assert sorted(r["id"] for r in rows) == sorted(f"p{i}" for i in range(40))
    for row in rows:  # every row sits in the shard its resume key names
        assert sh.shard_of(row["key"], plan.shards) == next(
            s for s in range(plan.shards) if row["id"] in {r["id"] for r in sh.read_shard(folder, s) or []}
        )
    # A rerun of the same input: every shard is done, nothing is translated.
    plan = sh.plan_translate(posts, folder, FileFields(), settings, total=40, shard_rows=10)
    assert sh.pending_shards(plan)[0] == []
    # One row's text changed: its key moves it (maybe to another shard); the old row is gone, never duplicated.
    _posts(posts, 40, changed={7: "a brand new post 7"})
    plan = sh.plan_translate(posts, folder, FileFields(), settings, total=40, shard_rows=10)
    todo, _ = sh.pending_shards(plan)
    assert 1 <= len(todo) <= 2
    summaries = [sh.translate_shard(translator, folder, s, settings) for s in todo]
    assert sum(s.written for s in summaries) == 1
    sh.finish(plan)
    rows = [row for _, row in open_rows(folder)]
    assert len(rows) == 40 and len({r["id"] for r in rows}) == 40
    assert next(r for r in rows if r["id"] == "p7")["text"] == "a brand new post 7"


def test_failed_rows_of_committed_shards_redone_within_the_cap(tmp_path: Path, translator: Translator) -> None:
    posts = _posts(tmp_path / "posts.jsonl", 40)
    folder = tmp_path / "out"
    settings = job_settings(SPEC, CONFIG, None, None)
    _run(folder, posts, translator, settings)
    # Mark two rows of shard 0 failed as an earlier attempt left them: one with attempts left, one at the cap.
    table = pq.read_table(folder / sh.shard_name(0)).to_pylist()
    table[0].update(status="failed", error="engine error", attempts=1, translation="")
    table[1].update(status="failed", error="engine error", attempts=3, translation="")
    sh.write_shard(folder, 0, table)
    plan = sh.plan_translate(posts, folder, FileFields(), settings, total=40, shard_rows=10)
    todo, done = sh.pending_shards(plan)
    assert todo == [0] and sum(s.failed for s in done) == 0
    summary = sh.translate_shard(translator, folder, 0, settings)
    assert (summary.written, summary.failed, summary.failed_ids) == (1, 1, [table[1]["id"]])
    after = {r["id"]: r for r in sh.read_shard(folder, 0) or []}
    assert after[table[0]["id"]]["status"] == "ok" and after[table[0]["id"]]["translation"]
    assert after[table[1]["id"]]["status"] == "failed"  # out of attempts: left failed, not redone
    plan = sh.plan_translate(posts, folder, FileFields(), settings, total=40, shard_rows=10)
    assert sh.pending_shards(plan)[0] == []


def test_folder_and_settings_checks(tmp_path: Path, translator: Translator) -> None:
    posts = _posts(tmp_path / "posts.jsonl", 40)
    folder = tmp_path / "out"
    _run(folder, posts, translator, job_settings(SPEC, CONFIG, None, None))
    other = job_settings(SPEC, CONFIG, None, "de")
    with pytest.raises(ConfigError, match="other settings"):
        sh.plan_translate(posts, folder, FileFields(), other, total=40)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="other files"):
        sh.check_folder(tmp_path / "mine")
    with pytest.raises(InputError, match="not a file"):
        sh.check_folder(posts)
    single = tmp_path / "single"  # a folder written without --ray: its shards carry no keys
    (single).mkdir()
    (single / ".manifest.json").write_text("{}")
    with pytest.raises(InputError, match="without --ray"):
        sh.check_folder(single)
    held = sh.lock_folder(folder)
    with pytest.raises(InputError, match="another process"):
        sh.lock_folder(folder)  # a second driver on the same folder
    held.close()
    sh.lock_folder(folder).close()


def test_overwrite_starts_over_and_retry_failed_resets_the_cap(tmp_path: Path, translator: Translator) -> None:
    """`translate --ray --overwrite / --retry-failed` behave as in one process (`translate_file`)."""
    posts = _posts(tmp_path / "posts.jsonl", 40, changed={3: "   "})
    folder = tmp_path / "out"
    settings = job_settings(SPEC, CONFIG, None, None)
    _run(folder, posts, translator, settings)
    # A row failed on its own text is failed for good: a rerun has nothing to do.
    plan = sh.plan_translate(posts, folder, FileFields(), settings, total=40, shard_rows=10)
    assert sh.pending_shards(plan)[0] == []
    # A row out of attempts is left failed, unless --retry-failed, which tries it again with its count reset.
    shard = next(s for s in range(plan.shards) if "p5" in {r["id"] for r in sh.read_shard(folder, s) or []})
    rows = sh.read_shard(folder, shard) or []
    row = next(r for r in rows if r["id"] == "p5")
    row.update(status="failed", error="engine error", reason="engine_error", attempts=3, translation="")
    sh.write_shard(folder, shard, rows)
    assert sh.pending_shards(plan)[0] == []
    _run(folder, posts, translator, settings, retry_failed=True)
    after = {r["id"]: r for r in sh.iter_output(folder)}
    assert after["p5"]["status"] == "ok" and after["p5"]["translation"]
    assert (after["p3"]["status"], after["p3"]["attempts"]) == ("failed", 1)  # tried again, from a count of 0
    # Other settings: refused, unless --overwrite, which starts the folder over (every row redone).
    other = job_settings(SPEC, CONFIG, None, "de")
    with pytest.raises(ConfigError, match="give --overwrite"):
        sh.plan_translate(posts, folder, FileFields(), other, total=40)
    plan = _run(folder, posts, translator, other, overwrite=True)
    rows = list(sh.iter_output(folder))
    assert len(rows) == 40 and {r["settings"] for r in rows} == {other}
    assert sh.read_state(folder) == sh.JobState(plan.shards, other)
    # --overwrite with the same settings redoes every shard too (translate_file empties its output).
    plan = sh.plan_translate(posts, folder, FileFields(), other, total=40, shard_rows=10, overwrite=True)
    assert sh.pending_shards(plan)[0] == list(range(plan.shards))


def test_pool_sizing_leaves_a_tenth_free() -> None:
    assert pool_size(2, None, None) == (1, 1.0)
    assert pool_size(2, 2, None) == (2, 0.9)
    assert pool_size(16, None, 4) == (3, 4)
    actors, cpus = pool_size(64, 8, 8)
    assert actors * cpus <= 0.9 * 64
    spec = actor_spec(EngineSpec(model="http://a:8000/v1,http://b:8000/v1", parallel=64), 8, 1)
    assert spec.parallel == 8  # a fleet's concurrency split across the actors
    threaded = actor_spec(EngineSpec(kind="llamacpp", parallel=4), 2, 3)
    assert threaded.options["n_threads"] == 3
    deterministic = actor_spec(EngineSpec(kind="llamacpp", deterministic=True), 2, 3)
    assert "n_threads" not in deterministic.options and deterministic.parallel == 3  # 3 single-thread contexts


def test_without_ray_nothing_imports_it(tmp_path: Path) -> None:
    """`translate` without --ray neither imports Ray nor changes; --ray without an input file is a user error."""
    import subprocess
    import sys

    posts = _posts(tmp_path / "posts.jsonl", 3)
    script = (
        "import sys\nfrom typer.testing import CliRunner\nfrom redtrans.cli import app\n"
        f"ok = CliRunner().invoke(app, ['translate', '-i', {str(posts)!r}, '-o', {str(tmp_path / 'o.jsonl')!r},"
        " '--engine', 'standin'])\n"
        "bad = CliRunner().invoke(app, ['translate', 'hello', '--ray', 'local', '--engine', 'standin'])\n"
        "print(ok.exit_code, bad.exit_code, 'ray' in sys.modules, 'give --input' in bad.output)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0", "2", "False", "True"]


def test_an_actors_own_error_reaches_the_user_as_itself() -> None:
    """Ray wraps an actor's exception (its cause may not survive pickling): the CLI still gets our error (exit 2,
    one line), not Ray's traceback."""
    from redtrans.errors import ModelError
    from redtrans.scale.raydata import _unwrap

    wrapped = RuntimeError("ray::MapWorker(...)\nredtrans.errors.ModelError: unknown model 'nope'\n\nThe above …")
    found = _unwrap(wrapped)
    assert isinstance(found, ModelError) and str(found) == "unknown model 'nope'"
    outer = RuntimeError("UDF failed")
    outer.__cause__ = ConfigError("bad option")
    assert isinstance(_unwrap(outer), ConfigError)
    plain = RuntimeError("a bug")
    assert _unwrap(plain) is plain


def test_shard_rows_have_the_single_process_key_bad_rows_fail_alone(tmp_path: Path, translator: Translator) -> None:
    posts = _posts(tmp_path / "posts.jsonl", 40, changed={3: "   "})
    folder = tmp_path / "out"
    _run(folder, posts, translator, job_settings(SPEC, CONFIG, None, None))
    shards = {r["id"]: r for _, r in open_rows(folder)}
    assert (shards["p3"]["status"], shards["p3"]["reason"]) == ("failed", "empty")  # no engine call, no stop
    assert sum(r["status"] == "ok" for r in shards.values()) == 39
    # The same rows translated by one process: the same resume keys (a job can move between the two).
    single = translate_file(translator, posts, tmp_path / "single.jsonl",
                            settings=translation_settings(CONFIG, SPEC))  # fmt: skip
    assert single.failed == 1
    rows = [json.loads(line) for line in (tmp_path / "single.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["id"]: r["key"] for r in rows} == {i: r["key"] for i, r in shards.items()}


def test_a_glob_or_a_folder_of_shard_files_is_one_input(tmp_path: Path, translator: Translator) -> None:
    """`translate --ray -i 'shards/*.jsonl'` (or the folder): the files' rows, validated as one file's are."""
    from redtrans.translate_file import validate_input

    lines = _posts(tmp_path / "posts.jsonl", 40).read_text(encoding="utf-8").splitlines(keepends=True)
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "a.jsonl").write_text("".join(lines[:25]), encoding="utf-8")
    (shards / "b.jsonl").write_text("".join(lines[25:]), encoding="utf-8")
    settings = job_settings(SPEC, CONFIG, None, None)
    _run(tmp_path / "out", tmp_path / "posts.jsonl", translator, settings)
    single = {r["id"]: r["key"] for r in sh.iter_output(tmp_path / "out")}
    for spec in (shards / "*.jsonl", shards):
        assert validate_input(spec, FileFields()).rows == 40
        folder = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
        _run(folder, spec, translator, settings)
        assert {r["id"]: r["key"] for r in sh.iter_output(folder)} == single  # the rows of the one file
    (shards / "b.jsonl").write_text(lines[25] + lines[0], encoding="utf-8")  # p0 again, on b's 2nd line
    with pytest.raises(InputError, match=r"b\.jsonl:2: duplicate id 'p0'"):
        validate_input(shards / "*.jsonl", FileFields())
    with pytest.raises(InputError, match="no file matches"):
        open_rows(shards / "*.parquet")
    (shards / "c.csv").write_text("id,text\nc1,hello\n", encoding="utf-8")
    with pytest.raises(InputError, match="several formats"):
        open_rows(shards)


def test_input_columns_kept_as_one_process_keeps_them(tmp_path: Path, translator: Translator) -> None:
    """`translate --ray --keep-columns`: the shards hold the input columns a single-process folder output holds
    (a column named like ours as input.NAME, mixed types as JSON text); a rerun keeping others rewrites them."""
    from redtrans.translate_file import plan_columns

    posts = tmp_path / "posts.jsonl"
    with posts.open("w", encoding="utf-8") as out:
        for i in range(40):
            extra = {"likes": i, "status": "draft", "meta": i if i % 2 else f"m{i}", "tags": ["a", str(i)]}
            out.write(json.dumps({"id": f"p{i}", "text": f"no cap best latte ever {i}", **extra}) + "\n")
    settings = job_settings(SPEC, CONFIG, None, None)
    translate_file(translator, posts, tmp_path / "single/", settings=translation_settings(CONFIG, SPEC))
    single = {r["id"]: r for _, r in open_rows(tmp_path / "single")}
    folder = tmp_path / "out"
    written: list[int] = []

    def run(keep: str) -> dict[str, dict]:
        columns = plan_columns(["id", "text", "likes", "status", "meta", "tags"], FileFields(), keep)
        plan = sh.plan_translate(posts, folder, FileFields(), settings, total=40, shard_rows=10, columns=columns)
        todo = sh.pending_shards(plan)[0]
        written.append(sum(sh.translate_shard(translator, folder, s, settings, layout=plan.layout).written
                           for s in todo))  # fmt: skip
        sh.finish(plan)
        return {r["id"]: r for _, r in open_rows(folder)}

    rows = run("all")
    assert rows == single and rows["p3"]["input.status"] == "draft" and rows["p3"]["meta"] == "3"
    assert pq.read_schema(folder / sh.shard_name(0)).names == list(next(iter(single.values())))
    rows = run("likes")  # another choice of columns: every shard rewritten, no row translated again
    assert set(rows["p3"]) == set(sh.OUTPUT_TYPES) | {"likes"} and rows["p3"]["likes"] == 3
    assert {r["translation"] for r in rows.values()} == {r["translation"] for r in single.values()}
    assert written == [40, 0]
