"""Resume keys: a row is done only for the exact input and settings it was made from.

Every stage that resumes (translate, sample, prefs generate, bench caches, Ray shards) decides "is this row
already done?" with the one function here, `resume_key`, never by id alone. A row's key is its id plus a digest
of what its output depends on: its content (text, source and target language, …) and the run's settings
(`settings_digest` of, for a translation, `translation_settings`: the model file's sha256, `prompt_version`,
the profile, term-base and example-set content hashes, engine options that change output such as
`n_threads`). Output rows carry `key` and `settings` (the settings digest), so a rerun can tell a row whose
text changed (redo it: its new line supersedes the old one) from a run whose settings changed for every row
(refused with `SettingsChangedError` unless the user asks to redo everything, or writes elsewhere).

Settings are computed from the configuration (an `EngineSpec`, a `TranslatorConfig`), never from a loaded
model: a stage decides what is left to do before it loads anything, and loads nothing when all is done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redtrans.errors import ConfigError

if TYPE_CHECKING:
    from redtrans.engines.spec import EngineSpec
    from redtrans.translator import TranslatorConfig

DIGEST_SIZE = 16  # bytes: 32 hex characters, plenty for collision-free keys over billions of rows

KEY_FIELD = "key"
"""The output field holding a row's resume key."""
SETTINGS_FIELD = "settings"
"""The output field holding the settings digest a row was made with."""


def digest(value: Any) -> str:
    """A stable hex digest of a JSON-serialisable value (keys sorted, no whitespace, UTF-8; a lone surrogate
    in a text is hashed as it is, so a row that fails on one still has a key)."""
    encoded = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.blake2b(encoded.encode("utf-8", "surrogatepass"), digest_size=DIGEST_SIZE).hexdigest()


def settings_digest(settings: Mapping[str, Any]) -> str:
    """The digest of a run's settings: everything that changes every row's output."""
    return digest(dict(settings))


def resume_key(row_id: str, content: Mapping[str, Any], settings: str) -> str:
    """The key a row is done for: its id, the digest of its content and the run's `settings_digest`."""
    return digest({"id": row_id, "content": dict(content), "settings": settings})


class SettingsChangedError(ConfigError):
    """Every row of an existing output was made with other settings (another model, target, prompt version…):
    resuming would redo all of it under the same name. Exit 2 before any work."""


def check_settings(
    path: str | Path,
    stored: Iterable[str | None],
    settings: str,
    remedy: str,
    seen: Mapping[str, Any] | None = None,
    rows: int | None = None,
) -> None:
    """Refuse (SettingsChangedError naming `remedy`) when `stored` (the settings digests previous rows were made
    with) is not empty and none of it is `settings`. `seen`: fields of a previous row (model, tgt,
    prompt_version) to name; `rows`: how many rows there are (default: one per stored digest)."""
    digests = list(stored)
    if not digests or settings in digests:
        return
    legacy = all(value is None for value in digests)
    what = (
        "by a redtrans without resume keys"
        if legacy
        else "with other settings (model file, target language, prompt version, profile, term base, examples or "
        "engine options)"
    )
    shown = ", ".join(f"{k} {v}" for k, v in (seen or {}).items() if v not in (None, ""))
    last = f" (the last: {shown})" if shown else ""
    count = rows if rows is not None else len(digests)
    raise SettingsChangedError(
        f"all {count} rows were made {what}{last}; every row would be redone: {remedy}", path=path
    )


# -- what a translation depends on ---------------------------------------------------------------------------


def engine_settings(spec: EngineSpec) -> dict[str, Any]:
    """What of an engine changes its output: the kind, the model file's sha256 (a registry model's published
    one; a file or model directory hashed, the hash cached by size and mtime), and every field of the kind's
    config except those that change only speed or transport (`Engine.speed_fields`), with ``n_threads: 0``
    resolved to the core count as the engine does."""
    from redtrans.engines.spec import engine_class

    resolved = spec.resolved()
    assert resolved.kind is not None
    cls = engine_class(resolved.kind)
    config = spec.engine_config().model_dump(mode="json")
    settings: dict[str, Any] = {"kind": resolved.kind}
    for name, value in config.items():
        if name not in cls.speed_fields:
            settings[name] = value
    if settings.get("n_threads") == 0:
        settings["n_threads"] = os.cpu_count() or 1
    model_field = cls.spec_fields.get("model")
    if model_field and model_field not in cls.speed_fields and isinstance(config.get(model_field), str):
        sha = model_sha256(config[model_field])
        if sha is not None:  # the file decides, not how it was named (a registry name or a path to it)
            settings[model_field] = None
            settings["model_sha256"] = sha
    return settings


def translation_settings(config: TranslatorConfig, engine: EngineSpec | Mapping[str, Any]) -> dict[str, Any]:
    """Everything a translation depends on besides its own text and languages: `engine` (a spec, or settings
    already made by `engine_settings`) and the pipeline's config, with the profile, term bases and example set
    as content hashes (editing a term base redoes the rows it may change)."""
    from redtrans import prompts
    from redtrans.text.memory import load_memory
    from redtrans.text.profiles import load_profile
    from redtrans.text.termbase import load_termbase

    plain = config.mode == "plain"  # the whole post in one plain prompt: no hints, examples or candidates
    profile = load_profile(config.profile)
    rules = [
        (r.name, r.kind, r.pattern.pattern, r.output, r.output_by_lang, r.labels, r.default_label)
        for r in profile.markup
    ]
    termbase = None if plain else load_termbase(config.termbases)
    entries = [
        (e.term, e.lang, e.meaning, {t: [(r.text, r.register) for r in rs] for t, rs in e.translations.items()},
         e.variants, e.patterns, e.examples, e.tags)
        for e in (termbase.entries if termbase is not None else [])
    ]  # fmt: skip
    memory = None if plain else load_memory(config.examples)
    pairs = [(p.src, p.tgt, p.source, p.target) for p in memory.pairs()] if memory is not None else []
    prompt = prompts.PromptSettings(tuple(config.termbases), config.max_hints, config.examples, config.shots)
    return {
        "engine": dict(engine) if isinstance(engine, Mapping) else engine_settings(engine),
        "prompt_version": "plain" if config.mode == "plain" else prompts.PROMPT_VERSION,
        "mode": config.mode,
        "profile": digest(rules),
        "retry": config.retry,
        "languages": config.languages,
        "max_tokens": config.max_tokens,
        "termbase": digest(entries) if termbase is not None else None,
        "max_hints": config.max_hints if termbase is not None else None,
        "examples": digest(pairs) if memory is not None else None,
        "shots": config.shots if memory is not None else None,
        "min_similarity": prompt.min_similarity if memory is not None else None,
        "candidates": (
            {"n": config.candidates, "temperature": config.candidate_temperature, "seed": config.seed}
            if config.candidates > 0 and not plain
            else None
        ),
    }


def model_sha256(model: str) -> str | None:
    """The sha256 of a model: a registry name's published digest, a file's or a directory's (its files, not
    recursive) computed and cached; None for anything else (a served model name)."""
    from redtrans.engines.models import MODELS

    if not model.strip():
        return None
    if model in MODELS:
        return MODELS[model].sha256
    path = Path(model).expanduser()
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        return hashlib.sha256("".join(f"{p.name}\0{file_sha256(p)}\n" for p in files).encode()).hexdigest()
    return None


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered in ``$REDTRANS_HOME/file-sha256.json`` by path, size and mtime (a model
    of gigabytes is hashed once, not at every run); a registry model's verified marker is used as is."""
    from redtrans.engines.models import sha256_file
    from redtrans.paths import redtrans_home

    marker = path.with_name(path.name + ".sha256")
    stat = path.stat()
    if marker.is_file() and marker.stat().st_mtime_ns >= stat.st_mtime_ns:
        return marker.read_text().strip()
    store = redtrans_home() / "file-sha256.json"
    real = str(path.resolve())
    known: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(store.read_text(encoding="utf-8"))
    entry = known.get(real)
    if isinstance(entry, list) and entry[:2] == [stat.st_size, stat.st_mtime_ns]:
        return str(entry[2])
    value = sha256_file(path)
    known[real] = [stat.st_size, stat.st_mtime_ns, value]
    with contextlib.suppress(OSError):  # a read-only home: hashed again next time, nothing else lost
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_name(f".{store.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known), encoding="utf-8")
        os.replace(tmp, store)
    return value
