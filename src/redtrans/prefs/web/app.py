"""The ``redtrans annotate`` web app: FastAPI + server-rendered Jinja2 templates, no CDN (works offline).

Security: argon2 password hashes (`store`), a server-side session per login in an HttpOnly, SameSite=Strict
cookie, a CSRF token in every form (the login form's is a double-submit cookie), login rate limiting per
name and per address, a strict Content-Security-Policy (no inline script), text escaped by Jinja2's
autoescape. Experts see only their own judgments; admin pages answer 403 to experts.

Work: ``/next`` hands out the next item as a lease (`AnnotateConfig.lease_s`); the item page scores both
candidates on the rubric (``prefs``) or gives a pairwise verdict (``eval``); a submission carries the
judgment version it was built on, and a stale one is refused with the expert's text kept in the form and the
newer stored version shown (409).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from redtrans.prefs.config import RUBRIC, AnnotateConfig
from redtrans.prefs.export import apply_rules
from redtrans.prefs.stats import prefs_agreement, win_rate
from redtrans.prefs.store import TASKS, RateLimited, Store, Submission, User

HERE = Path(__file__).parent
SESSION_COOKIE = "rt_session"
LOGIN_CSRF_COOKIE = "rt_login_csrf"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
TASK_LABELS = {"prefs": "Score two translations (rewrite when both are poor)", "eval": "Human evaluation"}
VERDICT_TEXT = {"a": "system A better", "same": "same", "b": "system B better"}


class _LoginRequired(Exception):
    pass


@dataclass
class Viewer:
    user: User
    csrf: str
    token: str


def _fmt(value: float) -> str:
    return f"{value:g}"


def create_app(config: AnnotateConfig, store: Store | None = None) -> FastAPI:
    """The app over `store` (opened from `config.db` when not given)."""
    store = store or Store(config.db)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    app = FastAPI(title=config.title, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.state.store = store

    def render(name: str, status: int = 200, viewer: Viewer | None = None, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("messages", [])
        html = env.get_template(name).render(
            title=config.title, user=viewer.user if viewer else None, csrf=viewer.csrf if viewer else "", **ctx
        )
        return HTMLResponse(html, status_code=status)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
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

    def check_csrf(v: Viewer, token: str) -> None:
        if not token or not secrets.compare_digest(token, v.csrf):
            raise StarletteHTTPException(403, "The form's CSRF token is missing or wrong: reload the page and retry.")

    def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(
            name, value, max_age=max_age, httponly=True, samesite="strict", secure=config.secure_cookies, path="/"
        )

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
        addr = request.client.host if request.client else "unknown"
        try:
            user = store.authenticate(name.strip(), password, addr, config.login_attempts, config.login_window_s)
        except RateLimited as exc:
            response: Response = render(
                "login.html", 429, login_csrf=csrf, messages=[{"kind": "error", "text": exc.message}]
            )
            response.headers["Retry-After"] = str(int(config.login_window_s))
            return response
        if user is None:
            return render(
                "login.html", 401, login_csrf=csrf, messages=[{"kind": "error", "text": "Wrong user name or password."}]
            )
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
                tasks.append(
                    {
                        "task": task,
                        "label": TASK_LABELS[task],
                        "counts": counts,
                        "mine": mine_count(v.user.id, task),
                        "k_text": f"{counts['needed'] // max(counts['items'], 1)} expert(s) per item",
                    }
                )
        messages = [{"kind": "info", "text": f"Nothing left for you in the {done} queue. Thank you!"}] if done else []
        return render("home.html", viewer=v, tasks=tasks, messages=messages)

    @app.get("/next")
    def next_item(task: str = "prefs", v: Viewer = Depends(viewer)) -> Response:
        if task not in TASKS:
            raise StarletteHTTPException(404, f"No task {task!r}.")
        item_id = store.next_item(v.user.id, config.lease_s, task)
        if item_id is None:
            return RedirectResponse(f"/?done={task}", status_code=303)
        return RedirectResponse(f"/item/{item_id}", status_code=303)

    def may_open(item_id: int, user_id: int) -> bool:
        return store.has_lease(item_id, user_id) or store.judgment(item_id, user_id) is not None

    def item_page(
        v: Viewer,
        item_id: int,
        status: int = 200,
        values: dict[str, Any] | None = None,
        messages: list[dict[str, str]] | None = None,
        version: int | None = None,
        show_stored: bool = False,
    ) -> Response:
        item = store.item(item_id)
        if item is None:
            raise StarletteHTTPException(404, "No such item.")
        p = item.payload
        j = store.judgment(item_id, v.user.id)
        stored_version = j.version if j is not None and not j.skipped else 0
        if item.task == "prefs":
            candidates = list(p["candidates"])
        else:
            candidates = list(reversed(p["outputs"])) if p.get("flip") else list(p["outputs"])
        auto = p.get("auto") or {}
        if values is None:
            values = {
                "scores": [None, None],
                "rewrite": "",
                "comment": "",
                "flagged": False,
                "verdict": None,
                "rewrite_edited": False,
            }
            if j is not None and not j.skipped:
                values.update(
                    scores=list(j.scores) if j.scores else [None, None],
                    rewrite=j.rewrite or "",
                    comment=j.comment,
                    flagged=j.flagged,
                    rewrite_edited=bool(j.rewrite),
                    verdict=_shown_verdict(j.verdict, bool(p.get("flip"))),
                )
            elif item.task == "prefs" and config.prefill and auto.get("rubric"):
                values["scores"] = list(auto["rubric"])
            if item.task == "prefs" and not values["rewrite"]:
                s = [x or 0 for x in values["scores"]]
                values["rewrite"] = candidates[1] if s[1] > s[0] else candidates[0]
        scores = values.get("scores") or [None, None]
        need = item.task == "prefs" and all(x is not None and x < config.tau for x in scores)
        stored = None
        if show_stored and j is not None:
            stored = {
                "version": j.version,
                "scores": j.scores,
                "rewrite": j.rewrite,
                "comment": j.comment,
                "updated": j.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                "verdict_text": {
                    "left": "translation 1 better",
                    "same": "about the same",
                    "right": "translation 2 better",
                }.get(_shown_verdict(j.verdict, bool(p.get("flip"))) or "", "–"),
            }
        auto_hint = ""
        if auto.get("metric") == "chrf++":
            auto_hint = "pre-filled from chrF++ " + " / ".join(f"{x:.1f}" for x in auto["scores"])
        elif auto.get("metric") == "judge":
            auto_hint = "pre-filled from an LLM judge"
        if auto.get("needs_rewrite"):
            auto_hint += " · likely needs a rewrite"
        return render(
            "item.html",
            status,
            viewer=v,
            item_id=item_id,
            task=item.task,
            source=p["source"],
            item_src=p.get("src") or "?",
            item_tgt=p.get("tgt") or "?",
            candidates=candidates,
            values=values,
            version=stored_version if version is None else version,
            stored_version=stored_version,
            tau=config.tau,
            tau_text=_fmt(config.tau),
            need_rewrite=need,
            counts=store.counts(item.task),
            mine=mine_count(v.user.id, item.task),
            position=item.key,
            stored=stored,
            auto_hint=auto_hint,
            messages=messages or [],
            rubric=[(s, n, t) for s, (n, t) in sorted(RUBRIC.items(), reverse=True)],
            open=False,
        )

    @app.get("/item/{item_id}", response_class=HTMLResponse)
    def show_item(item_id: int, v: Viewer = Depends(viewer)) -> Response:
        if store.item(item_id) is None:
            raise StarletteHTTPException(404, "No such item.")
        if not may_open(item_id, v.user.id):
            raise StarletteHTTPException(
                403, "This item is not handed to you (or its lease ran out): take the next one."
            )
        return item_page(v, item_id)

    @app.post("/item/{item_id}", response_class=HTMLResponse)
    def submit(
        item_id: int,
        v: Viewer = Depends(viewer),
        csrf: str = Form(""),
        version: int = Form(0),
        s1: int | None = Form(None),
        s2: int | None = Form(None),
        verdict: str | None = Form(None),
        rewrite: str = Form(""),
        comment: str = Form(""),
        flag: str | None = Form(None),
    ) -> Response:
        check_csrf(v, csrf)
        item = store.item(item_id)
        if item is None:
            raise StarletteHTTPException(404, "No such item.")
        flip = bool(item.payload.get("flip"))
        rewrite = rewrite.replace("\r\n", "\n")
        values = {
            "scores": [s1, s2],
            "rewrite": rewrite,
            "comment": comment,
            "flagged": bool(flag),
            "verdict": verdict,
            "rewrite_edited": True,
        }
        errors: list[str] = []
        sub = Submission(comment=comment.strip(), flagged=bool(flag))
        if item.task == "prefs":
            if s1 not in range(1, 6) or s2 not in range(1, 6):
                errors.append("Score both candidates from 1 to 5.")
            else:
                assert s1 is not None and s2 is not None
                sub.scores = [s1, s2]
                if s1 < config.tau and s2 < config.tau:
                    text = rewrite.strip()
                    if not text:
                        errors.append(f"Both scores are below τ = {_fmt(config.tau)}: a rewrite is required.")
                    elif text in (c.strip() for c in item.payload["candidates"]):
                        errors.append("The rewrite is one of the candidates: improve it (or raise a score).")
                    sub.rewrite = text
        else:
            if verdict not in ("left", "same", "right"):
                errors.append("Choose which translation is better (or about the same).")
            else:
                sub.verdict = _stored_verdict(verdict, flip)
        if not (store.has_lease(item_id, v.user.id) or store.judgment(item_id, v.user.id)):
            counts_done = sum(1 for it, _n, j in store.judgments(item.task) if it.id == item_id and not j.skipped)
            if counts_done >= item.k:
                errors.append("Your lease on this item ran out and other experts completed it; take the next item.")
        if errors:
            msgs = [{"kind": "error", "text": e} for e in errors]
            return item_page(v, item_id, 422, values=values, messages=msgs, version=version)
        result = store.submit(item_id, v.user.id, version, sub)
        if not result.ok:
            msg = (
                f"Not saved: this judgment was changed elsewhere (now version {result.version}) after you opened "
                "it. Your text is kept below and the stored version is shown; submit again to replace it."
            )
            return item_page(
                v,
                item_id,
                409,
                values=values,
                messages=[{"kind": "error", "text": msg}],
                version=result.version,
                show_stored=True,
            )
        if result.version > 1:
            return RedirectResponse("/mine", status_code=303)
        return RedirectResponse(f"/next?task={item.task}", status_code=303)

    @app.post("/item/{item_id}/skip")
    def skip(
        item_id: int, v: Viewer = Depends(viewer), csrf: str = Form(""), flag: str | None = Form(None)
    ) -> Response:
        check_csrf(v, csrf)
        item = store.item(item_id)
        if item is None:
            raise StarletteHTTPException(404, "No such item.")
        store.skip(item_id, v.user.id, flagged=bool(flag))
        return RedirectResponse(f"/next?task={item.task}", status_code=303)

    @app.get("/mine", response_class=HTMLResponse)
    def mine(v: Viewer = Depends(viewer)) -> Response:
        rows = []
        for item, j in store.my_judgments(v.user.id):
            if j.skipped:
                summary = "skipped"
            elif item.task == "prefs":
                shown = [str(x) for x in j.scores] if j.scores else ["–", "–"]
                summary = f"{shown[0]} / {shown[1]}" + (" + rewrite" if j.rewrite else "")
            else:
                summary = _shown_verdict(j.verdict, bool(item.payload.get("flip"))) or "–"
            rows.append(
                {
                    "item_id": item.id,
                    "key": item.key,
                    "task": item.task,
                    "summary": summary,
                    "version": j.version,
                    "skipped": j.skipped,
                }
            )
        return render("mine.html", viewer=v, rows=rows)

    # -- admin ------------------------------------------------------------------------------------------------
    def export_now() -> tuple[list[dict[str, Any]], Any]:
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
            _rows, stats = export_now()
            prefs = {
                "counts": store.counts("prefs"),
                "progress": store.progress("prefs"),
                "stats": stats.lines(),
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
        flagged = [{"key": i.key, "task": i.task, "expert": n, "comment": j.comment} for i, n, j in store.flagged()]
        return render("admin.html", viewer=v, prefs=prefs, eval=evals, flagged=flagged, tau_text=_fmt(config.tau))

    @app.get("/admin/export.jsonl")
    def export(v: Viewer = Depends(admin)) -> Response:
        rows, _stats = export_now()
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return PlainTextResponse(
            body,
            media_type="application/jsonl; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="preferences.jsonl"'},
        )

    @app.get("/admin/export-stats.json")
    def export_stats(v: Viewer = Depends(admin)) -> Response:
        return JSONResponse(export_now()[1].to_dict())

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
                "detail": json.dumps(a.detail, ensure_ascii=False),
            }
            for a in store.audit()
        ]
        return render("audit.html", viewer=v, rows=rows)

    return app


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


def serve(config: AnnotateConfig) -> None:
    """Run the app with uvicorn (blocks)."""
    import uvicorn

    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
