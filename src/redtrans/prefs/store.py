"""The annotation store, through SQLAlchemy: SQLite by default (WAL), PostgreSQL by URL.

Tables: users (argon2 hashes), sessions (hashed tokens + a CSRF token each), items (one task each: ``prefs``
= score two candidates and rewrite, ``eval`` = pairwise human evaluation), leases (a hand-out with an expiry),
judgments (one per item and expert, with a `version` for optimistic locking), audit (every submission,
refused stale submission, skip, login and import) and login_failures (the login rate limit).

Every write is one transaction. On SQLite each transaction starts with ``BEGIN IMMEDIATE`` (writers queue on
the busy timeout instead of failing on a stale snapshot); on PostgreSQL the item handed out is locked
(``SELECT … FOR UPDATE``) while its free places are counted, so k is never exceeded by two experts at once.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from redtrans.errors import ConfigError, InputError, RedtransError
from redtrans.prefs.export import Judgment as ExportJudgment
from redtrans.prefs.export import PrefItem

ROLES = ("admin", "expert")
TASKS = ("prefs", "eval")
VERDICTS = ("a", "same", "b")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class LoginSession(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("task", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(16), index=True)
    key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    k: Mapped[int] = mapped_column(Integer, default=1)
    order_key: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Lease(Base):
    __tablename__ = "leases"
    __table_args__ = (UniqueConstraint("item_id", "user_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class JudgmentRow(Base):
    __tablename__ = "judgments"
    __table_args__ = (UniqueConstraint("item_id", "user_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scores: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    verdict: Mapped[str | None] = mapped_column(String(8), nullable=True)
    rewrite: Mapped[str | None] = mapped_column(Text, nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Audit(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    item_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LoginFailure(Base):
    __tablename__ = "login_failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)
    name: Mapped[str] = mapped_column(String(120), index=True)
    addr: Mapped[str] = mapped_column(String(64), index=True)


class RateLimited(RedtransError):
    """Too many failed logins for this name or address; try again later."""


@dataclass
class Submission:
    """What an expert submits for one item."""

    scores: list[int] | None = None
    verdict: str | None = None
    rewrite: str | None = None
    comment: str = ""
    flagged: bool = False


@dataclass
class SubmitResult:
    ok: bool
    version: int
    current: JudgmentRow | None = None  # the newer stored judgment when refused as stale


def database_url(db: str) -> str:
    """A SQLAlchemy URL from a URL or a SQLite path; ``postgresql://`` uses psycopg (3)."""
    db = db.strip()
    if "://" not in db:
        path = Path(db).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if db.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    return db


def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ImportError:
        raise ConfigError("the annotation app needs argon2-cffi: pip install 'redtrans[prefs]'") from None
    return PasswordHasher()


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    """The annotation database. Use as a context manager (or call `close`)."""

    def __init__(self, db: str, create: bool = True) -> None:
        self.url = database_url(db)
        self.sqlite = self.url.startswith("sqlite")
        try:
            self.engine: Engine = create_engine(self.url, pool_pre_ping=not self.sqlite)
        except Exception as exc:  # a bad URL, a missing driver
            raise ConfigError(f"cannot open the store {db!r}: {exc}") from None
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if create:
            try:
                Base.metadata.create_all(self.engine)
            except OperationalError as exc:
                raise ConfigError(f"cannot open the store {db!r}: {exc.orig}") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _audit(self, s: Session, action: str, user_id: int | None, item_id: int | None = None, **detail: Any) -> None:
        s.add(Audit(action=action, user_id=user_id, item_id=item_id, detail=detail))

    # -- users and sessions -----------------------------------------------------------------------------
    def add_user(self, name: str, password: str, role: str = "expert", replace: bool = False) -> User:
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not name.strip() or len(name) > 120:
            raise InputError("a user name needs 1 to 120 characters")
        if len(password) < 8:
            raise InputError("a password needs at least 8 characters")
        hashed = _hasher().hash(password)
        with self.sessions.begin() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is not None and not replace:
                raise InputError(f"user {name!r} exists (use --replace to set a new password and role)")
            if user is None:
                user = User(name=name, role=role, password_hash=hashed)
                s.add(user)
            else:
                user.role, user.password_hash, user.active = role, hashed, True
                s.execute(delete(LoginSession).where(LoginSession.user_id == user.id))
            s.flush()
            self._audit(s, "add_user", None, name=name, role=role)
            return user

    def users(self) -> list[User]:
        with self.sessions() as s:
            return list(s.scalars(select(User).order_by(User.name)))

    def authenticate(self, name: str, password: str, addr: str, attempts: int, window_s: float) -> User | None:
        """The user, None on a wrong name/password; RateLimited when too many recent failures."""
        since = now() - timedelta(seconds=window_s)
        with self.sessions.begin() as s:
            by_name = s.scalar(select(func.count()).where(LoginFailure.name == name, LoginFailure.at >= since))
            by_addr = s.scalar(select(func.count()).where(LoginFailure.addr == addr, LoginFailure.at >= since))
            if (by_name or 0) >= attempts or (by_addr or 0) >= attempts * 4:
                self._audit(s, "login_limited", None, name=name, addr=addr)
                raise RateLimited("too many failed logins: wait a few minutes and try again")
            user = s.scalar(select(User).where(User.name == name, User.active.is_(True)))
            ok = False
            if user is not None:
                from argon2.exceptions import InvalidHashError, VerificationError

                hasher = _hasher()
                try:
                    ok = hasher.verify(user.password_hash, password)
                except (VerificationError, InvalidHashError):
                    ok = False
                if ok and hasher.check_needs_rehash(user.password_hash):
                    user.password_hash = hasher.hash(password)
            else:
                _hasher().hash(password)  # same cost whether or not the name exists
            if not ok:
                s.add(LoginFailure(name=name, addr=addr))
                self._audit(s, "login_failed", None, name=name, addr=addr)
                return None
            assert user is not None
            self._audit(s, "login", user.id, addr=addr)
            return user

    def create_session(self, user_id: int, hours: float) -> tuple[str, str]:
        """(cookie token, CSRF token) of a new login session."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.sessions.begin() as s:
            s.add(LoginSession(id=_token_id(token), user_id=user_id, csrf=csrf,
                               expires_at=now() + timedelta(hours=hours)))  # fmt: skip
            s.execute(delete(LoginSession).where(LoginSession.expires_at < now()))
        return token, csrf

    def session_user(self, token: str) -> tuple[User, str] | None:
        """(user, CSRF token) of a live session."""
        with self.sessions() as s:
            row = s.get(LoginSession, _token_id(token))
            if row is None or row.expires_at < now():
                return None
            user = s.get(User, row.user_id)
            if user is None or not user.active:
                return None
            return user, row.csrf

    def end_session(self, token: str) -> None:
        with self.sessions.begin() as s:
            s.execute(delete(LoginSession).where(LoginSession.id == _token_id(token)))

    # -- items --------------------------------------------------------------------------------------------
    def import_candidates(self, rows: Iterable[dict[str, Any]], k: int = 1) -> tuple[int, int]:
        """Add candidates (or prescored) rows as ``prefs`` items; (added, already there)."""
        added = existing = 0
        with self.sessions.begin() as s:
            have = set(s.scalars(select(Item.key).where(Item.task == "prefs")))
            for row in rows:
                key = str(row["id"])
                if key in have:
                    existing += 1
                    continue
                auto = row.get("auto") or None
                payload = {
                    "source": row["source"], "src": row.get("src"), "tgt": row.get("tgt"),
                    "reference": row.get("reference"),
                    "candidates": [c.get("text", "") for c in row["candidates"]],
                    "systems": [c.get("system", "") for c in row["candidates"]],
                    "seeds": [c.get("seed") for c in row["candidates"]],
                    "auto": auto,
                }  # fmt: skip
                # likely-needs-rewrite first, then the lowest automatic best score: effort where it counts
                order = 0.0
                if auto and auto.get("scores"):
                    best = max(auto["scores"]) / (100.0 if auto.get("metric") == "chrf++" else 5.0)
                    order = (0.0 if auto.get("needs_rewrite") else 1.0) + best
                s.add(Item(task="prefs", key=key, payload=payload, k=k, order_key=order))
                have.add(key)
                added += 1
            self._audit(s, "import", None, task="prefs", added=added, existing=existing, k=k)
        return added, existing

    def import_eval(self, rows: Iterable[dict[str, Any]], systems: Sequence[str], k: int = 1, seed: int = 0) -> int:
        """Add human-evaluation items: ``{id, source, src, tgt, outputs: [a, b]}``; each item's display order
        is drawn once (seeded) and kept, so the page never says which system is which."""
        rng = random.Random(seed)
        added = 0
        with self.sessions.begin() as s:
            have = set(s.scalars(select(Item.key).where(Item.task == "eval")))
            for row in rows:
                key = str(row["id"])
                flip = rng.random() < 0.5
                if key in have:
                    continue
                payload = {"source": row["source"], "src": row.get("src"), "tgt": row.get("tgt"),
                           "outputs": list(row["outputs"]), "systems": list(systems), "flip": flip}  # fmt: skip
                s.add(Item(task="eval", key=key, payload=payload, k=k, order_key=rng.random()))
                have.add(key)
                added += 1
            self._audit(s, "import", None, task="eval", added=added, systems=list(systems), k=k)
        return added

    def import_external(self, items: Iterable[Any], k: int = 1) -> tuple[int, int]:
        """Items judged elsewhere (`labelstudio.ExternalItem`: key, row, [(annotator, Submission | None)]):
        the items are added as ``prefs`` items if new, each annotator as an account that cannot log in, each
        judgment once (a re-import changes nothing). Returns (items added, judgments added)."""
        items = list(items)
        added, _ = self.import_candidates([i.row for i in items], k)
        judged = 0
        with self.sessions.begin() as s:
            ids = {key: id_ for key, id_ in s.execute(select(Item.key, Item.id).where(Item.task == "prefs"))}
            users = {name: id_ for name, id_ in s.execute(select(User.name, User.id))}
            for ext in items:
                item_id = ids[ext.key]
                for name, sub in ext.judgments:
                    if name not in users:
                        user = User(name=name, role="expert", password_hash="!external", active=False)
                        s.add(user)
                        s.flush()
                        users[name] = user.id
                    exists = s.scalar(select(JudgmentRow.id).where(JudgmentRow.item_id == item_id,
                                                                   JudgmentRow.user_id == users[name]))  # fmt: skip
                    if exists is not None:
                        continue
                    if sub is None:
                        s.add(JudgmentRow(item_id=item_id, user_id=users[name], skipped=True))
                    else:
                        s.add(JudgmentRow(item_id=item_id, user_id=users[name], scores=sub.scores,
                                          rewrite=sub.rewrite, flagged=sub.flagged))  # fmt: skip
                    judged += 1
            self._audit(s, "import_external", None, items=added, judgments=judged)
        return added, judged

    def item(self, item_id: int) -> Item | None:
        with self.sessions() as s:
            return s.get(Item, item_id)

    def judgment(self, item_id: int, user_id: int) -> JudgmentRow | None:
        with self.sessions() as s:
            return s.scalar(select(JudgmentRow).where(JudgmentRow.item_id == item_id, JudgmentRow.user_id == user_id))

    def has_lease(self, item_id: int, user_id: int) -> bool:
        with self.sessions() as s:
            lease = s.scalar(select(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))
            return lease is not None and lease.expires_at >= now()

    def next_item(self, user_id: int, lease_s: float, task: str | None = None) -> int | None:
        """The item to show `user_id` next, leased to them for `lease_s` seconds: their own live lease first,
        else the first item (queue order) they have not judged or skipped with a free place among its k."""
        t = now()
        with self.sessions.begin() as s:
            s.execute(delete(Lease).where(Lease.expires_at < t))
            own = select(Lease.item_id).join(Item, Item.id == Lease.item_id).where(Lease.user_id == user_id)
            if task:
                own = own.where(Item.task == task)
            mine = s.scalar(own.order_by(Lease.id).limit(1))
            if mine is not None:
                return int(mine)
            judged = select(JudgmentRow.item_id).where(JudgmentRow.user_id == user_id)
            done = (
                select(func.count()).where(JudgmentRow.item_id == Item.id, JudgmentRow.skipped.is_(False))
            ).scalar_subquery()
            held = select(func.count()).where(Lease.item_id == Item.id).scalar_subquery()
            query = select(Item.id).where(Item.id.not_in(judged), done + held < Item.k)
            if task:
                query = query.where(Item.task == task)
            for item_id in s.scalars(query.order_by(Item.order_key, Item.id).limit(20)):
                if not self.sqlite:  # lock the item, then count again: two experts never overfill k
                    s.execute(select(Item.id).where(Item.id == item_id).with_for_update())
                    item = s.get(Item, item_id)
                    taken = (s.scalar(select(func.count()).where(JudgmentRow.item_id == item_id,
                                                                JudgmentRow.skipped.is_(False))) or 0) + (
                        s.scalar(select(func.count()).where(Lease.item_id == item_id)) or 0)  # fmt: skip
                    if item is None or taken >= item.k:
                        continue
                s.add(Lease(item_id=item_id, user_id=user_id, expires_at=t + timedelta(seconds=lease_s)))
                self._audit(s, "lease", user_id, item_id)
                return int(item_id)
            return None

    def submit(self, item_id: int, user_id: int, version: int, sub: Submission) -> SubmitResult:
        """Store a judgment in one transaction. `version` is the judgment's version the form was built on
        (0 = none yet); a newer stored version refuses the submission (audited with its text) and returns it."""
        try:
            with self.sessions.begin() as s:
                row = s.scalar(
                    select(JudgmentRow).where(JudgmentRow.item_id == item_id, JudgmentRow.user_id == user_id)
                )
                values = {"scores": sub.scores, "verdict": sub.verdict, "rewrite": sub.rewrite,
                          "comment": sub.comment, "flagged": sub.flagged, "skipped": False}  # fmt: skip
                current = row.version if row is not None else 0
                if current != version:
                    self._audit(s, "stale_refused", user_id, item_id, form_version=version, stored=current,
                                **_plain(values))  # fmt: skip
                    return SubmitResult(False, current, row)
                if row is None:
                    s.add(JudgmentRow(item_id=item_id, user_id=user_id, version=1, **values))
                    new = 1
                else:
                    done = s.execute(
                        update(JudgmentRow)
                        .where(JudgmentRow.id == row.id, JudgmentRow.version == version)
                        .values(version=version + 1, updated_at=now(), **values)
                    )
                    if done.rowcount != 1:  # type: ignore[attr-defined]
                        raise _Stale
                    new = version + 1
                s.execute(delete(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))
                self._audit(s, "submit" if new == 1 else "edit", user_id, item_id, version=new, **_plain(values))
                return SubmitResult(True, new)
        except (IntegrityError, _Stale):
            with self.sessions.begin() as s:
                row = s.scalar(
                    select(JudgmentRow).where(JudgmentRow.item_id == item_id, JudgmentRow.user_id == user_id)
                )
                self._audit(s, "stale_refused", user_id, item_id, form_version=version,
                            stored=row.version if row else 0, **_plain({"scores": sub.scores, "verdict": sub.verdict,
                                                                        "rewrite": sub.rewrite}))  # fmt: skip
                return SubmitResult(False, row.version if row else 0, row)

    def skip(self, item_id: int, user_id: int, flagged: bool = False, comment: str = "") -> None:
        """The expert passes on the item (it goes to another expert); a skip can carry a flag and a note."""
        with self.sessions.begin() as s:
            row = s.scalar(select(JudgmentRow).where(JudgmentRow.item_id == item_id, JudgmentRow.user_id == user_id))
            if row is None:
                s.add(JudgmentRow(item_id=item_id, user_id=user_id, skipped=True, flagged=flagged, comment=comment))
            s.execute(delete(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))
            self._audit(s, "skip", user_id, item_id, flagged=flagged, comment=comment)

    # -- reading back -----------------------------------------------------------------------------------
    def my_judgments(self, user_id: int) -> list[tuple[Item, JudgmentRow]]:
        with self.sessions() as s:
            rows = s.execute(
                select(Item, JudgmentRow).join(JudgmentRow, JudgmentRow.item_id == Item.id)
                .where(JudgmentRow.user_id == user_id).order_by(JudgmentRow.updated_at.desc())
            )  # fmt: skip
            return [(i, j) for i, j in rows]

    def counts(self, task: str) -> dict[str, int]:
        with self.sessions() as s:
            items = s.scalar(select(func.count()).select_from(Item).where(Item.task == task)) or 0
            needed = s.scalar(select(func.coalesce(func.sum(Item.k), 0)).where(Item.task == task)) or 0
            done = s.scalar(
                select(func.count()).select_from(JudgmentRow).join(Item, Item.id == JudgmentRow.item_id)
                .where(Item.task == task, JudgmentRow.skipped.is_(False))
            ) or 0  # fmt: skip
            return {"items": int(items), "needed": int(needed), "done": int(done)}

    def progress(self, task: str) -> list[dict[str, Any]]:
        """Per expert: judged, skipped, flagged, rewrites, active leases."""
        out = []
        with self.sessions() as s:
            for user in s.scalars(select(User).order_by(User.name)):
                rows = list(s.scalars(
                    select(JudgmentRow).join(Item, Item.id == JudgmentRow.item_id)
                    .where(JudgmentRow.user_id == user.id, Item.task == task)
                ))  # fmt: skip
                leases = s.scalar(
                    select(func.count()).select_from(Lease).join(Item, Item.id == Lease.item_id)
                    .where(Lease.user_id == user.id, Item.task == task, Lease.expires_at >= now())
                ) or 0  # fmt: skip
                out.append({
                    "name": user.name, "role": user.role,
                    "judged": sum(not r.skipped for r in rows), "skipped": sum(r.skipped for r in rows),
                    "flagged": sum(r.flagged for r in rows), "rewrites": sum(bool(r.rewrite) for r in rows),
                    "leases": int(leases),
                })  # fmt: skip
        return out

    def judgments(self, task: str) -> list[tuple[Item, str, JudgmentRow]]:
        """(item, expert name, judgment) of a task, in item order."""
        with self.sessions() as s:
            rows = s.execute(
                select(Item, User.name, JudgmentRow).join(JudgmentRow, JudgmentRow.item_id == Item.id)
                .join(User, User.id == JudgmentRow.user_id).where(Item.task == task)
                .order_by(Item.id, User.name)
            )  # fmt: skip
            return [(i, n, j) for i, n, j in rows]

    def flagged(self) -> list[tuple[Item, str, JudgmentRow]]:
        return [t for task in TASKS for t in self.judgments(task) if t[2].flagged]

    def pref_items(self) -> list[PrefItem]:
        """Every ``prefs`` item with its judgments, for the export rules."""
        with self.sessions() as s:
            items = {i.id: i for i in s.scalars(select(Item).where(Item.task == "prefs").order_by(Item.id))}
        out: dict[int, PrefItem] = {
            i.id: PrefItem(i.key, i.payload["source"], i.payload["src"], i.payload["tgt"], i.payload["candidates"])
            for i in items.values()
        }
        for item, name, j in self.judgments("prefs"):
            out[item.id].judgments.append(ExportJudgment(name, j.scores or [0, 0], j.rewrite, j.skipped))
        return list(out.values())

    def audit(self, limit: int = 200) -> list[Audit]:
        with self.sessions() as s:
            return list(s.scalars(select(Audit).order_by(Audit.id.desc()).limit(limit)))


class _Stale(Exception):
    pass


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "", False)}


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (IMMEDIATE) itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
