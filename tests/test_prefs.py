"""prefs: generate / prescore / export rules / store (leases, k, optimistic locking, rate limit) / interop."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("argon2", reason="needs the prefs extra: pip install 'redtrans[prefs]'")

from typer.testing import CliRunner  # noqa: E402

from redtrans import prompts  # noqa: E402
from redtrans.cli import app  # noqa: E402
from redtrans.engines.base import Engine, GenRequest, GenResult  # noqa: E402
from redtrans.engines.spec import EngineSpec, register_engine  # noqa: E402
from redtrans.engines.standin import StandInConfig  # noqa: E402
from redtrans.errors import ConfigError, RowsFailedError  # noqa: E402
from redtrans.prefs.config import ExportConfig, GenerateConfig, PrescoreConfig  # noqa: E402
from redtrans.prefs.export import Judgment, PrefItem, apply_rules, run_export  # noqa: E402
from redtrans.prefs.generate import run_generate  # noqa: E402
from redtrans.prefs.humaneval import bench_pairs  # noqa: E402
from redtrans.prefs.labelstudio import label_config, label_studio_tasks  # noqa: E402
from redtrans.prefs.prescore import run_prescore  # noqa: E402
from redtrans.prefs.rows import latest_rows  # noqa: E402
from redtrans.prefs.stats import prefs_agreement, win_rate  # noqa: E402
from redtrans.prefs.store import Store, Submission, _hasher, database_url  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
POSTS = [
    "今天的晚饭太好吃了，绝绝子！🍜",
    "你不是我的菜",
    "这个价格也太香了吧",
    "周末去爬山⛰️\n累但是开心",
    "<b>粗体</b>不是标签",
]


def write_sources(path: Path, with_reference: bool = True) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for i, text in enumerate(POSTS):
            row = {"id": f"p{i}", "text": text, "src": "zh", "tgt": "en"}
            if with_reference:
                row["reference"] = f"reference {i}"
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def standin(salt: int, **options: object) -> dict:
    return {"kind": "standin", "options": {"salt": salt, **options}}


# -- export rules -------------------------------------------------------------------------------------------
def item(key: str, *judgments: Judgment) -> PrefItem:
    return PrefItem(key, f"源{key}", "zh", "en", [f"y1 of {key}", f"y2 of {key}"], list(judgments))


def test_export_rules_exactly() -> None:
    items = [
        item("a", Judgment("ann", [4, 2])),  # better ≥ τ, differ → y1 ≻ y2
        item("b", Judgment("ann", [1, 3])),  # y2 ≻ y1 (max exactly τ)
        item("c", Judgment("ann", [4, 4])),  # tie ≥ τ → dropped, counted
        item("d", Judgment("ann", [2, 1], rewrite="a real rewrite")),  # both < τ → two rewrite rows
        item("e", Judgment("ann", [2, 2])),  # both < τ without rewrite → none
        item("f", Judgment("x", [5, 1]), Judgment("y", [1, 3])),  # averaged 3 vs 2 → y1 ≻ y2
        item("g", Judgment("x", [4, 2]), Judgment("y", [2, 4])),  # averaged 3 = 3 → tie
        item("h", Judgment("x", [2, 1], rewrite="rx"), Judgment("y", [1, 2], rewrite="ry")),  # 4 rows
        item("i", Judgment("x", [2, 1], rewrite="y1 of i")),  # rewrite = y1: only (rw ≻ y2)
        item("j", Judgment("x", [5, 1], skipped=True)),  # skipped only → incomplete
        item("k", Judgment("x", [1, 1], rewrite="rk"), Judgment("y", [5, 1], skipped=True)),  # skip ignored
    ]
    export = apply_rules(items, tau=3)
    rows, stats = export.rows, export.stats
    got = [(r["id"], r["chosen"][0]["content"], r["rejected"][0]["content"], r["rewritten"]) for r in rows]
    assert got == [
        ("a", "y1 of a", "y2 of a", False),
        ("b", "y2 of b", "y1 of b", False),
        ("d/rewrite/ann/y1", "a real rewrite", "y1 of d", True),
        ("d/rewrite/ann/y2", "a real rewrite", "y2 of d", True),
        ("f", "y1 of f", "y2 of f", False),
        ("h/rewrite/x/y1", "rx", "y1 of h", True),
        ("h/rewrite/x/y2", "rx", "y2 of h", True),
        ("h/rewrite/y/y1", "ry", "y1 of h", True),
        ("h/rewrite/y/y2", "ry", "y2 of h", True),
        ("i/rewrite/x/y2", "y1 of i", "y2 of i", True),
        ("k/rewrite/x/y1", "rk", "y1 of k", True),
        ("k/rewrite/x/y2", "rk", "y2 of k", True),
    ]
    assert (stats.pairs, stats.rewrite_rows, stats.ties, stats.below_tau_no_rewrite) == (3, 9, 2, 1)
    assert (stats.degenerate, stats.incomplete, stats.items, stats.rows) == (1, 1, 10, 12)
    f = next(r for r in rows if r["id"] == "f")
    assert f["scores"] == [3.0, 2.0] and f["annotators"] == ["x", "y"]
    assert f["prompt"] == prompts.translation_messages("源f", "zh", "en")  # one segment: the whole post
    assert f["prompt_version"] == prompts.PROMPT_VERSION and f["profile"] == "rednote"
    assert f["chosen"] == [{"role": "assistant", "content": "y1 of f"}]
    assert next(r for r in rows if r["id"] == "h/rewrite/y/y2")["annotators"] == ["y"]
    # tau moves the rules: at τ = 5 item a (4, 2) is "both below" without a rewrite
    five = apply_rules(items[:1], tau=5)
    assert five.rows == [] and five.stats.below_tau_no_rewrite == 1
    # the original pairs: every counted item whose averaged scores differ, rewrites ignored (below τ too: d, i)
    assert [(r["id"], r["chosen_from"]) for r in export.original] == [
        ("a", "y1"),
        ("b", "y2"),
        ("d", "y1"),
        ("f", "y1"),
        ("i", "y1"),
    ]
    # min_annotators: f, g, h have two judgments
    assert apply_rules(items, tau=3, min_annotators=2).stats.items == 3


def test_export_config_needs_its_source(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="--db"):
        ExportConfig(output=tmp_path / "o.jsonl")
    with pytest.raises(Exception, match="--input"):
        ExportConfig(output=tmp_path / "o.jsonl", mode="reference-rewrite")


# -- generate and prescore ----------------------------------------------------------------------------------
def test_generate_two_systems_resumes_and_retries_failed_rows(tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "src.jsonl")
    out = tmp_path / "cands.jsonl"
    cfg = GenerateConfig(input=sources, output=out, systems=[standin(1), standin(2, fail_after=3)], batch_size=2)
    with pytest.raises(RowsFailedError) as failed:
        run_generate(cfg)
    rows = latest_rows(out)
    n_failed = sum(r["status"] == "failed" for r in rows.values())
    assert failed.value.exit_code == 1 and failed.value.failed == n_failed and 1 <= n_failed < 5
    assert rows["p0"]["status"] == "ok"
    ok = next(r for r in rows.values() if r["status"] == "ok")
    assert [c["system"] for c in ok["candidates"]] == ["standin:default", "standin:default"]
    assert [c["model"] for c in ok["candidates"]] == ["standin-1", "standin-2"]
    assert ok["reference"].startswith("reference") and ok["prompt_version"] == prompts.PROMPT_VERSION
    failed_ids = {k for k, r in rows.items() if r["status"] == "failed"}
    assert all("candidate 2" in rows[k]["error"] for k in failed_ids)
    # the re-run retries only the failed rows
    lines_before = len(out.read_text(encoding="utf-8").splitlines())
    report = run_generate(cfg.model_copy(update={"systems": [EngineSpec(**standin(1)), EngineSpec(**standin(2))]}))
    assert (report.written, report.skipped, report.failed) == (n_failed, 5 - n_failed, 0)
    assert len(out.read_text(encoding="utf-8").splitlines()) == lines_before + n_failed
    assert all(r["status"] == "ok" for r in latest_rows(out).values())
    assert run_generate(cfg).written == 0  # all done: nothing to do, nothing built
    # Resume keys (issue 32 item 3): a source whose text changed is generated again, the others are not.
    rows_in = [json.loads(line) for line in sources.read_text(encoding="utf-8").splitlines()]
    rows_in[1]["text"] = "这家店的奶茶真的绝绝子"
    sources.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows_in), encoding="utf-8")
    again = run_generate(cfg.model_copy(update={"systems": [EngineSpec(**standin(1)), EngineSpec(**standin(2))]}))
    assert (again.written, again.skipped) == (1, 4)
    assert latest_rows(out)["p1"]["source"] == "这家店的奶茶真的绝绝子"
    with pytest.raises(ConfigError, match="other settings"):  # another system for every row: refused
        run_generate(cfg.model_copy(update={"systems": [EngineSpec(**standin(1)), EngineSpec(**standin(3))]}))


def test_generate_one_system_needs_sampling_and_records_seeds(tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "src.jsonl")
    with pytest.raises(ConfigError, match="temperature"):
        from redtrans.config import validate_config

        validate_config(GenerateConfig, {"input": sources, "output": tmp_path / "o", "systems": [standin(1)]})
    seen: list[tuple[float, int | None]] = []

    class Recording(Engine):
        config_class = StandInConfig

        def __init__(self, config: StandInConfig | None = None) -> None:
            from redtrans.engines.standin import StandInEngine

            self.inner = StandInEngine(config)
            self.model, self.chat, self.parallelism = "rec", True, 4

        def generate(self, requests: list[GenRequest]) -> list[GenResult]:
            seen.extend((r.temperature, r.seed) for r in requests)
            return self.inner.generate(requests)

    cfg = GenerateConfig(input=sources, output=tmp_path / "c.jsonl", systems=[standin(1)],
                         sampling={"temperature": 0.7, "seeds": [11, 22]})  # fmt: skip
    run_generate(cfg, engines=[Recording()])
    rows = list(latest_rows(tmp_path / "c.jsonl").values())
    assert [(c["seed"], c["temperature"]) for c in rows[0]["candidates"]] == [(11, 0.7), (22, 0.7)]
    assert {s for _, s in seen} == {11, 22} and {t for t, _ in seen} == {0.7}


class JudgeStandIn(Engine):
    """Answers the judge prompt: 4 for translations that contain 'qa', else 2; 'oops' for 'FAIL'."""

    config_class = StandInConfig
    name = "judge-standin"

    def __init__(self, config: StandInConfig | None = None) -> None:
        self.model, self.chat, self.parallelism = "judge", True, 4

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        out = []
        for r in requests:
            user = (r.messages or [])[-1]["content"]
            assert "Score (1-5):" in user and "5 = Perfect" in (r.messages or [])[0]["content"]
            translation = user.split("translation:\n", 1)[1]
            out.append(GenResult("oops" if "FAIL" in translation else ("4" if "q" in translation else "2")))
        return out


def test_prescore_chrf_and_judge(tmp_path: Path) -> None:
    register_engine("judge-standin", JudgeStandIn)
    cands = tmp_path / "c.jsonl"
    rows = [
        {"id": "r1", "source": "你好", "src": "zh", "tgt": "en", "reference": "hello there",
         "candidates": [{"text": "hello there"}, {"text": "bye"}], "status": "ok"},
        {"id": "r2", "source": "你好", "src": "zh", "tgt": "en", "reference": "hello there",
         "candidates": [{"text": "zzz"}, {"text": "bye"}], "status": "ok"},
        {"id": "r3", "source": "你好", "src": "zh", "tgt": "en",
         "candidates": [{"text": "qa word"}, {"text": "no"}], "status": "ok"},
        {"id": "r4", "source": "你好", "src": "zh", "tgt": "en",
         "candidates": [{"text": "FAIL"}, {"text": "no"}], "status": "ok"},
        {"id": "r5", "source": "x", "src": "zh", "tgt": "en", "candidates": [], "status": "failed", "error": "e"},
    ]  # fmt: skip
    cands.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "p.jsonl"
    cfg = PrescoreConfig(input=cands, output=out, judge={"kind": "judge-standin"}, tau_auto=40)
    with pytest.raises(RowsFailedError):
        run_prescore(cfg)
    got = latest_rows(out)
    assert got["r1"]["auto"]["metric"] == "chrf++" and got["r1"]["auto"]["scores"][0] == 100.0
    assert got["r1"]["auto"]["needs_rewrite"] is False and got["r2"]["auto"]["needs_rewrite"] is True
    assert "nrefs:1" in got["r1"]["auto"]["signature"] and got["r1"]["auto"]["rubric"][0] == 5
    assert got["r3"]["auto"] | {"judge": None} == {"metric": "judge", "scores": [4, 2], "rubric": [4, 2],
                                                  "needs_rewrite": False, "tau": 3.0, "judge": None}  # fmt: skip
    assert got["r4"]["status"] == "failed" and "no digit" in got["r4"]["error"]
    assert "r5" not in got
    # reference-rewrite export from the prescored file: r1 a scored pair, r2 two reference rows
    stats = run_export(ExportConfig(mode="reference-rewrite", input=out, output=tmp_path / "ref.jsonl"))
    exported = [json.loads(line) for line in (tmp_path / "ref.jsonl").read_text().splitlines()]
    assert [(r["id"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in exported] == [
        ("r1", "hello there", "bye"),
        ("r2/reference/chrF++/y1", "hello there", "zzz"),
        ("r2/reference/chrF++/y2", "hello there", "bye"),
    ]
    assert stats.no_reference == 1 and stats.rewrite_rows == 2
    assert json.loads((tmp_path / "ref.jsonl.stats.json").read_text())["pairs"] == 1


# -- store -----------------------------------------------------------------------------------------------------
def cand_rows(n: int) -> list[dict]:
    return [{"id": f"i{i}", "source": f"帖子{i}", "src": "zh", "tgt": "en",
             "candidates": [{"text": f"a{i}", "system": "s1"}, {"text": f"b{i}", "system": "s2"}]}
            for i in range(n)]  # fmt: skip


def exercise_store(store: Store) -> None:
    """Leases, k experts, skip, optimistic locking, export: the same on SQLite and PostgreSQL."""
    ann = store.add_user("ann", "password-1")
    bob = store.add_user("bob", "password-2")
    cid = store.add_user("cid", "password-3")
    assert store.import_candidates(cand_rows(3), k=2) == (3, 0, 0)
    assert store.import_candidates(cand_rows(3), k=2) == (0, 3, 0)
    first = store.next_item(ann.id, lease_s=60, task="prefs")
    assert first is not None and store.next_item(ann.id, 60, "prefs") == first  # own lease first
    assert store.next_item(bob.id, 60, "prefs") == first  # k = 2: a second expert gets it too
    second_for_cid = store.next_item(cid.id, 60, "prefs")
    assert second_for_cid != first  # two leases fill k
    assert store.submit(first, ann.id, 0, Submission(scores=[4, 2])).ok
    stale = store.submit(first, ann.id, 0, Submission(scores=[1, 1], rewrite="mine"))
    assert not stale.ok and stale.version == 1 and stale.current is not None and stale.current.scores == [4, 2]
    assert store.submit(first, ann.id, 1, Submission(scores=[5, 2])).version == 2
    store.skip(first, bob.id)
    assert store.next_item(cid.id, 60, "prefs") == second_for_cid
    assert store.submit(second_for_cid, cid.id, 0, Submission(scores=[2, 2], rewrite="better")).ok
    # bob skipped `first`: cid may take that place now
    assert first in {store.next_item(cid.id, 60, "prefs")}
    actions = [a.action for a in store.audit()]
    assert {"stale_refused", "submit", "edit", "skip", "lease", "import"} <= set(actions)
    stale_audit = next(a for a in store.audit() if a.action == "stale_refused")
    assert stale_audit.detail["rewrite"] == "mine"  # the refused text is in the audit trail
    # k = 2: each item has one judgment, so by default none is exported (half-done); with one judgment enough
    # the scored pair and the two rewrite rows come out
    assert apply_rules(store.pref_items(), 3).stats.incomplete == 3
    export = apply_rules(store.pref_items(), 3, min_annotators=1)
    assert export.stats.pairs == 1 and export.stats.rewrite_rows == 2


def test_store_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Store(str(db)) as store:
        exercise_store(store)
        mode = store.engine.connect().exec_driver_sql("PRAGMA journal_mode").scalar()
        assert mode == "wal"


def test_leases_expire_and_return_to_the_queue(tmp_path: Path) -> None:
    with Store(str(tmp_path / "a.db")) as store:
        ann, bob = store.add_user("ann", "password-1"), store.add_user("bob", "password-2")
        store.import_candidates(cand_rows(1), k=1)
        got = store.next_item(ann.id, lease_s=0.3, task="prefs")
        assert got is not None and store.next_item(bob.id, 60, "prefs") is None
        time.sleep(0.4)
        assert store.next_item(bob.id, 60, "prefs") == got
        assert not store.has_lease(got, ann.id)


def test_logins_are_checked_against_argon2_hashes_and_audited(tmp_path: Path) -> None:
    """The store checks; throttling is the app's (`webguard.FailureThrottle`, tested with the app)."""
    with Store(str(tmp_path / "a.db")) as store:
        store.add_user("ann", "password-1")
        assert store.users()[0].password_hash.startswith("$argon2id$")
        assert store.authenticate("ann", "wrong", "1.2.3.4") is None
        assert store.authenticate("nobody", "password-1", "1.2.3.4") is None
        user = store.authenticate("ann", "password-1", "1.2.3.4")
        assert user is not None and user.name == "ann"
        actions = [(a.action, a.detail.get("addr")) for a in reversed(store.audit())]
        assert actions[-3:] == [("login_failed", "1.2.3.4"), ("login_failed", "1.2.3.4"), ("login", "1.2.3.4")]


@pytest.fixture(scope="module")
def postgresql() -> Iterator[Any]:
    """A throwaway PostgreSQL server; calling the fixture's value creates a fresh database and gives its URL."""
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if not (initdb and postgres):
        for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            initdb, postgres = str(base / "initdb"), str(base / "postgres")
            break
    if not (initdb and postgres and Path(initdb).exists()):
        pytest.skip("needs PostgreSQL's initdb and postgres (Debian: apt-get install postgresql; make test does)")
    psycopg = pytest.importorskip("psycopg", reason="needs psycopg (the prefs extra)")
    # pytest's tmp folders are private to root, and postgres refuses to run as root: as root, run it as
    # nobody in a folder of its own under the system temp dir
    base = Path(tempfile.mkdtemp(prefix="redtrans-pg-"))
    data = base / "pg"
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    user: list[str] = []
    if os.geteuid() == 0:
        user = ["runuser", "-u", "nobody", "--"]
        base.chmod(0o755)
        data.mkdir()
        shutil.chown(data, "nobody")
    subprocess.run([*user, initdb, "-D", str(data), "-U", "rt", "--auth=trust", "-E", "UTF8"], check=True,
                   capture_output=True, env=env)  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [*user, postgres, "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    admin = f"postgresql://rt@127.0.0.1:{port}/postgres"
    deadline = time.time() + 30
    while True:
        try:
            psycopg.connect(admin).close()
            break
        except psycopg.OperationalError:
            if time.time() > deadline or server.poll() is not None:
                raise
            time.sleep(0.3)
    made = iter(range(1000))

    def database() -> str:
        name = f"t{next(made)}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://rt@127.0.0.1:{port}/{name}"

    try:
        yield database
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def test_store_on_real_postgresql(postgresql: Any) -> None:
    with Store(postgresql()) as store:
        assert store.engine.dialect.name == "postgresql"
        exercise_store(store)
        # a login name longer than the column is a wrong login, not a server error (issue 30 item 8)
        assert store.authenticate("n" * 300, "whatever-1", "1.2.3.4") is None


def first_release_schema() -> Any:
    """The store's tables exactly as the first release created them (its `Base.metadata.create_all`)."""
    import sqlalchemy as sa

    meta = sa.MetaData()
    sa.Table(
        "users",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(120), unique=True, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "sessions",
        meta,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "items",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("task", sa.String(16), index=True, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("k", sa.Integer, nullable=False),
        sa.Column("order_key", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("task", "key"),
    )
    sa.Table(
        "leases",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.ForeignKey("items.id", ondelete="CASCADE"), index=True, nullable=False),
        sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("expires_at", sa.DateTime, index=True, nullable=False),
        sa.UniqueConstraint("item_id", "user_id"),
    )
    sa.Table(
        "judgments",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.ForeignKey("items.id", ondelete="CASCADE"), index=True, nullable=False),
        sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False),
        sa.Column("scores", sa.JSON),
        sa.Column("verdict", sa.String(8)),
        sa.Column("rewrite", sa.Text),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("skipped", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("item_id", "user_id"),
    )
    sa.Table(
        "audit",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime, index=True, nullable=False),
        sa.Column("user_id", sa.Integer),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("item_id", sa.Integer),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    sa.Table("login_failures", meta, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("at", sa.DateTime, index=True, nullable=False),
             sa.Column("name", sa.String(120), index=True, nullable=False),
             sa.Column("addr", sa.String(64), index=True, nullable=False))  # fmt: skip
    return meta


def check_migrates_a_first_release_store(url: str) -> None:
    """A store made by the first release (no alembic_version) is migrated on open, its rows kept and usable."""
    import datetime as dt

    import sqlalchemy as sa

    from redtrans.prefs.store import head_revision

    engine = sa.create_engine(database_url(url))
    meta = first_release_schema()
    meta.create_all(engine)
    at = dt.datetime(2026, 5, 1, 12, 0, 0)
    hashed = _hasher().hash("password-1")
    payload = {"source": "你不是我的菜", "src": "zh", "tgt": "en", "reference": None, "auto": None,
               "candidates": ["You are not my dish", "You're not my type"], "systems": ["a", "b"],
               "seeds": [None, None]}  # fmt: skip
    with engine.begin() as conn:
        t = meta.tables
        for uid, name, role in ((1, "ann", "expert"), (2, "root", "admin")):
            conn.execute(t["users"].insert().values(id=uid, name=name, role=role, password_hash=hashed, active=True,
                                                    created_at=at))  # fmt: skip
        conn.execute(t["items"].insert().values(id=1, task="prefs", key="p1", payload=payload, k=1, order_key=0.0,
                                                created_at=at))  # fmt: skip
        conn.execute(t["judgments"].insert().values(id=1, item_id=1, user_id=1, scores=[1, 2], rewrite="Not my type",
                                                    comment="", flagged=False, skipped=False, version=1,
                                                    created_at=at, updated_at=at))  # fmt: skip
        conn.execute(t["audit"].insert().values(at=at, user_id=1, action="submit", item_id=1, detail={}))
    engine.dispose()
    with Store(url) as store:
        assert store.migrated == ["0002", "0003"]  # recognised as 0001 (stamped), then upgraded
        assert not sa.inspect(store.engine).has_table("login_failures")  # the login throttle is in memory
        ((item, name, j),) = store.judgments("prefs")
        assert (item.key, name, j.scores, j.rewrite, j.version, j.set_by, j.review) == (
            "p1",
            "ann",
            [1, 2],
            "Not my type",
            1,
            None,
            None,
        )
        export = apply_rules(store.pref_items(), 3)
        assert [r["id"] for r in export.rows] == ["p1/rewrite/ann/y1", "p1/rewrite/ann/y2"]
        assert export.rows[0]["judgments"][0]["set_by"] == ["expert", "expert"]  # before provenance: the expert's
        store.review(j.id, 2, "rejected")
        assert apply_rules(store.pref_items(), 3).rows == []
        assert store.authenticate("ann", "password-1", "1.2.3.4") is not None
    with Store(url) as store:  # opened again: nothing left to do
        assert store.migrated == []
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head_revision()


def test_migrates_a_first_release_store_on_sqlite(tmp_path: Path) -> None:
    check_migrates_a_first_release_store(str(tmp_path / "old.db"))


def test_migrates_a_first_release_store_on_postgresql(postgresql: Any) -> None:
    check_migrates_a_first_release_store(postgresql())


# -- agreement, win rate, interop -----------------------------------------------------------------------------
def test_agreement_and_win_rate() -> None:
    assert prefs_agreement([("1", "x", [5, 1], False)]) is None  # no overlap
    perfect = [(str(i), e, [5, 1] if i % 2 else [2, 4], False) for i in range(6) for e in ("x", "y")]
    assert prefs_agreement(perfect) == 1.0
    judged = [(str(i), "x", "a" if i < 6 else ("same" if i < 8 else "b"), False) for i in range(10)]
    w = win_rate(judged, ("sft", "base"), samples=500)
    assert (w.wins, w.ties, w.losses, w.items) == (6, 2, 2, 10) and w.win_rate == 0.7
    assert w.low < 0.7 < w.high and w.alpha is None
    assert "| sft | base | 10 |" in w.markdown()


def ls_rating(name: str, rating: int, origin: str = "manual") -> dict:
    return {"from_name": name, "to_name": "post", "type": "rating", "value": {"rating": rating}, "origin": origin}


def ls_task(key: str, post: str, y1: str, y2: str, *annotations: dict) -> dict:
    (data,) = [
        t["data"]
        for t in label_studio_tasks(
            [{"id": key, "source": post, "src": "zh", "tgt": "en", "candidates": [{"text": y1}, {"text": y2}]}]
        )
    ]
    return {"id": abs(hash(key)) % 1000, "data": data, "annotations": list(annotations)}  # fmt: skip


def ls_annotation(who: object, s1: int, s2: int, updated: str = "2026-05-01T10:00:00Z", *extra: dict,
                  origin: str = "manual") -> dict:  # fmt: skip
    return {"completed_by": who, "updated_at": updated,
            "result": [ls_rating("score_y1", s1, origin), ls_rating("score_y2", s2, origin), *extra]}  # fmt: skip


def test_label_studio_import_applies_the_same_rules(tmp_path: Path) -> None:
    shipped = (ROOT / "examples" / "label-studio" / "pairwise-config.xml").read_text(encoding="utf-8")
    assert label_config() == shipped and 'name="score_y1"' in shipped
    rewrite = {"from_name": "rewrite", "type": "textarea", "value": {"text": ["Absolutely amazing"]}}
    flag = {"from_name": "flag", "type": "choices", "value": {"choices": ["flag"]}}
    export = [
        # two annotators, one cancelled: half-done (k = the 2 annotators the export carries) → left out
        ls_task("p1", "你不是我的菜", "You are not my dish", "You're not my type",
                ls_annotation({"email": "a@x"}, 1, 5), {"completed_by": 3, "was_cancelled": True, "result": []}),
        ls_task("p2", "绝绝子", "absolutely", "wow", ls_annotation(3, 2, 1, "2026-05-01T10:00:00Z", rewrite)),
        # flagged in Label Studio → left out (issue 30 item 3)
        ls_task("p3", "破防了", "broken defense", "I'm wrecked", ls_annotation(3, 1, 5, "2026-05-01T10:00:00Z", flag)),
        # both ratings taken over from a pre-annotation unchanged: accepted-only → left out by default
        ls_task("p4", "太香了", "too fragrant", "such a steal", ls_annotation(3, 1, 5, origin="prediction")),
        # an old-release task (source / y1 / y2) is still read
        {"id": 9, "data": {"id": "p5", "source": "永远的神", "src": "zh", "tgt": "en", "y1": "GOAT",
                           "y2": "eternal god"},
         "annotations": [ls_annotation(3, 5, 2)]},
    ]  # fmt: skip
    path = tmp_path / "ls.json"
    path.write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    db = str(tmp_path / "ls.db")
    result = CliRunner().invoke(app, ["prefs", "import-label-studio", str(path), "--db", db])
    assert result.exit_code == 0, result.output
    again = CliRunner().invoke(app, ["prefs", "import-label-studio", str(path), "--db", db])
    assert "0 new items, 0 new judgments, 0 changed, 6 unchanged" in again.output, again.output
    out = tmp_path / "prefs.jsonl"
    result = CliRunner().invoke(app, ["prefs", "export", "--db", db, "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == [
        ("p2/rewrite/ls:3/y1", "Absolutely amazing", "absolutely"),
        ("p2/rewrite/ls:3/y2", "Absolutely amazing", "wow"),
        ("p5", "GOAT", "eternal god"),
    ]
    excluded = {r["source_id"]: r["reason"] for r in map(json.loads, (tmp_path / "prefs.excluded.jsonl").open())}
    assert excluded == {"p1": "incomplete", "p3": "flagged", "p4": "accepted_only"}
    kept = CliRunner().invoke(app, ["prefs", "export", "--db", db, "-o", str(out), "--include-accepted"])
    assert kept.exit_code == 0 and "p4" in out.read_text(encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": 1, "data": {"source": "x", "y1": "a", "y2": "b"},
                                "annotations": [{"completed_by": 1, "result": []}]}]))  # fmt: skip
    result = CliRunner().invoke(app, ["prefs", "import-label-studio", str(bad), "--db", db])
    assert result.exit_code == 2 and "task 1" in result.output and "score_y1" in result.output


def test_label_studio_reimport_applies_newer_changes_and_lists_conflicts(tmp_path: Path) -> None:
    """Issue 30 item 6: a corrected export changes the store and says so; an older differing one is a conflict."""
    db, path = str(tmp_path / "ls.db"), tmp_path / "ls.json"

    def run(s1: int, s2: int, updated: str, *options: str) -> Any:
        task = ls_task(
            "p1", "你不是我的菜", "You are not my dish", "You're not my type", ls_annotation(7, s1, s2, updated)
        )
        path.write_text(json.dumps([task], ensure_ascii=False), encoding="utf-8")
        return CliRunner().invoke(app, ["prefs", "import-label-studio", str(path), "--db", db, *options])

    def chosen() -> str:
        out = tmp_path / "p.jsonl"
        assert CliRunner().invoke(app, ["prefs", "export", "--db", db, "-o", str(out)]).exit_code == 0
        return json.loads(out.read_text(encoding="utf-8"))["chosen"][0]["content"]

    assert run(4, 2, "2026-05-01T10:00:00Z").exit_code == 0
    assert chosen() == "You are not my dish"
    corrected = run(2, 4, "2026-05-02T09:30:00.123456Z")  # corrected later in Label Studio
    assert corrected.exit_code == 0 and "changed: item p1, ls:7: 4/2 → 2/4" in corrected.output, corrected.output
    assert chosen() == "You're not my type"
    stale = run(5, 1, "2026-05-01T12:00:00Z")  # differs, but older than what the store holds
    assert stale.exit_code == 1 and "conflict: item p1, ls:7: 2/4 → 5/1" in stale.output, stale.output
    assert "--prefer" in stale.output and chosen() == "You're not my type"
    assert run(5, 1, "2026-05-01T12:00:00Z", "--prefer", "store").exit_code == 0
    assert chosen() == "You're not my type"
    assert run(5, 1, "2026-05-01T12:00:00Z", "--prefer", "import").exit_code == 0
    assert chosen() == "You are not my dish"


def test_label_studio_config_variables_resolve_to_the_post_text() -> None:
    """Issue 30 item 7: every $variable of the shipped config is a field of the tasks we write, holding text."""
    config = label_config()
    rows = [
        {"id": "a", "source": "你不是我的菜😂", "src": "zh", "tgt": "en",
         "candidates": [{"text": "You're not my type 😂", "system": "sft"}, {"text": "Not my dish 😂"}],
         "auto": {"scores": [80.0, 20.0]}},
        {"id": "b", "source": "yyds", "candidates": [{"text": "GOAT"}, {"text": "eternal god"}]},  # no languages
    ]  # fmt: skip
    tags = re.findall(r"<(\w+)\b[^>]*\bvalue=\"([^\"]*)\"", config)
    variables = {v for _tag, value in tags for v in re.findall(r"\$(\w+)", value)}
    assert variables, "the config reads no task field"
    for row, task in zip(rows, label_studio_tasks(rows), strict=True):
        data = task["data"]
        for name in variables:
            assert name in data, f"${name} is not a field of the task"
            assert isinstance(data[name], str) and not data[name].lstrip().startswith(("{", "[")), (name, data[name])
        shown = {re.search(r"name=\"(\w+)\"", m.group(0)).group(1): m.group(1)  # type: ignore[union-attr]
                 for m in re.finditer(r"<Text\b[^>]*value=\"\$(\w+)\"", config)}  # fmt: skip
        texts = [data[v] for v in shown.values()]
        assert texts == [row["source"], row["candidates"][0]["text"], row["candidates"][1]["text"]]
        assert not any(k in json.dumps(data) for k in ("system", "scores", "sft", "80.0"))  # blind: nothing else


def test_bench_pairs(tmp_path: Path) -> None:
    hyps = tmp_path / "bench" / "hyps"
    hyps.mkdir(parents=True)
    for name, word in (("base", "plain"), ("sft", "slangy")):
        (hyps / f"{name}.jsonl").write_text("".join(
            json.dumps({"id": f"s{i}", "text": f"源{i}", "src": "zh", "tgt": "en", "translation": f"{word} {i}"}) + "\n"
            for i in range(6)), encoding="utf-8")  # fmt: skip
    rows = bench_pairs(tmp_path / "bench", "sft", "base", limit=4)
    assert len(rows) == 4 and rows[0]["outputs"][0].startswith("slangy")
    with pytest.raises(Exception, match="systems there: base, sft"):
        bench_pairs(tmp_path / "bench", "sft", "nope")


def test_cli_generate_import_export(tmp_path: Path) -> None:
    sources = write_sources(tmp_path / "s.jsonl")
    cands, db = tmp_path / "c.jsonl", str(tmp_path / "cli.db")
    run = CliRunner().invoke
    r = run(app, ["prefs", "generate", "-i", str(sources), "-o", str(cands), "-m", "a", "-m", "b", "--engine",
                  "standin", "--set", "systems.0.model=null", "--set", "systems.1.model=null",
                  "--set", "systems.1.options.salt=5"])  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run(app, ["prefs", "prescore", "-i", str(cands), "-o", str(tmp_path / "p.jsonl")])
    assert r.exit_code == 0 and "5 by chrF++" in r.output, r.output
    r = run(app, ["annotate", "import", str(tmp_path / "p.jsonl"), "--db", db, "--k", "2"])
    assert r.exit_code == 0 and "5 items queued" in r.output, r.output
    r = run(app, ["annotate", "add-user", "ann", "--db", db, "--role", "admin"], input="pw-123456\npw-123456\n")
    assert r.exit_code == 0, r.output
    r = run(app, ["annotate", "add-user", "ann", "--db", db], env={"REDTRANS_ANNOTATE_PASSWORD": "short"})
    assert r.exit_code == 2 and "at least 8" in r.output
    r = run(app, ["annotate", "report", "--db", db])
    assert r.exit_code == 0 and "0 of 10 judgments on 5 items" in r.output, r.output
    r = run(app, ["prefs", "export", "--mode", "reference-rewrite", "-i", str(cands), "-o", str(tmp_path / "e")])
    assert r.exit_code == 0 and "preference rows" in r.output, r.output
    r = run(app, ["prefs", "export", "-o", str(tmp_path / "e")])
    assert r.exit_code == 2 and "--db" in r.output


# -- training prompts = serving prompts (issue 30 item 1) -------------------------------------------------------
PROMPT_POSTS = [
    "今天的晚饭太好吃了，绝绝子！🍜",
    "😂😂周末去爬山⛰️\n累但是开心",
    "🔥🔥🔥这家店yyds🔥🔥🔥",
    "家人们谁懂啊😭\n\n真的破防了",
    "#户外[话题]# 周末露营太开心了 #露营[话题]#",
    "@小红薯 你不是我的菜",
    "看这个 https://example.com/a?b=1 真的太香了",
    "我爱😀你😂真的",
    "第一行\n第二行 @路人甲 在这\n第三行😅",
    "[笑哭R]今天又被老板骂了",
    "这个价格也太香了吧 #好物分享",
    "早上好☀️ 今天也要加油💪",
    "  前后有空格的帖子  ",
    "💯 这波操作满分",
    "姐妹们冲鸭！！！\n链接在这 www.example.org/x",
    "打卡 #上海[话题]# @旅行小助手 🏙️",
    "我真的会谢\n不想上班\n只想躺平🛌",
    "破防了家人们 😭😭 太感动了",
    "这也太可爱了吧🥹🥹",
    "救命 笑死我了😂 #搞笑[话题]#",
    "邮件发到 test@example.com 就行",
    "第一句。\n第二句！\n第三句？",
    "主打一个陪伴❤️",
    "绝了绝了👍👍\n下次还来",
    "今日份快乐 [派对R] 收到礼物",
    "谁懂啊 这个颜色绝美 🎨 #穿搭",
    "This dinner was so good, no cap! 🍜",
    "Weekend vibes 😎\nNo work, just chill",
    "@bestie you are not my type lol",
    "Check this out https://example.com/x it slaps",
    "Honestly this price is a steal 💸💸",
    "OOTD #fashion looking fresh ✨",
]


class StyledPseudo:
    """Two stand-in systems: the pseudo translator's output, one of them with every line's core doubled ("ww" →
    "ww ww"), so the candidates differ while keeping the post's structure, as real translations do."""

    def __init__(self, double: bool) -> None:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from stand_ins import PseudoTranslator

        class Engine(PseudoTranslator):
            def generate(self, requests: list[GenRequest]) -> list[GenResult]:
                out = super().generate(requests)
                if double:
                    for request, result in zip(requests, out, strict=True):
                        if "You translate short" not in (request.messages or [{}])[0]["content"]:
                            result.text = result.text + " again"
                return out

        self.engine = Engine()


def first_requests(post: str, src: str, tgt: str) -> list[list[dict[str, str]]]:
    """The messages of each segment's first request, recorded by a stand-in engine while the translator works."""
    from redtrans.translator import Translator

    engine = StyledPseudo(False).engine
    Translator(engine).translate_text(post, tgt, src)
    return [r.messages for r in engine.requests  # type: ignore[misc]
            if "Translate this" not in r.messages[-1]["content"]  # type: ignore[index]
            and "You translate short" not in r.messages[0]["content"]]  # type: ignore[index]  # fmt: skip


def test_exported_prompts_are_the_translators_first_requests(tmp_path: Path) -> None:
    """Every exported row (scored pairs, rewrite pairs, original pairs) holds exactly the chat messages the
    translator sends for its segment, and the chosen/rejected texts are that segment's marker form."""
    from redtrans.translator import Translator

    assert len(PROMPT_POSTS) >= 30
    sources = tmp_path / "posts.jsonl"
    with sources.open("w", encoding="utf-8") as handle:
        for i, post in enumerate(PROMPT_POSTS):
            src, tgt = ("zh", "en") if re.search(r"[\u4e00-\u9fff]", post) else ("en", "zh")
            handle.write(json.dumps({"id": f"q{i}", "text": post, "src": src, "tgt": tgt}, ensure_ascii=False) + "\n")
    cands = tmp_path / "cands.jsonl"
    cfg = GenerateConfig(input=sources, output=cands, systems=[standin(1), standin(2)])
    run_generate(cfg, engines=[StyledPseudo(False).engine, StyledPseudo(True).engine])
    rows = list(latest_rows(cands).values())
    assert all(r["status"] == "ok" for r in rows) and len(rows) == len(PROMPT_POSTS)
    db = str(tmp_path / "p.db")
    with Store(db) as store:
        store.import_candidates(rows, 1)
        ann = store.add_user("ann", "password-1")
        for n in range(len(rows)):
            item = store.next_item(ann.id, 60, "prefs")
            assert item is not None
            stored = store.item(item)
            assert stored is not None
            if n % 3 == 2:  # both poor: a rewrite that keeps the post's lines and spans (the second one, edited)
                better = stored.payload["candidates"][1]
                fixed = better.replace("w", "W", 1) if "w" in better else better.replace("字", "好", 1)
                sub = Submission(scores=[1, 2], rewrite=fixed)
            else:
                sub = Submission(scores=[4, 2] if n % 2 else [2, 5])
            assert store.submit(item, ann.id, 0, sub).ok
    out = tmp_path / "prefs.jsonl"
    stats = run_export(ExportConfig(db=db, output=out))
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_id = {r["id"]: r for r in rows}
    recorded = {key: first_requests(r["source"], r["src"], r["tgt"]) for key, r in by_id.items()}
    for row in exported:  # (checked first: the prompt itself, before anything else about the row)
        assert row["prompt"] in recorded[row["source_id"]], row["id"]
    original = [json.loads(line) for line in (tmp_path / "prefs.original.jsonl").read_text().splitlines()]
    multi = 0
    for row in exported + original:
        wanted = recorded[row["source_id"]]
        assert row["segments"] == len(wanted)
        assert row["prompt"] == wanted[row["segment"] - 1], row["id"]
        multi += row["segments"] > 1
        assert (row["prompt_version"], row["profile"]) == (prompts.PROMPT_VERSION, "rednote")
    assert multi > 10 and stats.rewrite_rows > 10 and stats.unaligned == 0, stats
    # each chosen/rejected text is what the model writes for its segment: the translator puts it back into the
    # same whole text
    planner = Translator.for_planning()
    from redtrans.translator import Item

    for row in exported:
        plan = planner.training_segments(Item("x", by_id[row["source_id"]]["source"], by_id[row["source_id"]]["tgt"],
                                              by_id[row["source_id"]]["src"]))  # fmt: skip
        assert row["prompt"][-1]["content"] == plan.segments[row["segment"] - 1].masked
    assert {r["source_id"] for r in exported} >= {f"q{i}" for i in range(0, len(PROMPT_POSTS), 3)}


def test_rows_that_cannot_be_aligned_are_left_out_with_a_reason() -> None:
    post = "周末去爬山⛰️\n累但是开心 @小红"
    item = PrefItem("m", post, "zh", "en", ["Hiking ⛰️\nTired but happy @小红", "Hiking ⛰️\nTired, happy @小红"],
                    [Judgment("ann", [1, 1], rewrite="Went hiking, tired but happy")])  # fmt: skip
    export = apply_rules([item], 3)
    assert export.rows == [] and export.stats.unaligned == 4  # two pairs × two segments
    reasons = [e["detail"] for e in export.excluded]
    assert reasons == ["2 lines in the post, 1 in the translation"] * 2
    moved = PrefItem("n", post, "zh", "en", ["Hiking ⛰️\nTired but happy @小红", "Hiking\nTired, happy ⛰️ @小红"],
                     [Judgment("ann", [4, 2])])  # fmt: skip
    export = apply_rules([moved], 3)
    assert export.rows == [] and "line 1: the line does not end with '⛰️'" in export.excluded[0]["detail"]
    inner = "周末去爬山⛰️\n累 @小红 开心"
    dropped = PrefItem("o", inner, "zh", "en", ["Hiking ⛰️\nTired @小红 happy", "Hiking ⛰️\nTired, happy"],
                       [Judgment("ann", [4, 2])])  # fmt: skip
    assert "line 2: '@小红' (marker ⟨1⟩) is not in the line" in apply_rules([dropped], 3).excluded[0]["detail"]
    kept = PrefItem("p", inner, "zh", "en", ["Hiking ⛰️\nTired @小红 happy", "Hiking ⛰️\nTired, happy @小红"],
                    [Judgment("ann", [4, 2])])  # fmt: skip
    rows = apply_rules([kept], 3).rows
    assert [(r["id"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == [
        ("p/s2", "Tired ⟨1⟩ happy", "Tired, happy ⟨1⟩")  # segment 1 is the same in both: no row
    ]


def test_sft_rows_are_the_translators_segments() -> None:
    """`sample`'s SFT rows (issue 30 item 1): one per segment, each prompt the translator's first request."""
    from redtrans.sampling.export import sft_rows

    post = "😂周末去爬山⛰️\n累但是 @小红 开心 #户外[话题]#"
    good = {"id": "c:1", "src": "zh", "tgt": "en", "bucket": "[0,0.1)", "delta_bleu": 0.0, "source": post,
            "reference": "😂Hiking this weekend⛰️\nTired @小红 but happy #Outdoors[Topic]#"}  # fmt: skip
    bad = {**good, "id": "c:2", "reference": "😂Hiking this weekend, tired but happy ⛰️"}
    left_out: list[dict[str, Any]] = []
    rows = list(sft_rows([good, bad], "reference", False, "messages", unaligned=left_out))
    wanted = first_requests(post, "zh", "en")
    assert [r["id"] for r in rows] == ["c:1/s1", "c:1/s2"] and len(wanted) == 2
    assert [r["messages"][:-1] for r in rows] == wanted
    assert [r["messages"][-1]["content"] for r in rows] == ["Hiking this weekend", "Tired ⟨1⟩ but happy"]
    assert left_out == [{"id": "c:2", "origin": "reference", "reason": "2 lines in the post, 1 in the translation"}]
    pc = list(sft_rows([good], "reference", False, "prompt_completion"))
    assert [r["prompt"] for r in pc] == wanted and pc[1]["completion"][0]["content"] == "Tired ⟨1⟩ but happy"
