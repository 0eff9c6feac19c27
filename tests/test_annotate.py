"""The annotate web app in a real headless Chromium (Playwright) against a real uvicorn server and SQLite.

Log in, score items (some with rewrites), export = exactly the rule rows; XSS shows as text; forms without the
CSRF token are refused; experts cannot open admin pages; two browsers editing one item lose no write; a
screenshot with Chinese and emoji rendered as glyphs (saved under runs/test-artifacts/); a human-evaluation
round producing the win-rate table; the login rate limit.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("argon2", reason="needs the prefs extra: pip install 'redtrans[prefs]'")

from typer.testing import CliRunner  # noqa: E402

from redtrans.cli import app as cli_app  # noqa: E402
from redtrans.prefs.config import AnnotateConfig  # noqa: E402
from redtrans.prefs.export import Judgment, PrefItem, apply_rules  # noqa: E402
from redtrans.prefs.stats import win_rate  # noqa: E402
from redtrans.prefs.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "runs" / "test-artifacts"
PASSWORDS = {"admin": "admin-pass-1", "ann": "ann-pass-12", "bob": "bob-pass-12", "rita": "rita-pass-12"}
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">粗体 **bold**'


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("needs Debian's chromium (make test installs it)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            yield b
        finally:
            b.close()


class Server:
    def __init__(self, db: str, **config: Any) -> None:
        import uvicorn

        from redtrans.prefs.web.app import create_app, uvicorn_config

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.config = AnnotateConfig(db=db, port=self.port, **config)
        self.store = Store(db)
        self.app = create_app(self.config, self.store)
        self.server = uvicorn.Server(uvicorn_config(self.config, self.app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "the app did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.store.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def make(rows: list[dict[str, Any]] | None = None, k: int = 1, **config: Any) -> Server:
        config.setdefault("shuffle", False)  # these tests score by position; test_prefs_app covers the shuffle
        db = str(tmp_path / f"annotate{len(servers)}.db")
        with Store(db) as store:
            store.add_user("admin", PASSWORDS["admin"], "admin")
            store.add_user("ann", PASSWORDS["ann"])
            store.add_user("bob", PASSWORDS["bob"])
            if rows:
                store.import_candidates(rows, k)
        server = Server(db, **config)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def rows_of(sources: list[str]) -> list[dict[str, Any]]:
    return [
        {"id": f"p{i}", "source": text, "src": "zh", "tgt": "en",
         "candidates": [{"text": f"candidate one of post {i}"}, {"text": f"candidate two of post {i} 😂"}]}
        for i, text in enumerate(sources)
    ]  # fmt: skip


def take_next(page: Any, url: str, task: str = "prefs") -> None:
    """Ask for the next item as the home page's button does (a POST: a GET hands out nothing)."""
    page.goto(f"{url}/")
    with page.expect_navigation():
        page.click(f"#task-{task} form.next button")


def login(context: Any, url: str, name: str, password: str | None = None) -> Any:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(f"{url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password or PASSWORDS[name])
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")
    return page


def score_current(page: Any, s1: int, s2: int, rewrite: str | None = None, keyboard: bool = False) -> str:
    """Score the item on the page and submit; returns the item's post id (shown in the header)."""
    key = page.get_attribute("#item-meta", "data-key")
    if keyboard:
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press(str(s1))
        page.keyboard.press(str(s2))
    else:
        page.check(f"input[name=s1][value='{s1}']")
        page.check(f"input[name=s2][value='{s2}']")
    box = page.locator("#rewrite-box")
    if s1 < 3 and s2 < 3:
        assert box.is_visible()
        better = 2 if s2 > s1 else 1
        prefilled = page.evaluate(f"document.querySelector('#cand{better} .text').textContent")
        assert page.input_value("#rewrite") == prefilled  # pre-filled with the better candidate
        if rewrite is not None:
            page.fill("#rewrite", rewrite)
    else:
        assert not box.is_visible()
    with page.expect_navigation():
        if keyboard:
            page.keyboard.press("Control+Enter")
        else:
            with page.expect_navigation():
                page.click("#submit")
    return key


def test_expert_scores_all_items_and_export_has_exactly_the_rule_rows(browser: Any, server_factory: Any) -> None:
    # one-line posts without edge emoji: these candidates are stand-ins that keep no structure (the prompt and
    # segment alignment of real candidates is test_prefs_app's)
    sources = ["今天的晚饭太好吃了，绝绝子！", "你不是我的菜", "这个价格也太香了吧", "周末去爬山，累但是开心",
               "家人们谁懂啊", "永远的神", "破防了", "绝了"]  # fmt: skip
    server = server_factory(rows_of(sources))
    plan = {  # post id → (s1, s2, rewrite)
        "p0": (4, 2, None),
        "p1": (1, 2, "You're not my type 😅"),
        "p2": (3, 3, None),
        "p3": (2, 1, "Hiking ⛰️ this weekend, tired but happy"),
        "p4": (5, 1, None),
        "p5": (1, 4, None),
        "p6": (2, 2, "Emotionally wrecked"),
        "p7": (3, 5, None),
    }
    context = browser.new_context()
    page = login(context, server.url, "ann")
    take_next(page, server.url)
    done = []
    while "/item/" in page.url:
        # the key is known only from the page: score by the plan
        assert page.locator("#item-meta").count() == 1, page.inner_text("body")
        key = page.get_attribute("#item-meta", "data-key")
        s1, s2, rewrite = plan[key]
        score_current(page, s1, s2, rewrite, keyboard=len(done) % 2 == 1)
        done.append(key)
    assert sorted(done) == sorted(plan) and "Nothing left for you" in page.inner_text("body")
    assert page.errors == []
    # the rows the rules say, written out by hand
    expected = [
        ("p0", "candidate one of post 0", "candidate two of post 0 😂", False),
        ("p1/rewrite/ann/y1", "You're not my type 😅", "candidate one of post 1", True),
        ("p1/rewrite/ann/y2", "You're not my type 😅", "candidate two of post 1 😂", True),
        ("p3/rewrite/ann/y1", "Hiking ⛰️ this weekend, tired but happy", "candidate one of post 3", True),
        ("p3/rewrite/ann/y2", "Hiking ⛰️ this weekend, tired but happy", "candidate two of post 3 😂", True),
        ("p4", "candidate one of post 4", "candidate two of post 4 😂", False),
        ("p5", "candidate two of post 5 😂", "candidate one of post 5", False),
        ("p6/rewrite/ann/y1", "Emotionally wrecked", "candidate one of post 6", True),
        ("p6/rewrite/ann/y2", "Emotionally wrecked", "candidate two of post 6 😂", True),
        ("p7", "candidate two of post 7 😂", "candidate one of post 7", False),
    ]
    admin = login(browser.new_context(), server.url, "admin")
    admin.goto(f"{server.url}/admin")
    assert "1 ties" in admin.inner_text("#export-stats")
    response = admin.request.get(f"{server.url}/admin/export.jsonl")
    assert response.status == 200
    web_rows = [json.loads(line) for line in response.text().splitlines()]
    got = [(r["id"], r["chosen"][0]["content"], r["rejected"][0]["content"], r["rewritten"]) for r in web_rows]
    assert sorted(got) == sorted(expected)
    # the CLI export is the same set of rows
    out = Path(server.config.db).with_suffix(".jsonl")
    result = CliRunner().invoke(cli_app, ["prefs", "export", "--db", server.config.db, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == web_rows
    assert "1 ties" in result.output and "10 preference rows from 8 items" in result.output
    items = [
        PrefItem(k, sources[int(k[1:])], "zh", "en",
                 [f"candidate one of post {k[1:]}", f"candidate two of post {k[1:]} 😂"],
                 [Judgment("ann", [v[0], v[1]], v[2])])
        for k, v in plan.items()
    ]  # fmt: skip
    assert sorted(r["id"] for r in apply_rules(items, 3).rows) == sorted(r["id"] for r in web_rows)
    context.close()


def test_rewrite_rules_are_enforced_by_the_server(browser: Any, server_factory: Any) -> None:
    server = server_factory(rows_of(["破防了"]))
    page = login(browser.new_context(), server.url, "ann")
    take_next(page, server.url)
    page.check("input[name=s1][value='1']")
    page.check("input[name=s2][value='2']")
    # the pre-filled rewrite is candidate two: unchanged, the server refuses it and keeps the form
    page.evaluate("document.getElementById('judge').noValidate = true")
    with page.expect_navigation():
        page.click("#submit")
    assert "The rewrite is one of the candidates" in page.inner_text("body")
    page.fill("#rewrite", "")
    page.evaluate("document.getElementById('judge').noValidate = true")
    with page.expect_navigation():
        page.click("#submit")
    assert "a rewrite is required" in page.inner_text("body")
    assert page.is_checked("input[name=s1][value='1']")  # what the expert chose is kept


def test_xss_payload_shows_as_text(browser: Any, server_factory: Any) -> None:
    rows = rows_of([XSS])
    rows[0]["candidates"][0]["text"] = "<b>not bold</b><script>window.__xss = 3</script>"
    server = server_factory(rows)
    page = login(browser.new_context(), server.url, "ann")
    take_next(page, server.url)
    assert page.inner_text("#post") == XSS
    assert "<b>not bold</b>" in page.inner_text("#cand1 .text")
    assert page.locator("#post script, #post img, #cand1 b").count() == 0
    assert page.evaluate("window.__xss") is None
    assert page.errors == []


def test_forms_without_the_csrf_token_are_refused(browser: Any, server_factory: Any) -> None:
    server = server_factory(rows_of(["绝了"]))
    page = login(browser.new_context(), server.url, "ann")
    take_next(page, server.url)
    item_url = page.url
    page.check("input[name=s1][value='4']")
    page.check("input[name=s2][value='2']")
    page.evaluate("document.querySelector('#judge input[name=csrf]').remove()")
    with page.expect_navigation():
        page.click("#submit")
    assert "CSRF token is missing or wrong" in page.inner_text("#error")
    # the same without the browser's form: no token, a wrong token
    for data in ({"s1": "4", "s2": "2", "version": "0"}, {"s1": "4", "s2": "2", "version": "0", "csrf": "x" * 43}):
        response = page.request.post(item_url, form=data)
        assert response.status == 403
    with Store(server.config.db) as store:
        assert store.counts("prefs")["done"] == 0
    # the login form too
    fresh = browser.new_context().new_page()
    fresh.goto(f"{server.url}/login")
    fresh.evaluate("document.querySelector('#login input[name=csrf]').remove()")
    fresh.fill("input[name=name]", "ann")
    fresh.fill("input[name=password]", PASSWORDS["ann"])
    with fresh.expect_navigation():
        fresh.click("button[type=submit]")
    assert "CSRF" in fresh.inner_text("#error")
    # the session cookie is HttpOnly and SameSite
    cookie = next(c for c in page.context.cookies() if c["name"] == "rt_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_expert_cannot_open_admin_pages(browser: Any, server_factory: Any) -> None:
    server = server_factory(rows_of(["绝了"]))
    page = login(browser.new_context(), server.url, "ann")
    assert page.locator("#admin-link").count() == 0
    for path in ("/admin", "/admin/export.jsonl", "/admin/audit", "/admin/winrate.json"):
        response = page.goto(f"{server.url}{path}")
        assert response is not None and response.status == 403, path
    anonymous = browser.new_context().new_page()
    anonymous.goto(f"{server.url}/admin")
    assert anonymous.url.endswith("/login")
    admin = login(browser.new_context(), server.url, "admin")
    assert admin.goto(f"{server.url}/admin").status == 200


def test_two_browsers_editing_one_item_lose_no_write(browser: Any, server_factory: Any) -> None:
    server = server_factory(rows_of(["你不是我的菜"]))
    one = login(browser.new_context(), server.url, "ann")
    take_next(one, server.url)
    item_url = one.url
    score_current(one, 4, 2)
    two = login(browser.new_context(), server.url, "ann")  # the same expert in a second browser
    one.goto(item_url)
    two.goto(item_url)
    # browser one edits first: both below τ now, with a rewrite
    one.check("input[name=s1][value='2']")
    one.check("input[name=s2][value='1']")
    one.fill("#rewrite", "You're not my type (from browser one)")
    with one.expect_navigation():
        one.click("#submit")
    assert one.url.endswith("/mine")
    # browser two still holds version 1: refused, its text kept, the newer version shown
    two.check("input[name=s1][value='1']")
    two.check("input[name=s2][value='1']")
    two.fill("#rewrite", "Not my cup of tea (from browser two)")
    with two.expect_navigation() as nav:
        two.click("#submit")
    assert nav.value is not None and nav.value.status == 409
    assert "Not saved" in two.inner_text("body")
    assert two.input_value("#rewrite") == "Not my cup of tea (from browser two)"
    assert two.is_checked("input[name=s1][value='1']") and two.is_checked("input[name=s2][value='1']")
    assert "Stored version 2" in two.inner_text("#stored")
    assert "from browser one" in two.inner_text("#stored-rewrite")
    # submitting again, now on version 2, replaces it
    with two.expect_navigation():
        two.click("#submit")
    assert two.url.endswith("/mine")
    with Store(server.config.db) as store:
        ((_, _, judgment),) = store.judgments("prefs")
        assert judgment.version == 3 and judgment.rewrite == "Not my cup of tea (from browser two)"
        actions = [(a.action, a.detail.get("rewrite")) for a in reversed(store.audit())]
    assert ("edit", "You're not my type (from browser one)") in actions
    assert ("stale_refused", "Not my cup of tea (from browser two)") in actions
    assert ("edit", "Not my cup of tea (from browser two)") in actions


def test_item_page_screenshot_renders_chinese_and_emoji(browser: Any, server_factory: Any) -> None:
    import subprocess

    fonts = subprocess.run(["fc-list"], capture_output=True, text=True).stdout if shutil.which("fc-list") else ""
    if "CJK" not in fonts or "Emoji" not in fonts:
        pytest.skip("needs fonts-noto-cjk and fonts-noto-color-emoji (make test installs them)")
    rows = rows_of(["周末去爬山⛰️\n累但是开心😂🍜 #户外[话题]#"])
    rows[0]["candidates"] = [{"text": "Weekend hiking ⛰️\nTired but happy 😂🍜"}, {"text": "周末爬山\n累但开心 🎉"}]
    server = server_factory(rows)
    page = login(browser.new_context(viewport={"width": 1280, "height": 900}), server.url, "ann")
    take_next(page, server.url)
    # each glyph drawn in the page's own font stack differs from the "no glyph" box of an unassigned code point,
    # and the emoji are drawn in colour
    report = page.evaluate(
        """() => {
        const family = getComputedStyle(document.querySelector('#post')).fontFamily;
        const draw = (text) => {
          const c = document.createElement('canvas'); c.width = 64; c.height = 64;
          const g = c.getContext('2d'); g.fillStyle = '#fff'; g.fillRect(0, 0, 64, 64);
          g.fillStyle = '#000'; g.font = '40px ' + family; g.textBaseline = 'top'; g.fillText(text, 4, 8);
          return g.getImageData(0, 0, 64, 64).data;
        };
        const tofu = draw('\\u{10FFFD}');
        const differs = (a) => a.some((v, i) => v !== tofu[i]);
        const colour = (a) => { for (let i = 0; i < a.length; i += 4) {
          if (Math.max(a[i], a[i+1], a[i+2]) - Math.min(a[i], a[i+1], a[i+2]) > 60) return true; } return false; };
        const out = {family};
        for (const ch of ['周', '爬', '开', '心']) out[ch] = differs(draw(ch));
        for (const ch of ['😂', '🍜', '⛰️']) { const d = draw(ch); out[ch] = differs(d) && colour(d); }
        return out;
        }"""
    )
    assert "Noto Sans CJK SC" in report.pop("family")
    assert all(report.values()), report
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "annotate-item-zh-emoji.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot of the item page: {shot}")


def test_human_evaluation_round_through_the_browser(browser: Any, server_factory: Any, tmp_path: Path) -> None:
    hyps = tmp_path / "bench" / "hyps"
    hyps.mkdir(parents=True)
    posts = ["绝绝子", "你不是我的菜", "太香了", "破防了", "yyds", "家人们谁懂啊"]
    for name in ("sft", "base"):
        with (hyps / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for i, post in enumerate(posts):
                row = {"id": f"s{i}", "text": post, "src": "zh", "tgt": "en", "translation": f"{name} says {i}"}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    server = server_factory()
    result = CliRunner().invoke(cli_app, ["annotate", "import-bench", str(tmp_path / "bench"), "--systems",
                                          "sft,base", "--db", server.config.db, "--k", "2", "--seed", "3"])  # fmt: skip
    assert result.exit_code == 0 and "6 evaluation items" in result.output, result.output
    with Store(server.config.db) as store:
        flips = [item.payload["flip"] for item in map(store.item, range(1, 7)) if item is not None]
    assert any(flips) and not all(flips)  # order-randomised
    # ann: sft better on s0–s3, same on s4, base better on s5; bob agrees except s3 (same)
    wanted = {"ann": {0: "sft", 1: "sft", 2: "sft", 3: "sft", 4: "same", 5: "base"},
              "bob": {0: "sft", 1: "sft", 2: "sft", 3: "same", 4: "same", 5: "base"}}  # fmt: skip
    for name, verdicts in wanted.items():
        page = login(browser.new_context(), server.url, name)
        take_next(page, server.url, "eval")
        seen = 0
        while "/item/" in page.url:
            body = page.inner_text("main")
            assert "sft" not in page.inner_text("#post") and "system" not in body.lower()  # blind
            left, right = page.inner_text("#cand1 .text"), page.inner_text("#cand2 .text")
            i = int(left.rsplit(" ", 1)[1])
            want = verdicts[i]
            key = "2" if want == "same" else ("1" if left.startswith(want) else "3")
            page.locator("body").click(position={"x": 5, "y": 5})
            page.keyboard.press(key)
            assert right.rsplit(" ", 1)[1] == str(i)
            with page.expect_navigation():
                page.keyboard.press("Control+Enter")
            seen += 1
        assert seen == 6
    admin = login(browser.new_context(), server.url, "admin")
    admin.goto(f"{server.url}/admin")
    table = admin.inner_text("#winrate")
    expected = win_rate(
        [(f"s{i}", n, {"sft": "a", "same": "same", "base": "b"}[v], False) for n, vs in wanted.items()
         for i, v in vs.items()], ("sft", "base"))  # fmt: skip
    assert expected.win_rate == round((3 + 0.75 + 0.5 + 0) / 6, 4)  # s0–s2 won, s3 ¾, s4 ½, s5 lost
    assert f"{expected.win_rate:.3f}" in table and "sft" in table and "base" in table
    assert f"[{expected.low:.3f}, {expected.high:.3f}]" in table
    data = admin.request.get(f"{server.url}/admin/winrate.json").json()
    assert (data["wins"], data["ties"], data["losses"], data["items"]) == (7, 3, 2, 6)
    assert data["alpha"] is not None and data["alpha"] > 0.5
    report = CliRunner().invoke(cli_app, ["annotate", "report", "--db", server.config.db])
    assert "| sft | base | 6 | 12 | 7 | 3 | 2 |" in report.output, report.output
    print(report.output)


def test_login_rate_limit(browser: Any, server_factory: Any) -> None:
    server = server_factory(login_attempts=3)
    page = browser.new_context().new_page()
    for _ in range(3):
        page.goto(f"{server.url}/login")
        page.fill("input[name=name]", "ann")
        page.fill("input[name=password]", "wrong-password")
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert "Wrong user name or password" in page.inner_text("body")
    page.goto(f"{server.url}/login")
    page.fill("input[name=name]", "ann")
    page.fill("input[name=password]", PASSWORDS["ann"])
    with page.expect_navigation() as nav:
        page.click("button[type=submit]")
    assert nav.value is not None and nav.value.status == 429 and "too many failed logins" in page.inner_text("body")


FLOW = {  # post id → (post, candidate 1, candidate 2)
    "p0": ("你不是我的菜", "You are not my dish", "You're not my type"),
    "p1": ("这个价格也太香了吧", "This price is so fragrant", "This price is such a steal"),
    "p2": ("破防了", "Broke the defense", "Defense broken"),
    "p3": ("绝绝子", "Absolute absolute", "Super super"),
    "p4": ("家人们谁懂啊", "Family members who understands", "Family who knows"),
    "p5": ("永远的神", "Forever god", "GOAT"),
}


def flow_rows() -> list[dict[str, Any]]:
    out = []
    for key, (post, one, two) in FLOW.items():
        row: dict[str, Any] = {"id": key, "source": post, "src": "zh", "tgt": "en",
                               "candidates": [{"text": one}, {"text": two}]}  # fmt: skip
        if key == "p0":
            row["auto"] = {"metric": "chrf++", "scores": [61.0, 20.0], "rubric": [4, 2], "needs_rewrite": False}
        out.append(row)
    return out


def press_scores(page: Any, wanted: dict[str, int]) -> None:
    """Score by keyboard: `wanted` maps candidate text → score; the page shows them in its own order."""
    shown = [page.inner_text("#cand1 .text"), page.inner_text("#cand2 .text")]
    for text in shown:
        page.keyboard.press(str(wanted[text]))


def test_expert_and_reviewer_walk_the_whole_flow_and_the_export_holds_only_deliberate_judgments(
    browser: Any, server_factory: Any
) -> None:
    """Keyboard-only judging with shuffled candidates, a skip and the way back, a flag, rewrites, review with a
    diff, one rewrite rejected, export: exactly the accepted expert-set judgments come out (issue 30)."""
    server = server_factory(flow_rows(), shuffle=True)
    with Store(server.config.db) as store:
        store.add_user("rita", "rita-pass-12", "reviewer")
        with store.sessions.begin() as s:  # p5 needs two experts; only ann will judge it
            from redtrans.prefs.store import Item

            s.query(Item).filter(Item.key == "p5").update({"k": 2})
    page = login(browser.new_context(), server.url, "ann")
    page.keyboard.press("Tab")  # the keyboard reaches "Next item" on the home page
    for _ in range(12):
        if page.evaluate("document.activeElement.textContent").strip().startswith("Next item"):
            break
        page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.is_visible("#rubric[open]")  # guidelines open on the first item
    page.keyboard.press("g")
    assert not page.is_visible("#rubric[open] table")
    seen: list[str] = []
    reopened = False
    while "/item/" in page.url:
        key = page.get_attribute("#item-meta", "data-key")
        post, one, two = FLOW[key]
        assert "checked" not in page.inner_html("#judge")  # nothing pre-selected, ever
        if key == "p2" and not reopened:
            with page.expect_navigation():
                page.keyboard.press("s")  # skip …
            assert "/item/" in page.url or "Nothing left" in page.inner_text("body")
            if "/item/" not in page.url:
                page.goto(f"{server.url}/mine")
                with page.expect_navigation():
                    page.click("a.reopen")
            else:
                with page.expect_navigation():
                    page.keyboard.press("b")  # … and come back with the "previous item" key
            assert page.get_attribute("#item-meta", "data-key") == "p2" and page.is_visible("#skipped-note")
            reopened = True
            continue
        if key == "p0":
            page.keyboard.press("a")  # accept the suggestions as shown, without looking
        elif key == "p1":
            press_scores(page, {one: 2, two: 5})
        elif key == "p2":
            press_scores(page, {one: 1, two: 1})
            page.keyboard.press("w")
            page.keyboard.press("Control+a")
            page.keyboard.type("I'm emotionally wrecked")
            page.keyboard.press("Escape")
        elif key == "p3":
            press_scores(page, {one: 3, two: 4})
            page.keyboard.press("f")
            page.keyboard.press("n")
            page.keyboard.type("not a real post")
            page.keyboard.press("Enter")  # Enter in the note does not submit
            assert page.get_attribute("#item-meta", "data-key") == "p3"
            page.keyboard.press("Escape")
        elif key == "p4":
            press_scores(page, {one: 1, two: 2})
            page.keyboard.press("w")
            page.keyboard.press("Control+a")
            page.keyboard.type("Guys, can anyone relate?")
            page.keyboard.press("Escape")
        elif key == "p5":
            press_scores(page, {one: 2, two: 5})
        with page.expect_navigation():
            page.keyboard.press("Control+Enter")
        seen.append(key)
    assert sorted(seen) == sorted(FLOW) and page.errors == []
    with Store(server.config.db) as store:
        orders = {i.key: j.display_order for i, _n, j in store.judgments("prefs")}
        scores = {i.key: j.scores for i, _n, j in store.judgments("prefs")}
        set_by = {i.key: j.set_by for i, _n, j in store.judgments("prefs")}
    assert {tuple(o) for o in orders.values()} == {(0, 1), (1, 0)}  # both orders were shown, and mapped back:
    assert scores["p1"] == [2, 5] and scores["p5"] == [2, 5] and scores["p0"] == [4, 2]
    assert set_by["p0"] == ["suggestion", "suggestion"] and set_by["p1"] == ["expert", "expert"]

    # the reviewer: filters, the diff against the candidate the rewrite started from, accept one, reject one
    review = login(browser.new_context(), server.url, "rita")
    review.goto(f"{server.url}/review?status=rewritten")
    assert sorted(review.locator("#review-items tr[data-key]").evaluate_all("rs => rs.map(r => r.dataset.key)")) == [
        "p2", "p4"]  # fmt: skip
    review.goto(f"{server.url}/review?status=flagged")
    assert review.locator("#review-items tr[data-key]").count() == 1
    review.goto(f"{server.url}/review?status=accepted-only")
    assert review.inner_text("#review-items").count("p0") == 1
    for key, decision in (("p2", "accept"), ("p4", "reject")):
        review.goto(f"{server.url}/review?status=rewritten")
        with review.expect_navigation():
            review.click(f"#review-items tr[data-key={key}] a")
        diff = review.locator("#diff-ann")
        assert diff.locator(".ins").count() >= 1 and diff.locator(".del").count() >= 1
        with review.expect_navigation():
            review.click(f"#judgment-ann button.{decision}")
        assert review.inner_text("#judgment-ann .review-status") == ("accepted" if key == "p2" else "rejected")
    # the expert cannot open review pages
    assert page.goto(f"{server.url}/review").status == 403

    admin = login(browser.new_context(), server.url, "admin")
    rows = [json.loads(line) for line in admin.request.get(f"{server.url}/admin/export.jsonl").text().splitlines()]
    assert sorted((r["id"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows) == [
        ("p1", "This price is such a steal", "This price is so fragrant"),
        ("p2/rewrite/ann/y1", "I'm emotionally wrecked", "Broke the defense"),
        ("p2/rewrite/ann/y2", "I'm emotionally wrecked", "Defense broken"),
    ]
    assert all(j["set_by"] == ["expert", "expert"] for r in rows for j in r["judgments"])
    stats = admin.request.get(f"{server.url}/admin/export-stats.json").json()
    assert (stats["accepted_only"], stats["flagged"], stats["rejected"], stats["incomplete"]) == (1, 1, 1, 1)
    original = admin.request.get(f"{server.url}/admin/export.original.jsonl").text().splitlines()
    assert [json.loads(line)["id"] for line in original] == ["p1"]
    admin.goto(f"{server.url}/admin")
    assert "ann" in admin.inner_text("#progress-prefs") and " s / " in admin.inner_text("#progress-prefs")


def test_the_keyboard_reaches_every_control_and_a_draft_survives_leaving_the_page(
    browser: Any, server_factory: Any
) -> None:
    server = server_factory(rows_of(["破防了"]))
    page = login(browser.new_context(), server.url, "ann")
    take_next(page, server.url)
    item_url = page.url
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.id || document.activeElement.name || ''"))
    assert {"comment", "flag", "submit", "skip-button"} <= reached, reached
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("1")
    page.keyboard.press("1")
    page.keyboard.press("w")
    page.keyboard.press("Control+a")
    page.keyboard.type("My unsaved rewrite 😭")
    page.on("dialog", lambda dialog: dialog.accept())  # the browser asks before leaving unsaved text
    page.goto(f"{server.url}/mine")
    page.goto(item_url)
    assert page.input_value("#rewrite") == "My unsaved rewrite 😭"
    with Store(server.config.db) as store:
        assert store.counts("prefs")["done"] == 0
