"""The ``redtrans annotate`` web app: FastAPI + server-rendered Jinja2 templates, no CDN (works offline).

Security: argon2 password hashes (`store`), a server-side session per login in an HttpOnly, SameSite=Strict
cookie, a CSRF token in every form (the login form's is a double-submit cookie), a strict
Content-Security-Policy (no inline script), text escaped by Jinja2's autoescape. Who a client is and how much
of the server it may hold is `redtrans.webguard`'s, the same policy as `redtrans serve`'s: the address (the
peer's, or `X-Forwarded-For` from configured proxies only), the `Host:` allow-list, the header deadline and
connection caps (total and per client address) in uvicorn's protocol, and the failed-login throttle
(`FailureThrottle` keyed by account and address, with backoff: never a lockout). Experts see only their own
judgments; review pages are for reviewers and admins, admin pages for admins. State changes only on POST.

Work: ``POST /next`` hands out the next item as a lease (`AnnotateConfig.lease_s`); the item page scores both
candidates on the rubric (``prefs``; suggestions shown apart, in an order drawn per item and expert) or gives
a pairwise verdict (``eval``); a submission carries the judgment version it was built on, and one the store
refuses (stale, off-lease) comes back with the expert's text kept in the form (409).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regex
from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from redtrans.languages import get_language
from redtrans.prefs.config import RUBRIC, AnnotateConfig
from redtrans.prefs.export import EXPERT, SUGGESTION, Export, apply_rules
from redtrans.prefs.stats import prefs_agreement, win_rate
from redtrans.prefs.store import MAX_ID, NAME_CHARS, REVIEWERS, TASKS, Item, JudgmentRow, Refused, Store, Submission
from redtrans.prefs.store import User as StoreUser
from redtrans.webguard import (
    ClientAddress,
    ConnectionCap,
    ConnectionGuards,
    FailureThrottle,
    HostAllowList,
    guarded_protocol,
)

HERE = Path(__file__).parent
SESSION_COOKIE = "rt_session"
LOGIN_CSRF_COOKIE = "rt_login_csrf"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
TASK_LABELS = {"prefs": "Score two translations (rewrite when both are poor)", "eval": "Human evaluation"}
REVIEW_FILTERS = {
    "all": "all judged items",
    "flagged": "flagged",
    "disagreement": "experts disagree",
    "rewritten": "with a rewrite",
    "unreviewed": "rewrite not reviewed",
    "accepted-only": "accepted suggestions only",
}
FORM_LIMIT = 8 * 1024 * 1024
"""Bytes of a form the app reads (a long rewrite is refused with its text kept, not cut off by the parser)."""


class _LoginRequired(Exception):
    pass


@dataclass
class Viewer:
    user: StoreUser
    csrf: str
    token: str


def _fmt(value: float) -> str:
    return f"{value:g}"


def display_order(item_id: int, user_id: int, shuffle: bool) -> list[int]:
    """The candidates' order on this expert's page: drawn once per item and expert (stable across visits)."""
    if not shuffle:
        return [0, 1]
    draw = hashlib.sha256(f"{item_id}:{user_id}".encode()).digest()[0]
    return [1, 0] if draw & 1 else [0, 1]


_TOKENS = regex.compile(r"\s+|[\p{L}\p{N}_]+|.", regex.DOTALL)


def word_diff(before: str, after: str, spaced: bool) -> list[tuple[str, str]]:
    """(op, text) pieces turning `before` into `after`: ``eq``, ``del``, ``ins``; by word for spaced languages,
    by character otherwise (Chinese, Japanese)."""
    a = _TOKENS.findall(before) if spaced else list(before)
    b = _TOKENS.findall(after) if spaced else list(after)
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("eq", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(("del", "".join(a[i1:i2])))
        if j2 > j1:
            out.append(("ins", "".join(b[j1:j2])))
    return out


def _item_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 10 or not 0 < int(raw) <= MAX_ID:
        raise StarletteHTTPException(404, "No such item.")
    return int(raw)


def _suggestions(auto: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Per candidate (candidate order): the suggested rubric score and where it comes from."""
    rubric = auto.get("rubric")
    if not rubric or len(rubric) != 2:
        return None
    if auto.get("metric") == "chrf++":
        return [{"score": int(r), "source": f"chrF++ {float(s):.1f} against the reference"}
                for r, s in zip(rubric, auto.get("scores") or [0, 0], strict=False)]  # fmt: skip
    if auto.get("metric") == "judge":
        return [{"score": int(r), "source": "an LLM judge"} for r in rubric]
    return [{"score": int(r), "source": str(auto.get("metric") or "automatic")} for r in rubric]


def create_app(config: AnnotateConfig, store: Store | None = None) -> FastAPI:
    """The app over `store` (opened from `config.db` when not given)."""
    store = store or Store(config.db)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    app = FastAPI(title=config.title, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.state.store = store
    clients = ClientAddress(config.trusted_proxies)
    # the address the app is bound to is always its own name (a specific one; not 0.0.0.0 or ::)
    bound = [] if config.host in ("0.0.0.0", "::", "") else [config.host]
    hosts = HostAllowList([*config.allowed_hosts, *bound])
    logins = FailureThrottle(config.login_attempts, config.login_window_s, config.login_backoff_s)

    def render(name: str, status: int = 200, viewer: Viewer | None = None, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("messages", [])
        html = env.get_template(name).render(
            title=config.title, user=viewer.user if viewer else None, csrf=viewer.csrf if viewer else "",
            reviewers=REVIEWERS, **ctx,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        if not hosts.allows(request.headers.get("host")):
            return PlainTextResponse("this Host is not served: add it to allowed_hosts to serve it", 421)
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/static"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(_LoginRequired)
    async def to_login(request: Request, exc: _LoginRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return render("error.html", exc.status_code, code=exc.status_code, detail=exc.detail)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return render("error.html", 409, code=409, detail=exc.message)

    def viewer(request: Request) -> Viewer:
        token = request.cookies.get(SESSION_COOKIE)
        found = store.session_user(token) if token else None
        if found is None or token is None:
            raise _LoginRequired()
        return Viewer(found[0], found[1], token)

    def admin(v: Viewer = Depends(viewer)) -> Viewer:
        if v.user.role != "admin":
            raise StarletteHTTPException(403, "Admin pages are for admins only.")
        return v

    def reviewer(v: Viewer = Depends(viewer)) -> Viewer:
        if v.user.role not in REVIEWERS:
            raise StarletteHTTPException(403, "Review pages are for reviewers and admins.")
        return v

    def check_csrf(v: Viewer, token: str) -> None:
        if not token or not secrets.compare_digest(token, v.csrf):
            raise StarletteHTTPException(403, "The form's CSRF token is missing or wrong: reload the page and retry.")

    def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name, value, max_age=max_age, httponly=True, samesite="strict", secure=config.secure_cookies, path="/"
        )

    async def read_form(request: Request) -> dict[str, str]:
        form = await request.form(max_part_size=FORM_LIMIT)
        return {k: v for k, v in form.items() if isinstance(v, str)}

    # -- login ----------------------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> Response:
        token = secrets.token_urlsafe(32)
        response = render("login.html", login_csrf=token)
        set_cookie(response, LOGIN_CSRF_COOKIE, token, 3600)
        return response

    @app.post("/login")
    def login(request: Request, name: str = Form(""), password: str = Form(""), csrf: str = Form("")) -> Response:
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not csrf or not cookie or not secrets.compare_digest(csrf, cookie):
            raise StarletteHTTPException(403, "The form's CSRF token is missing or wrong: reload the page and retry.")
        peer = request.client.host if request.client else None
        addr = clients.resolve(peer, request.headers.get("x-forwarded-for")) or "unknown"
        name = name.strip()
        throttled = f"{name[:NAME_CHARS]}\n{addr}"  # per account *and* address: never a lockout
        wait = logins.attempt(throttled)  # counted as a failure until the password is right
        if wait > 0:
            store.login_limited(name, addr)
            text = "too many failed logins: wait a moment and try again"
            response: Response = render("login.html", 429, login_csrf=csrf, messages=[{"kind": "error", "text": text}])
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return response
        user = store.authenticate(name, password, addr)
        if user is None:
            return render(
                "login.html", 401, login_csrf=csrf, messages=[{"kind": "error", "text": "Wrong user name or password."}]
            )
        logins.succeeded(throttled)
        token, _ = store.create_session(user.id, config.session_hours)
        response = RedirectResponse("/", status_code=303)
        set_cookie(response, SESSION_COOKIE, token, int(config.session_hours * 3600))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    @app.post("/logout")
    def logout(csrf: str = Form(""), v: Viewer = Depends(viewer)) -> Response:
        check_csrf(v, csrf)
        store.end_session(v.token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- expert pages ---------------------------------------------------------------------------------------
    def mine_count(user_id: int, task: str) -> int:
        return sum(1 for item, j in store.my_judgments(user_id) if item.task == task and not j.skipped)

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, v: Viewer = Depends(viewer), done: str = "") -> Response:
        tasks = []
        for task in TASKS:
            counts = store.counts(task)
            if counts["items"]:
                mine = mine_count(v.user.id, task)
                left = store.left_for(v.user.id, task)
                per_item = counts["needed"] // max(counts["items"], 1)
                tasks.append({"task": task, "label": TASK_LABELS[task], "counts": counts, "mine": mine, "left": left,
                              "k_text": f"{per_item} expert(s) per item"})  # fmt: skip
        messages = []
        if done in TASKS:
            messages = [{"kind": "info", "text": f"Nothing left for you in the {done} queue. Thank you!"}]
        return render("home.html", viewer=v, tasks=tasks, messages=messages)

    @app.get("/next")
    def next_get() -> Response:
        # Handing out an item changes state: only a POST does it (a link or an <img> elsewhere cannot).
        return RedirectResponse("/", status_code=303)

    @app.post("/next")
    def next_item(task: str = Form("prefs"), csrf: str = Form(""), v: Viewer = Depends(viewer)) -> Response:
        check_csrf(v, csrf)
        if task not in TASKS:
            raise StarletteHTTPException(404, f"No task {task!r}.")
        return go_next(v, task)

    def go_next(v: Viewer, task: str) -> Response:
        item_id = store.next_item(v.user.id, config.lease_s, task)
        if item_id is None:
            return RedirectResponse(f"/?done={task}", status_code=303)
        return RedirectResponse(f"/item/{item_id}", status_code=303)

    def may_open(item_id: int, user_id: int) -> bool:
        return store.has_lease(item_id, user_id) or store.judgment(item_id, user_id) is not None

    def item_page(
        v: Viewer,
        item: Item,
        status: int = 200,
        values: dict[str, Any] | None = None,
        messages: list[dict[str, str]] | None = None,
        version: int | None = None,
        show_stored: bool = False,
    ) -> Response:
        p = item.payload
        j = store.judgment(item.id, v.user.id)
        stored_version = j.version if j is not None else 0
        if item.task == "prefs":
            order = list(j.display_order) if j is not None and j.display_order else display_order(
                item.id, v.user.id, config.shuffle)  # fmt: skip
            candidates = [p["candidates"][i] for i in order]
        else:
            order = [0, 1]
            candidates = list(reversed(p["outputs"])) if p.get("flip") else list(p["outputs"])
        auto = p.get("auto") or {}
        suggested = _suggestions(auto) if item.task == "prefs" and config.prefill else None
        shown_suggestions = [suggested[i] for i in order] if suggested else None
        if values is None:
            values = {"scores": [None, None], "set_by": [EXPERT, EXPERT], "rewrite": "", "comment": "",
                      "flagged": False, "verdict": None, "rewrite_edited": False, "rewrite_from": ""}  # fmt: skip
            if j is not None and not j.skipped:
                scores = list(j.scores) if j.scores else [None, None]
                set_by = list(j.set_by) if j.set_by else [EXPERT, EXPERT]
                values.update(
                    scores=[scores[i] for i in order],
                    set_by=[set_by[i] for i in order],
                    rewrite=j.rewrite or "",
                    comment=j.comment,
                    flagged=j.flagged,
                    rewrite_edited=bool(j.rewrite),
                    verdict=_shown_verdict(j.verdict, bool(p.get("flip"))),
                )
            elif j is not None:  # reopening a skipped item: its note and flag come back
                values.update(comment=j.comment, flagged=j.flagged)
        scores = values.get("scores") or [None, None]
        need = item.task == "prefs" and all(x is not None and x < config.tau for x in scores)
        stored = None
        if show_stored and j is not None:
            js = list(j.scores) if j.scores else None
            stored = {
                "version": j.version,
                "scores": [js[i] for i in order] if js else None,
                "rewrite": j.rewrite,
                "comment": j.comment,
                "updated": j.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                "verdict_text": {
                    "left": "translation 1 better",
                    "same": "about the same",
                    "right": "translation 2 better",
                }.get(_shown_verdict(j.verdict, bool(p.get("flip"))) or "", "–"),
            }
        first = not store.my_judgments(v.user.id)
        return render(
            "item.html",
            status,
            viewer=v,
            item_id=item.id,
            task=item.task,
            source=p["source"],
            item_src=p.get("src") or "?",
            item_tgt=p.get("tgt") or "?",
            candidates=candidates,
            suggestions=shown_suggestions,
            values=values,
            version=stored_version if version is None else version,
            stored_version=stored_version,
            skipped=j is not None and j.skipped,
            tau=config.tau,
            tau_text=_fmt(config.tau),
            need_rewrite=need,
            counts=store.counts(item.task),
            mine=mine_count(v.user.id, item.task),
            left=store.left_for(v.user.id, item.task),
            position=item.key,
            stored=stored,
            needs_rewrite_hint=bool(auto.get("needs_rewrite")) and config.prefill,
            messages=messages or [],
            rubric=[(s, n, t) for s, (n, t) in sorted(RUBRIC.items(), reverse=True)],
            open=first,
            previous=store.previous_item(v.user.id, before=item.id),
            opened=f"{time.time():.3f}",
            draft_key=f"{v.user.id}:{item.id}",
            max_chars=config.max_rewrite_chars,
        )

    @app.get("/item/{raw_id}", response_class=HTMLResponse)
    def show_item(raw_id: str, v: Viewer = Depends(viewer)) -> Response:
        item = store.item(_item_id(raw_id))
        if item is None:
            raise StarletteHTTPException(404, "No such item.")
        if not may_open(item.id, v.user.id):
            raise StarletteHTTPException(
                403, "This item is not handed to you (or its lease ran out): take the next one."
            )
        return item_page(v, item)

    @app.post("/item/{raw_id}", response_class=HTMLResponse)
    async def submit(raw_id: str, request: Request, v: Viewer = Depends(viewer)) -> Response:
        form = await read_form(request)
        check_csrf(v, form.get("csrf", ""))
        item = store.item(_item_id(raw_id))
        if item is None:
            raise StarletteHTTPException(404, "No such item.")
        return await run_in_threadpool(handle_submit, v, item, form)

    def handle_submit(v: Viewer, item: Item, form: dict[str, str]) -> Response:
        flip = bool(item.payload.get("flip"))
        rewrite = form.get("rewrite", "").replace("\r\n", "\n")
        comment = form.get("comment", "")
        shown = [_int(form.get("s1")), _int(form.get("s2"))]
        marks = [form.get("p1", EXPERT), form.get("p2", EXPERT)]
        version = _int(form.get("version")) or 0
        j = store.judgment(item.id, v.user.id)
        order = list(j.display_order) if j is not None and j.display_order else display_order(
            item.id, v.user.id, config.shuffle)  # fmt: skip
        values = {"scores": shown, "set_by": marks, "rewrite": rewrite, "comment": comment,
                  "flagged": bool(form.get("flag")), "verdict": form.get("verdict"), "rewrite_edited": True,
                  "rewrite_from": form.get("rewrite_from", "")}  # fmt: skip
        errors: list[str] = []
        opened = _float(form.get("opened"))
        lead = round(min(max(time.time() - opened, 0.0), config.lease_s), 2) if opened else None
        sub = Submission(comment=comment.strip(), flagged=bool(form.get("flag")), lead_time_s=lead)
        if len(rewrite) > config.max_rewrite_chars or len(comment) > config.max_rewrite_chars:
            errors.append(f"The rewrite or note is {max(len(rewrite), len(comment))} characters long: at most "
                          f"{config.max_rewrite_chars} are accepted. Your text is kept below: shorten it.")  # fmt: skip
        if item.task == "prefs":
            if any(s not in range(1, 6) for s in shown):
                errors.append("Score both candidates from 1 to 5.")
            else:
                suggested = _suggestions(item.payload.get("auto") or {}) if config.prefill else None
                scores, set_by = [0, 0], [EXPERT, EXPERT]
                for pos, index in enumerate(order):
                    score = shown[pos]
                    assert score is not None
                    scores[index] = score
                    accepted = marks[pos] == SUGGESTION and suggested is not None and suggested[index]["score"] == score
                    set_by[index] = SUGGESTION if accepted else EXPERT
                sub.scores, sub.set_by, sub.display_order = scores, set_by, order
                if all(s < config.tau for s in scores):
                    text = rewrite.strip()
                    if not text:
                        errors.append(f"Both scores are below τ = {_fmt(config.tau)}: a rewrite is required.")
                    elif text in (c.strip() for c in item.payload["candidates"]):
                        errors.append("The rewrite is one of the candidates: improve it (or raise a score).")
                    sub.rewrite = text
                    start = _int(form.get("rewrite_from"))
                    if start in (1, 2):
                        sub.rewrite_from = order[start - 1]
                    else:
                        better = 1 if scores[1] > scores[0] else 0
                        sub.rewrite_from = better
        else:
            verdict = form.get("verdict")
            if verdict not in ("left", "same", "right"):
                errors.append("Choose which translation is better (or about the same).")
            else:
                sub.verdict = _stored_verdict(verdict, flip)
        if errors:
            msgs = [{"kind": "error", "text": e} for e in errors]
            return item_page(v, item, 422, values=values, messages=msgs, version=version)
        result = store.submit(item.id, v.user.id, version, sub)
        if not result.ok:
            if result.refused == "stale":
                msg = (f"Not saved: this judgment was changed elsewhere (now version {result.version}) after you "
                       "opened it. Your text is kept below and the stored version is shown; submit again to "
                       "replace it.")  # fmt: skip
                return item_page(v, item, 409, values=values, messages=[{"kind": "error", "text": msg}],
                                 version=result.version, show_stored=True)  # fmt: skip
            if result.refused == "not_handed":
                raise StarletteHTTPException(403, "This item was never handed to you: take the next one.")
            msg = ("Not saved: your lease on this item ran out and it went to another expert (or its places are "
                   "taken). Your text is kept below; copy what you need and take the next item.")  # fmt: skip
            return item_page(v, item, 409, values=values, messages=[{"kind": "error", "text": msg}], version=version)
        if result.version > 1 and j is not None and not j.skipped:
            return RedirectResponse("/mine", status_code=303)
        return go_next(v, item.task)

    @app.post("/item/{raw_id}/skip")
    def skip(
        raw_id: str,
        v: Viewer = Depends(viewer),
        csrf: str = Form(""),
        flag: str | None = Form(None),
        comment: str = Form(""),
    ) -> Response:
        check_csrf(v, csrf)
        item = store.item(_item_id(raw_id))
        if item is None:
            raise StarletteHTTPException(404, "No such item.")
        note = comment.strip()[: config.max_rewrite_chars]
        refused = store.skip(item.id, v.user.id, flagged=bool(flag), comment=note)
        if refused == "not_handed":
            raise StarletteHTTPException(403, "This item was never handed to you: take the next one.")
        if refused == "judged":
            raise StarletteHTTPException(409, "You judged this item already: edit your judgment instead.")
        if refused is not None:
            raise StarletteHTTPException(409, "Your lease on this item ran out and it went to another expert.")
        return go_next(v, item.task)

    @app.get("/mine", response_class=HTMLResponse)
    def mine(v: Viewer = Depends(viewer)) -> Response:
        rows = []
        for item, j in store.my_judgments(v.user.id):
            if j.skipped:
                summary = "skipped" + (" (flagged)" if j.flagged else "")
            elif item.task == "prefs":
                shown = [str(x) for x in j.scores] if j.scores else ["–", "–"]
                summary = f"{shown[0]} / {shown[1]}" + (" + rewrite" if j.rewrite else "")
                summary += " (flagged)" if j.flagged else ""
            else:
                summary = _shown_verdict(j.verdict, bool(item.payload.get("flip"))) or "–"
            rows.append({"item_id": item.id, "key": item.key, "task": item.task, "summary": summary,
                         "version": j.version, "skipped": j.skipped, "review": j.review,
                         "seconds": None if j.lead_time_s is None else round(j.lead_time_s)})  # fmt: skip
        return render("mine.html", viewer=v, rows=rows)

    # -- review ---------------------------------------------------------------------------------------------
    def item_status(judged: list[tuple[str, JudgmentRow]]) -> set[str]:
        status = set()
        done = [j for _n, j in judged if not j.skipped and j.scores]
        if any(j.flagged for _n, j in judged):
            status.add("flagged")
        if any(j.rewrite for j in done):
            status.add("rewritten")
        if any(j.rewrite and j.review is None for j in done):
            status.add("unreviewed")
        if any(j.accepted_only for j in done):
            status.add("accepted-only")
        if len(done) > 1:
            prefer = {(j.scores[0] > j.scores[1]) - (j.scores[0] < j.scores[1]) for j in done if j.scores}
            spread = max(abs(a.scores[i] - b.scores[i]) for a in done for b in done for i in (0, 1)  # type: ignore[index]
                         )  # fmt: skip
            if len(prefer) > 1 or spread >= 2:
                status.add("disagreement")
        return status

    @app.get("/review", response_class=HTMLResponse)
    def review_list(v: Viewer = Depends(reviewer), status: str = "all") -> Response:
        if status not in REVIEW_FILTERS:
            raise StarletteHTTPException(404, f"No filter {status!r}.")
        by_item: dict[int, tuple[Item, list[tuple[str, JudgmentRow]]]] = {}
        for item, name, j in store.judgments("prefs"):
            by_item.setdefault(item.id, (item, []))[1].append((name, j))
        rows = []
        counts = dict.fromkeys(REVIEW_FILTERS, 0)
        for item, judged in by_item.values():
            tags = item_status(judged)
            counts["all"] += 1
            for tag in tags:
                counts[tag] += 1
            if status == "all" or status in tags:
                rows.append({"item_id": item.id, "key": item.key, "source": item.payload["source"],
                             "tags": sorted(tags), "experts": ", ".join(n for n, _ in judged)})  # fmt: skip
        return render("review_list.html", viewer=v, rows=rows, filters=REVIEW_FILTERS, current=status, counts=counts)

    @app.get("/review/item/{raw_id}", response_class=HTMLResponse)
    def review_item(raw_id: str, v: Viewer = Depends(reviewer)) -> Response:
        item = store.item(_item_id(raw_id))
        if item is None or item.task != "prefs":
            raise StarletteHTTPException(404, "No such item.")
        p = item.payload
        spaced = get_language(p["tgt"]).spaced if p.get("tgt") else True
        experts = []
        for name, j in store.item_judgments(item.id):
            start = j.rewrite_from if j.rewrite_from in (0, 1) else None
            if start is None and j.rewrite and j.scores:
                start = 1 if j.scores[1] > j.scores[0] else 0
            experts.append({
                "id": j.id, "name": name, "skipped": j.skipped, "flagged": j.flagged, "comment": j.comment,
                "scores": j.scores, "set_by": j.set_by or [EXPERT, EXPERT], "rewrite": j.rewrite,
                "review": j.review, "own": j.user_id == v.user.id, "version": j.version,
                "seconds": None if j.lead_time_s is None else round(j.lead_time_s),
                "from": None if start is None else start + 1,
                "diff": word_diff(p["candidates"][start], j.rewrite, spaced) if j.rewrite and start is not None else [],
            })  # fmt: skip
        return render("review_item.html", viewer=v, item=item, source=p["source"], candidates=p["candidates"],
                      experts=experts, tags=sorted(item_status(store.item_judgments(item.id))))  # fmt: skip

    @app.post("/review/judgment/{raw_id}")
    def review_judgment(
        raw_id: str,
        v: Viewer = Depends(reviewer),
        csrf: str = Form(""),
        decision: str = Form(""),
        rewrite: str = Form(""),
    ) -> Response:
        check_csrf(v, csrf)
        row = store.judgment_by_id(_item_id(raw_id))
        if row is None:
            raise StarletteHTTPException(404, "No such judgment.")
        store.review(row.id, v.user.id, decision, rewrite.replace("\r\n", "\n") if decision == "edited" else None)
        return RedirectResponse(f"/review/item/{row.item_id}", status_code=303)

    @app.post("/admin/items/{raw_id}/clear-flag")
    def clear_flag(raw_id: str, v: Viewer = Depends(admin), csrf: str = Form("")) -> Response:
        check_csrf(v, csrf)
        item = store.item(_item_id(raw_id))
        if item is None:
            raise StarletteHTTPException(404, "No such item.")
        store.clear_flags(item.id, v.user.id)
        return RedirectResponse(f"/review/item/{item.id}" if item.task == "prefs" else "/admin", status_code=303)

    # -- admin ------------------------------------------------------------------------------------------------
    def export_now() -> Export:
        return apply_rules(store.pref_items(), config.tau)

    def eval_win() -> Any:
        judged = store.judgments("eval")
        systems = ("A", "B")
        if judged:
            names = judged[0][0].payload.get("systems") or ["A", "B"]
            systems = (str(names[0]), str(names[1]))
        return win_rate([(str(i.id), n, j.verdict, j.skipped) for i, n, j in judged], systems)

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(v: Viewer = Depends(admin)) -> Response:
        prefs = evals = None
        if store.counts("prefs")["items"]:
            judged = store.judgments("prefs")
            alpha = prefs_agreement([(str(i.id), n, j.scores, j.skipped) for i, n, j in judged])
            prefs = {
                "counts": store.counts("prefs"),
                "progress": store.progress("prefs"),
                "stats": export_now().stats.lines(),
                "alpha_text": "n/a (no overlap)" if alpha is None else f"{alpha:.3f}",
            }
        if store.counts("eval")["items"]:
            win = eval_win()
            evals = {
                "counts": store.counts("eval"),
                "progress": store.progress("eval"),
                "win": win,
                "alpha_text": "n/a" if win.alpha is None else f"{win.alpha:.3f}",
            }
        flagged = [{"item_id": i.id, "key": i.key, "task": i.task, "expert": n, "comment": j.comment}
                   for i, n, j in store.flagged()]  # fmt: skip
        users = [u for u in store.users() if u.password_hash != "!external"]
        return render("admin.html", viewer=v, prefs=prefs, eval=evals, flagged=flagged, tau_text=_fmt(config.tau),
                      users=users)  # fmt: skip

    @app.post("/admin/users/{raw_id}/active")
    def set_active(raw_id: str, v: Viewer = Depends(admin), csrf: str = Form(""), active: str = Form("")) -> Response:
        check_csrf(v, csrf)
        store.set_active(_item_id(raw_id), active == "1", v.user.id)
        return RedirectResponse("/admin", status_code=303)

    def jsonl(rows: list[dict[str, Any]], name: str) -> Response:
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return PlainTextResponse(body, media_type="application/jsonl; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip

    @app.get("/admin/export.jsonl")
    def export(v: Viewer = Depends(admin)) -> Response:
        return jsonl(export_now().rows, "preferences.jsonl")

    @app.get("/admin/export.original.jsonl")
    def export_original(v: Viewer = Depends(admin)) -> Response:
        return jsonl(export_now().original, "preferences.original.jsonl")

    @app.get("/admin/export.excluded.jsonl")
    def export_excluded(v: Viewer = Depends(admin)) -> Response:
        return jsonl(export_now().excluded, "preferences.excluded.jsonl")

    @app.get("/admin/export-stats.json")
    def export_stats(v: Viewer = Depends(admin)) -> Response:
        return JSONResponse(export_now().stats.to_dict())

    @app.get("/admin/winrate.json")
    def winrate_json(v: Viewer = Depends(admin)) -> Response:
        return JSONResponse(eval_win().to_dict())

    @app.get("/admin/audit", response_class=HTMLResponse)
    def audit(v: Viewer = Depends(admin)) -> Response:
        names = {u.id: u.name for u in store.users()}
        rows = [
            {
                "at": a.at.strftime("%Y-%m-%d %H:%M:%S"),
                "user": names.get(a.user_id or -1, ""),
                "action": a.action,
                "item": a.item_id or "",
                "detail": json.dumps(a.detail, ensure_ascii=False)[:2000],
            }
            for a in store.audit()
        ]
        return render("audit.html", viewer=v, rows=rows)

    return app


async def run_in_threadpool(func: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool as run

    return await run(func, *args)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _stored_verdict(shown: str, flip: bool) -> str:
    """left/same/right on the page → a/same/b (system A = the first system) given the item's display order."""
    if shown == "same":
        return "same"
    left_is_a = not flip
    return "a" if (shown == "left") == left_is_a else "b"


def _shown_verdict(stored: str | None, flip: bool) -> str | None:
    if stored is None:
        return None
    if stored == "same":
        return "same"
    return "left" if (stored == "a") != flip else "right"


def uvicorn_config(config: AnnotateConfig, app: FastAPI, log_level: str = "info") -> Any:
    """The uvicorn config the app is served with: proxy headers are the app's to read, from `trusted_proxies`
    only (uvicorn's own handling would trust `X-Forwarded-For` from any local peer); connections are bounded by
    `protocol_class`."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=log_level,
        proxy_headers=False,
        http=protocol_class(config),
    )


def protocol_class(config: AnnotateConfig) -> type[ConnectionGuards]:
    """uvicorn's HTTP protocol with the header deadline and connection caps of `config`: serve's bounds, answered
    in text (a browser shows it) rather than JSON."""
    return guarded_protocol(
        "AnnotateHttpProtocol",
        header_timeout_s=config.header_timeout_s,
        max_connections=config.max_connections,
        per_client=ConnectionCap(config.max_connections_per_client, ClientAddress(config.trusted_proxies)),
        json_errors=False,
    )


def serve(config: AnnotateConfig) -> None:
    """Run the app with uvicorn (blocks)."""
    import uvicorn

    uvicorn.Server(uvicorn_config(config, create_app(config))).run()
