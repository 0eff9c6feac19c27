"""The annotation app over HTTP, as a browser (or a script) talks to it: one test per defect of issue 30, each
against a real uvicorn server on loopback and a real SQLite store (the login throttle, proxy headers and
connection bounds — `redtrans.webguard`, serve's policy — also against `redtrans annotate serve` itself)."""

from __future__ import annotations

import json
import os
import re
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("argon2", reason="needs the prefs extra: pip install 'redtrans[prefs]'")

import httpx  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from redtrans.cli import app as cli_app  # noqa: E402
from redtrans.prefs.config import AnnotateConfig  # noqa: E402
from redtrans.prefs.export import apply_rules  # noqa: E402
from redtrans.prefs.store import Store  # noqa: E402
from tests.test_annotate import Server  # noqa: E402

PASSWORDS = {"admin": "admin-pass-1", "ann": "ann-pass-12", "bob": "bob-pass-12", "rita": "rita-pass-12"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def rows(n: int, auto: bool = False) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        row: dict[str, Any] = {"id": f"p{i}", "source": f"这是第{i}个帖子", "src": "zh", "tgt": "en",
                               "candidates": [{"text": f"post {i}, one"}, {"text": f"post {i}, two"}]}  # fmt: skip
        if auto:
            row["auto"] = {"metric": "chrf++", "scores": [62.5, 30.0], "rubric": [4, 2], "needs_rewrite": False}
        out.append(row)
    return out


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def make(items: list[dict[str, Any]] | None = None, k: int = 1, **config: Any) -> Server:
        db = str(tmp_path / f"app{len(servers)}.db")
        with Store(db) as store:
            store.add_user("admin", PASSWORDS["admin"], "admin")
            store.add_user("rita", PASSWORDS["rita"], "reviewer")
            store.add_user("ann", PASSWORDS["ann"])
            store.add_user("bob", PASSWORDS["bob"])
            if items:
                store.import_candidates(items, k)
        config.setdefault("shuffle", False)
        server = Server(db, **config)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def client(server: Server, name: str, headers: dict[str, str] | None = None) -> httpx.Client:
    c = httpx.Client(base_url=server.url, headers=headers or {}, timeout=30)
    token = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
    response = c.post("/login", data={"name": name, "password": PASSWORDS[name], "csrf": token})
    assert response.status_code == 303, response.text
    return c


def csrf(c: httpx.Client, path: str = "/") -> str:
    return CSRF.search(c.get(path).text).group(1)  # type: ignore[union-attr]


def take(c: httpx.Client, task: str = "prefs") -> int | None:
    response = c.post("/next", data={"task": task, "csrf": csrf(c)})
    assert response.status_code == 303
    where = response.headers["location"]
    return int(where.rsplit("/", 1)[1]) if "/item/" in where else None


def judge(c: httpx.Client, item: int, s1: int, s2: int, **extra: str) -> httpx.Response:
    page = c.get(f"/item/{item}").text
    version = re.search(r'name="version" value="(\d+)"', page)
    data = {"csrf": csrf(c), "version": version.group(1) if version else "0", "s1": str(s1), "s2": str(s2)}
    return c.post(f"/item/{item}", data={**data, **extra})


def export_rows(c: httpx.Client) -> list[dict[str, Any]]:
    response = c.get("/admin/export.jsonl")
    assert response.status_code == 200
    return [json.loads(line) for line in response.text.splitlines()]


# -- item 2 ------------------------------------------------------------------------------------------------------
def test_suggestions_are_shown_apart_and_accepting_them_is_recorded(live: Any) -> None:
    server = live(rows(2, auto=True))
    ann, admin = client(server, "ann"), client(server, "admin")
    first = take(ann)
    page = ann.get(f"/item/{first}").text
    assert "checked" not in page  # nothing pre-selected
    assert "Suggestion: <strong>4</strong>" in page and "chrF++ 62.5 against the reference" in page
    # Ctrl+Enter on an untouched form sends no scores: refused, nothing stored
    bare = ann.post(f"/item/{first}", data={"csrf": csrf(ann), "version": "0"})
    assert bare.status_code == 422 and "Score both candidates" in bare.text
    # the accept key: both scores recorded as accepted suggestions
    assert judge(ann, first, 4, 2, p1="suggestion", p2="suggestion").status_code == 303
    second = take(ann)
    assert judge(ann, second, 4, 1, p1="suggestion", p2="expert").status_code == 303  # one changed: hers
    with Store(server.config.db) as store:
        marks = {i.key: j.set_by for i, _n, j in store.judgments("prefs")}
    assert marks == {"p0": ["suggestion", "suggestion"], "p1": ["suggestion", "expert"]}
    assert [r["id"] for r in export_rows(admin)] == ["p1"]  # the accepted-only judgment is left out
    stats = admin.get("/admin/export-stats.json").json()
    assert stats["accepted_only"] == 1
    out = Path(server.config.db).with_suffix(".jsonl")
    kept = CliRunner().invoke(cli_app, ["prefs", "export", "--db", server.config.db, "-o", str(out),
                                        "--include-accepted"])  # fmt: skip
    assert kept.exit_code == 0 and len(out.read_text().splitlines()) == 2
    # a "suggestion" mark on a score that is not the suggestion is the expert's own
    with Store(server.config.db) as store:
        store.import_candidates([{**rows(3, auto=True)[2]}], 1)
    third = take(ann)
    assert judge(ann, third, 5, 1, p1="suggestion", p2="suggestion").status_code == 303
    with Store(server.config.db) as store:
        marks = {i.key: j.set_by for i, _n, j in store.judgments("prefs")}
    assert marks["p2"] == ["expert", "expert"]


# -- item 3 ------------------------------------------------------------------------------------------------------
def test_flagged_items_stay_out_of_the_export_until_an_admin_clears_the_flag(live: Any) -> None:
    server = live(rows(2))
    ann, admin = client(server, "ann"), client(server, "admin")
    first = take(ann)
    flagged = judge(ann, first, 1, 2, rewrite="A real rewrite of this post", flag="1", comment="bad source")
    assert flagged.status_code == 303
    second = take(ann)
    skipped = ann.post(f"/item/{second}/skip", data={"csrf": csrf(ann), "flag": "1", "comment": "spam"})
    assert skipped.status_code == 303
    assert export_rows(admin) == []
    assert admin.get("/admin/export-stats.json").json()["flagged"] == 2
    clear = admin.post(f"/admin/items/{first}/clear-flag", data={"csrf": csrf(admin, "/admin")})
    assert clear.status_code == 303
    assert [r["id"] for r in export_rows(admin)] == ["p0/rewrite/ann/y1", "p0/rewrite/ann/y2"]
    with Store(server.config.db) as store:
        assert [a.detail["flags"][0]["note"] for a in store.audit() if a.action == "clear_flag"] == ["bad source"]
    assert ann.post(f"/admin/items/{second}/clear-flag", data={"csrf": csrf(ann)}).status_code == 403


# -- item 4 ------------------------------------------------------------------------------------------------------
def test_submits_and_skips_need_the_experts_own_lease(live: Any) -> None:
    server = live(rows(3), k=1, lease_s=1.0)
    ann, bob = client(server, "ann"), client(server, "bob")
    first = take(ann)
    assert first is not None
    # bob was never handed the item: neither a judgment nor a skip is accepted
    assert judge(bob, first, 4, 2).status_code == 403
    assert bob.post(f"/item/{first}/skip", data={"csrf": csrf(bob)}).status_code == 403
    with Store(server.config.db) as store:
        assert [n for _i, n, _j in store.judgments("prefs")] == []
    # ann's lease runs out, nobody else took the item: her late submission is accepted
    time.sleep(1.2)
    assert judge(ann, first, 4, 2).status_code == 303
    # ann's next lease runs out and the item goes to bob: her submission is refused, her text kept
    second = take(ann)
    time.sleep(1.2)
    assert take(bob) == second
    late = judge(ann, second, 1, 1, rewrite="My careful rewrite of the second post")
    assert late.status_code == 409 and "My careful rewrite of the second post" in late.text
    assert judge(bob, second, 5, 1).status_code == 303
    with Store(server.config.db) as store:
        judged = [(i.key, n) for i, n, j in store.judgments("prefs") if not j.skipped]
    assert judged == [("p0", "ann"), ("p1", "bob")]  # k = 1 held: one judgment per item


# -- item 5 ------------------------------------------------------------------------------------------------------
def test_half_done_items_are_left_out_by_the_admin_page_and_the_cli(live: Any) -> None:
    server = live(rows(1), k=2)
    ann, bob, admin = client(server, "ann"), client(server, "bob"), client(server, "admin")
    item = take(ann)
    assert take(bob) == item
    assert judge(ann, item, 5, 1).status_code == 303
    assert bob.post(f"/item/{item}/skip", data={"csrf": csrf(bob)}).status_code == 303
    assert export_rows(admin) == []
    assert admin.get("/admin/export-stats.json").json()["incomplete"] == 1
    out = Path(server.config.db).with_suffix(".jsonl")
    result = CliRunner().invoke(cli_app, ["prefs", "export", "--db", server.config.db, "-o", str(out)])
    assert result.exit_code == 0 and out.read_text() == ""
    assert "1 items with too few judgments (min k)" in " ".join(result.output.split())


# -- item 8 ------------------------------------------------------------------------------------------------------
def test_a_skipped_item_can_be_reopened_and_judged(live: Any) -> None:
    server = live(rows(2), k=1)
    ann = client(server, "ann")
    item = take(ann)
    assert ann.post(f"/item/{item}/skip", data={"csrf": csrf(ann)}).status_code == 303
    mine = ann.get("/mine").text
    assert f'href="/item/{item}" class="reopen"' in mine
    page = ann.get(f"/item/{item}")
    assert page.status_code == 200 and "judging it now reopens it" in page.text
    done = judge(ann, item, 4, 2)
    assert done.status_code == 303, done.text
    with Store(server.config.db) as store:
        ((_, _, j),) = [t for t in store.judgments("prefs") if t[0].id == item]
        assert (j.skipped, j.scores) == (False, [4, 2])


def test_pages_show_numbers_and_bad_urls_are_not_found(live: Any) -> None:
    server = live(rows(2))
    ann, admin = client(server, "ann"), client(server, "admin")
    for c, path in ((ann, "/"), (admin, "/"), (admin, "/admin")):
        text = c.get(path).text
        assert "built-in method" not in text, path
        assert "(2 items" in text or "on 2 items" in text, path
    for path in ("/item/99999999999999999999", "/item/2147483648", "/item/0", "/item/-1", "/item/abc"):
        assert ann.get(path).status_code == 404, path
    assert ann.post("/item/99999999999999999999", data={"csrf": csrf(ann)}).status_code == 404


def test_a_rewrite_over_the_limit_is_refused_with_the_text_kept(live: Any) -> None:
    server = live(rows(1))
    ann = client(server, "ann")
    item = take(ann)
    long = "长" * 400_000 + "THE END"  # 1.2 MB of UTF-8
    response = judge(ann, item, 1, 1, rewrite=long)
    assert response.status_code == 422 and "characters long" in response.text
    assert long in response.text  # nothing typed is lost
    with Store(server.config.db) as store:
        assert store.counts("prefs")["done"] == 0


@contextmanager
def annotate_serve(tmp_path: Path, *args: str) -> Iterator[tuple[str, str]]:
    """`redtrans annotate serve` itself, as a process on a free loopback port, over a store with the four users
    of PASSWORDS; yields (its URL, the store's path)."""
    db = str(tmp_path / "a.db")
    with Store(db) as store:
        for name, password in PASSWORDS.items():
            store.add_user(name, password, "admin" if name == "admin" else "expert")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    command = [sys.executable, "-m", "redtrans", "annotate", "serve", "--db", db, "--port", str(port), *args]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(f"{url}/login", timeout=2)
                break
            except httpx.TransportError:
                assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.3)
        yield url, db
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def login_attempt(url: str, name: str, password: str, xff: str | None = None, source: str = "127.0.0.1") -> int:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=url, transport=transport, timeout=30) as c:
        token = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
        headers = {"X-Forwarded-For": xff} if xff else {}
        return c.post("/login", data={"name": name, "password": password, "csrf": token},
                      headers=headers).status_code  # fmt: skip


def test_login_throttle_is_per_account_and_address(tmp_path: Path) -> None:
    """Five wrong passwords from one address do not lock the real user out elsewhere, twenty from one address
    do not lock out everyone behind it, and X-Forwarded-For counts only from a configured proxy — against
    `redtrans annotate serve` itself."""
    options = ["--trusted-proxy", "127.0.0.2", "--set", "login_attempts=5", "--set", "login_backoff_s=60"]
    with annotate_serve(tmp_path, *options) as (url, db):
        # a stranger guesses ann's password five times, spoofing a new X-Forwarded-For each time
        assert [login_attempt(url, "ann", "wrong-guess", xff=f"10.0.0.{i}") for i in range(5)] == [401] * 5
        assert login_attempt(url, "ann", "wrong-guess", xff="10.9.9.9") == 429  # the header is ignored: same peer
        # the real ann elsewhere: not locked out
        assert login_attempt(url, "ann", PASSWORDS["ann"], source="127.0.0.3") == 303
        # twenty failures from one address on many names: others behind that address still log in
        assert {login_attempt(url, f"user{i}", "nope-nope") for i in range(20)} == {401}
        assert login_attempt(url, "admin", PASSWORDS["admin"]) == 303
        assert login_attempt(url, "bob", PASSWORDS["bob"]) == 303
        # from the configured proxy, X-Forwarded-For names the client
        assert login_attempt(url, "bob", "wrong-guess", xff="198.51.100.7", source="127.0.0.2") == 401
        with Store(db) as store:
            audit = store.audit(500)
        failures = [a.detail["addr"] for a in audit if a.action == "login_failed"]
        assert failures[0] == "198.51.100.7" and not any(a.startswith("10.") for a in failures)
        assert [a.detail for a in audit if a.action == "login_limited"] == [{"name": "ann", "addr": "127.0.0.1"}]


def test_parallel_guesses_pass_the_login_throttle_once(tmp_path: Path) -> None:
    """A right password forgets the account+address's failures; below the limit by one, eight guesses at once:
    one is checked, seven wait (each try counts before its password is checked, so a burst cannot outrun the
    throttle)."""
    options = ["--set", "login_attempts=3", "--set", "login_backoff_s=600"]
    with annotate_serve(tmp_path, *options) as (url, _db):
        assert [login_attempt(url, "ann", "wrong-guess") for _ in range(2)] == [401, 401]
        assert login_attempt(url, "ann", PASSWORDS["ann"]) == 303
        assert [login_attempt(url, "ann", "wrong-guess") for _ in range(2)] == [401, 401]  # counted from 0 again
        with ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(lambda _: login_attempt(url, "ann", "wrong-guess"), range(8)))
        assert codes == [401] + [429] * 7


def test_one_client_cannot_hold_every_connection_of_the_app(tmp_path: Path) -> None:
    """1,000 idle connections from one client: `max_connections_per_client` (100, serve's setting and default)
    are held, the rest are answered 503 and closed, and another client is served at once — against
    `redtrans annotate serve` itself."""
    from redtrans.serve.config import ServeConfig

    assert AnnotateConfig(db="x.db").max_connections_per_client == ServeConfig().max_connections_per_client == 100
    with annotate_serve(tmp_path, "--set", "header_timeout_s=60") as (url, _db):
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
        try:
            refused: dict[socket.socket, bytes] = {}
            with selectors.DefaultSelector() as waiting:
                for sock in idle:
                    waiting.register(sock, selectors.EVENT_READ)
                deadline = time.time() + 30
                while len(refused) < 900 and time.time() < deadline:
                    for key, _ in waiting.select(timeout=1):
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        refused[sock] = sock.recv(4096)
                        waiting.unregister(sock)
                time.sleep(0.5)
                assert not waiting.select(timeout=0)  # the 100 held ones stay silent
            assert len(refused) == 900
            first = next(iter(refused.values()))
            assert first.startswith(b"HTTP/1.1 503 ") and b"text/plain" in first
            assert b"this client has 100 connections open already" in first
            other = httpx.HTTPTransport(local_address="127.0.0.2")
            with httpx.Client(base_url=url, transport=other, timeout=5) as c:
                assert c.get("/login").status_code == 200
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.5)  # closed connections leave the cap: the client may connect again
        assert httpx.get(f"{url}/login", timeout=5).status_code == 200


def test_a_silent_connection_to_the_app_is_closed(tmp_path: Path) -> None:
    """A connection that sends no request (or trickles its headers) gets 408 after `header_timeout_s`, as on
    serve: without it uvicorn would hold it for ever."""
    with annotate_serve(tmp_path, "--set", "header_timeout_s=1") as (url, _db):
        port = int(url.rsplit(":", 1)[1])
        with (
            socket.create_connection(("127.0.0.1", port)) as silent,
            socket.create_connection(("127.0.0.1", port)) as trickle,
        ):
            trickle.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            started = time.monotonic()
            for sock in (silent, trickle):
                sock.settimeout(10)
                answer = sock.recv(4096)
                assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 1 s" in answer
                assert sock.recv(4096) == b""  # closed
            assert time.monotonic() - started < 5


def test_a_300_character_login_name_is_a_wrong_login(live: Any) -> None:
    server = live()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        token = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
        response = c.post("/login", data={"name": "n" * 300, "password": "whatever-1", "csrf": token})
    assert response.status_code == 401


def test_import_bench_reads_systems_given_as_outputs_files(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    out.mkdir()
    segments = [{"id": f"s{i}", "direction": "zh-en", "source": f"帖子{i}", "reference": "r",
                 "systems": {"mine": {"hypothesis": f"mine {i}"}, "theirs": {"hypothesis": f"theirs {i}"}}}
                for i in range(4)]  # fmt: skip
    (out / "results.json").write_text(json.dumps({"segments": segments}), encoding="utf-8")
    db = str(tmp_path / "e.db")
    result = CliRunner().invoke(cli_app, ["annotate", "import-bench", str(out), "--systems", "mine,theirs",
                                          "--db", db])  # fmt: skip
    assert result.exit_code == 0 and "4 evaluation items" in result.output, result.output
    with Store(db) as store:
        item = store.item(1)
        assert (
            item is not None
            and item.payload["src"] == "zh"
            and sorted(item.payload["outputs"]) == ["mine 0", "theirs 0"]
        )


# -- item 9 ------------------------------------------------------------------------------------------------------
def test_identical_candidates_never_form_a_pair(live: Any, tmp_path: Path) -> None:
    same = {"id": "dup", "source": "我的鞋😰🦶🏼", "src": "zh", "tgt": "en",
            "candidates": [{"text": "我的鞋😰🦶🏼"}, {"text": "我的鞋😰🦶🏼"}]}  # fmt: skip
    with Store(str(tmp_path / "x.db")) as store:
        assert store.import_candidates([same, *rows(1)], 1) == (1, 0, 1)
    server = live()
    from redtrans.prefs.store import Item

    with Store(server.config.db) as store, store.sessions.begin() as s:  # queued before the fix: still no pair
        s.add(Item(task="prefs", key="dup", payload=store._payload(same), k=1))
    ann, admin = client(server, "ann"), client(server, "admin")
    item = take(ann)
    assert judge(ann, item, 5, 4).status_code == 303
    assert export_rows(admin) == []
    assert admin.get("/admin/export-stats.json").json()["degenerate"] == 1


def test_get_next_hands_out_nothing(live: Any) -> None:
    server = live(rows(1))
    ann = client(server, "ann")
    response = ann.get("/next?task=prefs")
    assert response.status_code == 303 and response.headers["location"] == "/"
    with Store(server.config.db) as store:
        assert not [a for a in store.audit() if a.action == "lease"]
    assert take(ann) is not None  # the form's POST does


def test_host_allow_list(live: Any) -> None:
    server = live()
    assert httpx.get(f"{server.url}/login", headers={"Host": "evil.example"}).status_code == 421
    assert httpx.get(f"{server.url}/login").status_code == 200


def test_admin_rules_match_the_cli(live: Any) -> None:
    server = live(rows(3), k=1)
    ann, admin = client(server, "ann"), client(server, "admin")
    for scores in ((5, 1), (1, 4), (2, 1)):
        item = take(ann)
        assert item is not None
        extra = {"rewrite": "A better translation here"} if max(scores) < 3 else {}
        assert judge(ann, item, *scores, **extra).status_code == 303
    with Store(server.config.db) as store:
        expected = apply_rules(store.pref_items(), 3).rows
    assert export_rows(admin) == expected and len(expected) == 4
