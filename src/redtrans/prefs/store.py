"""The annotation store, through SQLAlchemy: SQLite by default (WAL), PostgreSQL by URL.

Tables: users (argon2 hashes; roles admin, reviewer, expert), sessions (hashed tokens + a CSRF token each),
items (one task each: ``prefs`` = score two candidates and rewrite, ``eval`` = pairwise human evaluation),
leases (a hand-out with an expiry), judgments (one per item and expert, with a `version` for optimistic
locking, who set each score, the order the candidates were shown in, time spent, a reviewer's decision),
and audit (every submission, refused submission, skip, review, flag clearing, login, failed or throttled
login, and import). The login throttle is not stored: `webguard.FailureThrottle` counts failures in memory.

The schema is migrated with Alembic (`prefs/migrations`) whenever a store is opened: a database made before
migrations existed is recognised and brought up to date, its rows kept.

Every write is one transaction. On SQLite each transaction starts with ``BEGIN IMMEDIATE`` (writers queue on
the busy timeout instead of failing on a stale snapshot); on PostgreSQL the item handed out or judged is
locked (``SELECT … FOR UPDATE``) while its places are counted, so k is never exceeded by two experts at once.

Leases are the rule of who may judge what: a submission or skip is accepted for the expert's live lease, for
her own earlier judgment (an edit, or reopening an item she skipped, while a place among its k is free), or
for her lease that ran out while nobody else was handed the item. An expired lease stays recorded until the
item is handed to someone else, which is how "nobody else had it meanwhile" is known.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
    and_,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from redtrans.errors import ConfigError, InputError, RedtransError
from redtrans.prefs.export import EXPERT, SUGGESTION, PrefItem
from redtrans.prefs.export import Judgment as ExportJudgment

ROLES = ("admin", "reviewer", "expert")
REVIEWERS = ("admin", "reviewer")
TASKS = ("prefs", "eval")
VERDICTS = ("a", "same", "b")
NAME_CHARS = 120
MAX_ID = 2**31 - 1
"""Item and judgment ids are 32-bit on every backend: a larger id in a URL is simply not found."""
MIGRATIONS = Path(__file__).parent / "migrations"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_CHARS), unique=True)
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
    # revision 0002
    set_by: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    """Per score (candidate order): "expert" or "suggestion" (accepted unchanged); None = before 0002."""
    display_order: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    """The candidates' indexes in the order shown (e.g. [1, 0]: candidate 2 on the left)."""
    rewrite_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The candidate (0, 1) the rewrite box was pre-filled with."""
    lead_time_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Seconds spent on the item's page before each submission, added up over edits."""
    review: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """A reviewer's decision: accepted | rejected | None (not reviewed)."""
    reviewed_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    @property
    def accepted_only(self) -> bool:
        return bool(self.set_by) and all(s == SUGGESTION for s in self.set_by or [])


class Audit(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    item_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Refused(RedtransError):
    """A write the rules do not allow (reviewing one's own rewrite, a judgment that does not exist)."""


@dataclass
class Submission:
    """What an expert submits for one item (scores and `set_by` in candidate order)."""

    scores: list[int] | None = None
    verdict: str | None = None
    rewrite: str | None = None
    comment: str = ""
    flagged: bool = False
    set_by: list[str] | None = None
    display_order: list[int] | None = None
    rewrite_from: int | None = None
    lead_time_s: float | None = None


@dataclass
class SubmitResult:
    ok: bool
    version: int
    current: JudgmentRow | None = None  # the newer stored judgment when refused as stale
    refused: str | None = None
    """Why it was refused: stale (a newer version is stored), not_handed (never leased to her), lease_lost
    (her lease ran out and the item went to someone else, or its places are taken)."""


@dataclass
class ExternalReport:
    """What an import of judgments made elsewhere (Label Studio) did."""

    items: int = 0
    judgments: int = 0
    unchanged: int = 0
    changes: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    degenerate: int = 0


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


def _alembic_config(connection: Connection) -> Any:
    try:
        from alembic.config import Config
    except ImportError:
        raise ConfigError("the annotation store needs alembic: pip install 'redtrans[prefs]'") from None
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(None)  # type: ignore[arg-type]
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def migrate(engine: Engine) -> list[str]:
    """Bring the store's schema to the newest revision (in one transaction); returns the revisions applied.
    A database made by the first release (tables, no ``alembic_version``) is stamped ``0001`` first."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = head_revision()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # two processes opening a new store migrate one after the other
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(30300730)")
        current = MigrationContext.configure(conn).get_current_revision()
        if current == head:
            return []
        cfg = _alembic_config(conn)
        tables = inspect(conn)
        if current is None and tables.has_table("judgments"):
            command.stamp(cfg, "0001")
            current = "0001"
        command.upgrade(cfg, "head")
        revisions = sorted(s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions())
        return [r for r in revisions if current is None or r > current]


def _open_to(user_id: int, t: datetime) -> ColumnElement[bool]:
    """Items an expert may be handed: not judged or skipped by her, and fewer than `k` judgments plus others'
    live leases."""
    judged = select(JudgmentRow.item_id).where(JudgmentRow.user_id == user_id)
    done = (
        select(func.count()).where(JudgmentRow.item_id == Item.id, JudgmentRow.skipped.is_(False))
    ).scalar_subquery()
    held = (
        select(func.count()).where(Lease.item_id == Item.id, Lease.expires_at >= t, Lease.user_id != user_id)
    ).scalar_subquery()
    return and_(Item.id.not_in(judged), done + held < Item.k)


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
        self.migrated: list[str] = []
        if create:
            try:
                self.migrated = migrate(self.engine)
            except (OperationalError, ProgrammingError) as exc:
                raise ConfigError(f"cannot open the store {db!r}: {exc.orig}") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _audit(self, s: Session, action: str, user_id: int | None, item_id: int | None = None, **detail: Any) -> None:
        s.add(Audit(action=action, user_id=user_id, item_id=item_id, detail=detail))

    def _lock_item(self, s: Session, item_id: int) -> None:
        if not self.sqlite:
            s.execute(select(Item.id).where(Item.id == item_id).with_for_update())

    # -- users and sessions -----------------------------------------------------------------------------
    def add_user(self, name: str, password: str, role: str = "expert", replace: bool = False) -> User:
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not name.strip() or len(name) > NAME_CHARS:
            raise InputError(f"a user name needs 1 to {NAME_CHARS} characters")
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

    def set_active(self, user_id: int, active: bool, by: int | None) -> User:
        """(De)activate an account: a deactivated one cannot log in, its sessions end, its leases go back."""
        with self.sessions.begin() as s:
            user = s.get(User, user_id)
            if user is None:
                raise Refused("no such user")
            if by == user_id and not active:
                raise Refused("you cannot deactivate your own account")
            user.active = active
            if not active:
                s.execute(delete(LoginSession).where(LoginSession.user_id == user_id))
                s.execute(delete(Lease).where(Lease.user_id == user_id))
            self._audit(s, "activate" if active else "deactivate", by, name=user.name)
            return user

    def authenticate(self, name: str, password: str, addr: str) -> User | None:
        """The user, None on a wrong name or password (either way in the audit trail, with the client address).
        Throttling is the caller's (`webguard.FailureThrottle`): the store only checks."""
        key, addr = name[:NAME_CHARS], addr[:64]
        with self.sessions.begin() as s:
            user = None
            if len(name) <= NAME_CHARS:
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
                self._audit(s, "login_failed", None, name=key, addr=addr)
                return None
            assert user is not None
            self._audit(s, "login", user.id, addr=addr)
            return user

    def login_limited(self, name: str, addr: str) -> None:
        """Record in the audit trail that a login was refused by the throttle."""
        with self.sessions.begin() as s:
            self._audit(s, "login_limited", None, name=name[:NAME_CHARS], addr=addr[:64])

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
    @staticmethod
    def _payload(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "source": row["source"], "src": row.get("src"), "tgt": row.get("tgt"),
            "reference": row.get("reference"),
            "candidates": [c.get("text", "") for c in row["candidates"]],
            "systems": [c.get("system", "") for c in row["candidates"]],
            "seeds": [c.get("seed") for c in row["candidates"]],
            "auto": row.get("auto") or None,
        }  # fmt: skip

    @staticmethod
    def _order_key(auto: dict[str, Any] | None) -> float:
        # likely-needs-rewrite first, then the lowest automatic best score: effort where it counts
        if auto and auto.get("scores"):
            best = max(auto["scores"]) / (100.0 if auto.get("metric") == "chrf++" else 5.0)
            return (0.0 if auto.get("needs_rewrite") else 1.0) + best
        return 0.0

    def import_candidates(self, rows: Iterable[dict[str, Any]], k: int = 1) -> tuple[int, int, int]:
        """Add candidates (or prescored) rows as ``prefs`` items; (added, already there, degenerate). A row whose
        two candidates are the same text is not queued (nothing to compare: counted as degenerate)."""
        added = existing = degenerate = 0
        with self.sessions.begin() as s:
            have = set(s.scalars(select(Item.key).where(Item.task == "prefs")))
            for row in rows:
                key = str(row["id"])
                if key in have:
                    existing += 1
                    continue
                payload = self._payload(row)
                if payload["candidates"][0].strip() == payload["candidates"][1].strip():
                    degenerate += 1
                    continue
                s.add(Item(task="prefs", key=key, payload=payload, k=k, order_key=self._order_key(payload["auto"])))
                have.add(key)
                added += 1
            self._audit(s, "import", None, task="prefs", added=added, existing=existing, degenerate=degenerate, k=k)
        return added, existing, degenerate

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

    def import_external(self, items: Iterable[Any], k: int | None = None, prefer: str | None = None) -> ExternalReport:
        """Items judged elsewhere (`labelstudio.ExternalItem`: key, row, judgments with their `updated_at`).

        New items are added (k = `k`, else the number of annotators the import carries for it); each annotator
        becomes an account that cannot log in. A judgment already stored is updated when the import's
        `updated_at` is newer (each change reported); one that differs with an older or equal `updated_at` is a
        conflict: listed and not applied unless `prefer` is ``import`` (apply it) or ``store`` (keep ours)."""
        report = ExternalReport()
        items = list(items)
        with self.sessions.begin() as s:
            ids = {key: id_ for key, id_ in s.execute(select(Item.key, Item.id).where(Item.task == "prefs"))}
            users = {name: id_ for name, id_ in s.execute(select(User.name, User.id))}
            for ext in items:
                carried = max(1, len(ext.judgments))
                if ext.key not in ids:
                    payload = self._payload(ext.row)
                    if payload["candidates"][0].strip() == payload["candidates"][1].strip():
                        report.degenerate += 1
                        continue
                    item = Item(task="prefs", key=ext.key, payload=payload, k=k or carried, order_key=0.0)
                    s.add(item)
                    s.flush()
                    ids[ext.key] = item.id
                    report.items += 1
                elif k is None:
                    stored = s.get(Item, ids[ext.key])
                    if stored is not None and stored.k < carried:
                        report.changes.append(f"item {ext.key}: k {stored.k} → {carried}")
                        stored.k = carried
                item_id = ids[ext.key]
                for ext_judgment in ext.judgments:
                    name, sub, updated = ext_judgment.annotator, ext_judgment.submission, ext_judgment.updated_at
                    if name not in users:
                        user = User(name=name[:NAME_CHARS], role="expert", password_hash="!external", active=False)
                        s.add(user)
                        s.flush()
                        users[name] = user.id
                    values = _external_values(sub)
                    stamp = updated or now()
                    row = s.scalar(select(JudgmentRow).where(JudgmentRow.item_id == item_id,
                                                             JudgmentRow.user_id == users[name]))  # fmt: skip
                    if row is None:
                        s.add(JudgmentRow(item_id=item_id, user_id=users[name], created_at=stamp, updated_at=stamp,
                                          **values))  # fmt: skip
                        report.judgments += 1
                        continue
                    before = _external_values_of(row)
                    if before == values:
                        if updated is not None and updated > row.updated_at:
                            row.updated_at = updated  # the same judgment, as of a later export
                        report.unchanged += 1
                        continue
                    what = f"item {ext.key}, {name}: {_describe(before)} → {_describe(values)}"
                    newer = updated is not None and updated > row.updated_at
                    if not newer and prefer != "import":
                        if prefer != "store":
                            ours = f"{row.updated_at:%Y-%m-%d %H:%M:%S}"
                            report.conflicts.append(f"{what} (import updated {updated or 'unknown'}, store {ours})")
                        continue
                    s.execute(update(JudgmentRow).where(JudgmentRow.id == row.id)
                              .values(version=row.version + 1, updated_at=max(stamp, row.updated_at), review=None,
                                      reviewed_by=None, reviewed_at=None, **values))  # fmt: skip
                    self._audit(s, "import_update", users[name], item_id, before=_plain(before), after=_plain(values))
                    report.changes.append(what)
            self._audit(s, "import_external", None, items=report.items, judgments=report.judgments,
                        changes=len(report.changes), conflicts=len(report.conflicts))  # fmt: skip
        return report

    def item(self, item_id: int) -> Item | None:
        if not 0 < item_id <= MAX_ID:
            return None
        with self.sessions() as s:
            return s.get(Item, item_id)

    def judgment(self, item_id: int, user_id: int) -> JudgmentRow | None:
        if not 0 < item_id <= MAX_ID:
            return None
        with self.sessions() as s:
            return s.scalar(select(JudgmentRow).where(JudgmentRow.item_id == item_id, JudgmentRow.user_id == user_id))

    def judgment_by_id(self, judgment_id: int) -> JudgmentRow | None:
        if not 0 < judgment_id <= MAX_ID:
            return None
        with self.sessions() as s:
            return s.get(JudgmentRow, judgment_id)

    def has_lease(self, item_id: int, user_id: int) -> bool:
        with self.sessions() as s:
            lease = s.scalar(select(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))
            return lease is not None and lease.expires_at >= now()

    def _places_taken(self, s: Session, item_id: int, user_id: int, t: datetime) -> int:
        """Judgments (not skipped) and live leases of the item held by experts other than `user_id`."""
        done = s.scalar(select(func.count()).where(JudgmentRow.item_id == item_id, JudgmentRow.user_id != user_id,
                                                   JudgmentRow.skipped.is_(False))) or 0  # fmt: skip
        held = s.scalar(select(func.count()).where(Lease.item_id == item_id, Lease.user_id != user_id,
                                                   Lease.expires_at >= t)) or 0  # fmt: skip
        return int(done) + int(held)

    def next_item(self, user_id: int, lease_s: float, task: str | None = None) -> int | None:
        """The item to show `user_id` next, leased to them for `lease_s` seconds: their own live lease first,
        else the first item (queue order) they have not judged or skipped with a free place among its k."""
        t = now()
        with self.sessions.begin() as s:
            own = (select(Lease.item_id).join(Item, Item.id == Lease.item_id)
                   .where(Lease.user_id == user_id, Lease.expires_at >= t))  # fmt: skip
            if task:
                own = own.where(Item.task == task)
            mine = s.scalar(own.order_by(Lease.id).limit(1))
            if mine is not None:
                return int(mine)
            query = select(Item.id).where(_open_to(user_id, t))
            if task:
                query = query.where(Item.task == task)
            for item_id in s.scalars(query.order_by(Item.order_key, Item.id).limit(20)):
                self._lock_item(s, item_id)  # then count again: two experts never overfill k
                item = s.get(Item, item_id)
                if item is None or self._places_taken(s, item_id, user_id, t) >= item.k:
                    continue
                # Expired leases of others end here: from now on the item was handed to someone else.
                s.execute(delete(Lease).where(Lease.item_id == item_id, Lease.expires_at < t))
                s.execute(delete(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))
                s.add(Lease(item_id=item_id, user_id=user_id, expires_at=t + timedelta(seconds=lease_s)))
                self._audit(s, "lease", user_id, item_id)
                return int(item_id)
            return None

    def _may_write(self, s: Session, item: Item, user_id: int, row: JudgmentRow | None, t: datetime) -> str | None:
        """None when `user_id` may submit or skip `item` now, else why not (see the module docstring)."""
        lease = s.scalar(select(Lease).where(Lease.item_id == item.id, Lease.user_id == user_id))
        if lease is not None and lease.expires_at >= t:
            return None
        if row is not None and not row.skipped:
            return None  # an edit of her own judgment
        if row is None and lease is None:
            handed = s.scalar(select(func.count()).where(Audit.action == "lease", Audit.item_id == item.id,
                                                         Audit.user_id == user_id))  # fmt: skip
            if not handed:
                return "not_handed"
            return "lease_lost"  # her lease was ended by a hand-out to someone else
        # her expired lease (nobody else was handed the item since), or reopening her own skip
        return "lease_lost" if self._places_taken(s, item.id, user_id, t) >= item.k else None

    def submit(self, item_id: int, user_id: int, version: int, sub: Submission) -> SubmitResult:
        """Store a judgment in one transaction. `version` is the judgment's version the form was built on
        (0 = none yet); a newer stored version refuses the submission (audited with its text) and returns it;
        so does a submission the lease rule does not allow (`SubmitResult.refused`)."""
        t = now()
        values = {"scores": sub.scores, "verdict": sub.verdict, "rewrite": sub.rewrite, "comment": sub.comment,
                  "flagged": sub.flagged, "skipped": False, "set_by": sub.set_by,
                  "display_order": sub.display_order, "rewrite_from": sub.rewrite_from}  # fmt: skip
        try:
            with self.sessions.begin() as s:
                self._lock_item(s, item_id)
                item = s.get(Item, item_id)
                if item is None:
                    return SubmitResult(False, 0, refused="not_handed")
                row = s.scalar(
                    select(JudgmentRow).where(JudgmentRow.item_id == item_id, JudgmentRow.user_id == user_id)
                )
                current = row.version if row is not None else 0
                refused = self._may_write(s, item, user_id, row, t)
                if refused is None and current != version:
                    refused = "stale"
                if refused is not None:
                    self._audit(s, f"{refused}_refused" if refused != "stale" else "stale_refused", user_id,
                                item_id, form_version=version, stored=current, **_plain(values))  # fmt: skip
                    return SubmitResult(False, current, row, refused)
                lead = sub.lead_time_s
                if row is None:
                    s.add(JudgmentRow(item_id=item_id, user_id=user_id, version=1, lead_time_s=lead, **values))
                    new = 1
                else:
                    total = (row.lead_time_s or 0.0) + (lead or 0.0) if (lead is not None or row.lead_time_s) else None
                    done = s.execute(
                        update(JudgmentRow)
                        .where(JudgmentRow.id == row.id, JudgmentRow.version == version)
                        .values(version=version + 1, updated_at=t, lead_time_s=total, review=None, reviewed_by=None,
                                reviewed_at=None, **values)
                    )  # fmt: skip
                    if done.rowcount != 1:  # type: ignore[attr-defined]
                        raise _Stale
                    new = version + 1
                s.execute(delete(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))
                action = "submit" if row is None or row.skipped else "edit"
                self._audit(s, action, user_id, item_id, version=new, lead_time_s=lead, **_plain(values))
                return SubmitResult(True, new)
        except (IntegrityError, _Stale):
            with self.sessions.begin() as s:
                row = s.scalar(
                    select(JudgmentRow).where(JudgmentRow.item_id == item_id, JudgmentRow.user_id == user_id)
                )
                self._audit(s, "stale_refused", user_id, item_id, form_version=version,
                            stored=row.version if row else 0, **_plain({"scores": sub.scores, "verdict": sub.verdict,
                                                                        "rewrite": sub.rewrite}))  # fmt: skip
                return SubmitResult(False, row.version if row else 0, row, "stale")

    def skip(self, item_id: int, user_id: int, flagged: bool = False, comment: str = "") -> str | None:
        """The expert passes on the item (it goes to another expert); a skip can carry a flag and a note.
        Returns None when done, else why it was refused (as `SubmitResult.refused`)."""
        t = now()
        with self.sessions.begin() as s:
            self._lock_item(s, item_id)
            item = s.get(Item, item_id)
            if item is None:
                return "not_handed"
            row = s.scalar(select(JudgmentRow).where(JudgmentRow.item_id == item_id, JudgmentRow.user_id == user_id))
            refused = self._may_write(s, item, user_id, row, t)
            if refused == "lease_lost" and row is not None and row.skipped:
                refused = None  # skipping again what she skipped changes nothing about the places
            if refused is not None:
                self._audit(s, f"skip_{refused}", user_id, item_id, flagged=flagged, comment=comment)
                return refused
            if row is None:
                s.add(JudgmentRow(item_id=item_id, user_id=user_id, skipped=True, flagged=flagged, comment=comment))
            elif row.skipped:
                row.flagged, row.comment, row.updated_at = flagged or row.flagged, comment or row.comment, t
            else:
                return "judged"
            s.execute(delete(Lease).where(Lease.item_id == item_id, Lease.user_id == user_id))
            self._audit(s, "skip", user_id, item_id, flagged=flagged, comment=comment)
            return None

    # -- review and flags -------------------------------------------------------------------------------
    def review(self, judgment_id: int, reviewer_id: int, decision: str, rewrite: str | None = None) -> JudgmentRow:
        """A reviewer's decision on a judgment's rewrite: ``accepted``, ``rejected``, or ``edited`` (the rewrite
        replaced by `rewrite` and accepted). Nobody reviews their own judgment. Audited with the texts."""
        if decision not in ("accepted", "rejected", "edited"):
            raise Refused(f"a review decision is accepted, rejected or edited, not {decision!r}")
        with self.sessions.begin() as s:
            row = s.get(JudgmentRow, judgment_id) if 0 < judgment_id <= MAX_ID else None
            if row is None or row.skipped:
                raise Refused("no such judgment")
            if row.user_id == reviewer_id:
                raise Refused("nobody reviews their own judgment: another reviewer has to")
            if not row.rewrite:
                raise Refused("this judgment has no rewrite to review")
            before = row.rewrite
            if decision == "edited":
                text = (rewrite or "").strip()
                if not text:
                    raise Refused("an edited rewrite cannot be empty")
                row.rewrite = text
            row.review = "rejected" if decision == "rejected" else "accepted"
            row.reviewed_by, row.reviewed_at = reviewer_id, now()
            row.version += 1
            self._audit(s, f"review_{decision}", reviewer_id, row.item_id, judgment=row.id, expert=row.user_id,
                        before=before, after=row.rewrite)  # fmt: skip
            return row

    def clear_flags(self, item_id: int, admin_id: int) -> int:
        """An admin clears an item's flags (the notes stay in the audit trail); returns how many."""
        with self.sessions.begin() as s:
            rows = list(s.scalars(select(JudgmentRow).where(JudgmentRow.item_id == item_id,
                                                            JudgmentRow.flagged.is_(True))))  # fmt: skip
            for row in rows:
                row.flagged = False
            if rows:
                self._audit(s, "clear_flag", admin_id, item_id, flags=[{"expert": r.user_id, "note": r.comment}
                                                                       for r in rows])  # fmt: skip
            return len(rows)

    # -- reading back -----------------------------------------------------------------------------------
    def my_judgments(self, user_id: int) -> list[tuple[Item, JudgmentRow]]:
        with self.sessions() as s:
            rows = s.execute(
                select(Item, JudgmentRow).join(JudgmentRow, JudgmentRow.item_id == Item.id)
                .where(JudgmentRow.user_id == user_id).order_by(JudgmentRow.updated_at.desc(), JudgmentRow.id.desc())
            )  # fmt: skip
            return [(i, j) for i, j in rows]

    def previous_item(self, user_id: int, before: int | None = None) -> int | None:
        """The item the expert judged or skipped last (before item `before` in that order, when given)."""
        mine = [i.id for i, _ in self.my_judgments(user_id)]
        if before in mine:
            mine = mine[mine.index(before) + 1 :]
        return mine[0] if mine else None

    def counts(self, task: str) -> dict[str, int]:
        with self.sessions() as s:
            items = s.scalar(select(func.count()).select_from(Item).where(Item.task == task)) or 0
            needed = s.scalar(select(func.coalesce(func.sum(Item.k), 0)).where(Item.task == task)) or 0
            done = s.scalar(
                select(func.count()).select_from(JudgmentRow).join(Item, Item.id == JudgmentRow.item_id)
                .where(Item.task == task, JudgmentRow.skipped.is_(False))
            ) or 0  # fmt: skip
            return {"items": int(items), "needed": int(needed), "done": int(done)}

    def left_for(self, user_id: int, task: str) -> int:
        """Items the expert may still be handed (or holds): not judged or skipped by her, a place free."""
        t = now()
        with self.sessions() as s:
            query = select(func.count()).select_from(Item).where(Item.task == task, _open_to(user_id, t))
            return int(s.scalar(query) or 0)

    def progress(self, task: str) -> list[dict[str, Any]]:
        """Per account: judged, skipped, flagged, rewrites, active leases, time spent (mean and median s)."""
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
                times = sorted(r.lead_time_s for r in rows if r.lead_time_s is not None and not r.skipped)
                out.append({
                    "id": user.id, "name": user.name, "role": user.role, "active": user.active,
                    "external": user.password_hash == "!external",
                    "judged": sum(not r.skipped for r in rows), "skipped": sum(r.skipped for r in rows),
                    "flagged": sum(r.flagged for r in rows), "rewrites": sum(bool(r.rewrite) for r in rows),
                    "accepted_only": sum(r.accepted_only for r in rows if not r.skipped),
                    "leases": int(leases),
                    "mean_s": round(sum(times) / len(times), 1) if times else None,
                    "median_s": round(times[len(times) // 2], 1) if times else None,
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

    def item_judgments(self, item_id: int) -> list[tuple[str, JudgmentRow]]:
        with self.sessions() as s:
            rows = s.execute(select(User.name, JudgmentRow).join(User, User.id == JudgmentRow.user_id)
                             .where(JudgmentRow.item_id == item_id).order_by(User.name))  # fmt: skip
            return [(n, j) for n, j in rows]

    def flagged(self) -> list[tuple[Item, str, JudgmentRow]]:
        return [t for task in TASKS for t in self.judgments(task) if t[2].flagged]

    def pref_items(self) -> list[PrefItem]:
        """Every ``prefs`` item with its judgments, for the export rules."""
        with self.sessions() as s:
            items = {i.id: i for i in s.scalars(select(Item).where(Item.task == "prefs").order_by(Item.id))}
            names = {u.id: u.name for u in s.scalars(select(User))}
        out: dict[int, PrefItem] = {
            i.id: PrefItem(
                i.key, i.payload["source"], i.payload["src"], i.payload["tgt"], i.payload["candidates"], k=i.k
            )  # fmt: skip
            for i in items.values()
        }
        for item, name, j in self.judgments("prefs"):
            out[item.id].judgments.append(
                ExportJudgment(
                    name,
                    j.scores or [0, 0],
                    j.rewrite,
                    j.skipped,
                    j.flagged,
                    tuple(j.set_by or (EXPERT, EXPERT)),
                    j.review,
                    names.get(j.reviewed_by) if j.reviewed_by else None,
                    j.version,
                )  # fmt: skip
            )
        return list(out.values())

    def audit(self, limit: int = 200) -> list[Audit]:
        with self.sessions() as s:
            return list(s.scalars(select(Audit).order_by(Audit.id.desc()).limit(limit)))


class _Stale(Exception):
    pass


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "", False)}


def _external_values(sub: Submission | None) -> dict[str, Any]:
    if sub is None:
        return {"scores": None, "rewrite": None, "flagged": False, "skipped": True, "set_by": None}
    return {"scores": sub.scores, "rewrite": sub.rewrite, "flagged": sub.flagged, "skipped": False,
            "set_by": sub.set_by or [EXPERT, EXPERT]}  # fmt: skip


def _external_values_of(row: JudgmentRow) -> dict[str, Any]:
    return {"scores": row.scores, "rewrite": row.rewrite, "flagged": row.flagged, "skipped": row.skipped,
            "set_by": row.set_by if not row.skipped else None}  # fmt: skip


def _describe(values: dict[str, Any]) -> str:
    if values["skipped"]:
        return "skipped"
    scores = "/".join(str(x) for x in values["scores"] or [])
    extra = (" + rewrite" if values["rewrite"] else "") + (" + flag" if values["flagged"] else "")
    return scores + extra


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (IMMEDIATE) itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
