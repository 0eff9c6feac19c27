"""Systems under test: engine configurations (run through the translator) or files of pre-computed outputs.

Spec strings (``--system``, repeatable):

- ``default`` — the embedded ``qwen2.5-coder-1.5b`` through the full SNS pipeline (mode ``sns``);
- ``plain`` — the same model, one plain prompt per post (``TranslatorConfig(mode="plain")``): the baseline;
- ``name=mine,engine=openai,model=http://host/v1,served_model=x,mode=sns,profile=rednote,parallel=8`` — any
  engine configuration. ``engine``, ``model``, ``parallel`` and ``served_model`` are the fields of the system's
  `EngineSpec` (``engine`` is its `kind`); ``name``, ``mode``, ``profile`` belong to the system; any other key
  is a field of the engine's own config (``n_threads=2``, ``timeout_s=300``, ``base_model=…``, ``chat=false``)
  and goes to `EngineSpec.options`. The spec is checked against the engine's config when it is parsed, so an
  unknown key or a bad value fails before any model loads;
- the quality levers of docs/quality.md as translator keys: ``termbase=builtin`` (several joined by ``+``, the
  first wins a term), ``examples=builtin|PATH``, ``shots=2``, ``candidates=4``, e.g.
  ``name=termbase,termbase=builtin`` beside ``default``: bench scores both and tests the difference;
- ``outputs:path.jsonl`` (or ``name=x,outputs=path``) — published hypotheses: JSONL rows with ``id`` and
  ``translation`` (or ``hypothesis``), or a plain-text file with one line per segment of the whole suite.

Engine systems cache their hypotheses as append-only JSONL (``translations`` rows, keyed by segment id) so a
killed run resumes where it stopped; a cache is bound to its system's configuration (``NAME.config.json``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from redtrans import prompts
from redtrans.bench.suites import Segment
from redtrans.config import validate_config
from redtrans.engines import Engine, EngineSpec, create_engine, engine_class
from redtrans.engines.models import DEFAULT_MODEL
from redtrans.engines.spec import PARALLEL_DETERMINISTIC_KINDS, infer_kind, with_default_mode
from redtrans.errors import ConfigError, InputError
from redtrans.jsonl import JSONLWriter, read_jsonl, repair_tail, retry_pending, stamp_attempts
from redtrans.resume import KEY_FIELD, SETTINGS_FIELD, resume_key, settings_digest, translation_settings
from redtrans.translator import Item, Translator, TranslatorConfig

_TRANSLATOR_KEYS = {"termbase", "examples", "shots", "candidates"}
"""Spec-string keys that set the system's translator (`TranslatorConfig`), not its engine."""
_SYSTEM_KEYS = {"name", "mode", "profile", "outputs", *_TRANSLATOR_KEYS}
_SPEC_KEYS = {"engine": "kind", "model": "model", "parallel": "parallel", "served_model": "served_model"}
"""Spec-string key → `EngineSpec` field; other keys (not in `_SYSTEM_KEYS`) are engine options."""


class SystemSpecError(ConfigError):
    """A system spec that cannot be parsed or run."""


def _default_engine() -> EngineSpec:
    return EngineSpec(model=DEFAULT_MODEL)


@dataclass
class SystemSpec:
    """One system under test."""

    name: str
    """Label in reports and the cache file name."""
    kind: str = "engine"
    """engine = translate with an engine through the translator; outputs = read pre-computed hypotheses."""
    engine: EngineSpec | None = field(default_factory=_default_engine)
    """kind=engine: which engine, model, parallelism and engine options (`redtrans.engines.EngineSpec`)."""
    mode: str = "sns"
    """sns = the full pipeline; plain = one plain prompt per post (a baseline)."""
    profile: str = "rednote"
    """Platform markup profile given to the translator (and used for fidelity)."""
    outputs: str | None = None
    """kind=outputs: the hypotheses file."""
    levers: dict[str, Any] = field(default_factory=dict)
    """Translator settings beyond the default (`TranslatorConfig` fields: termbases, examples, shots,
    candidates): the quality levers a comparison turns on one by one."""

    def engine_spec(self) -> EngineSpec:
        """The engine spec of an engine system (SystemSpecError for an outputs system)."""
        if self.kind != "engine" or self.engine is None:
            raise SystemSpecError(f"system {self.name!r} reads outputs; it has no engine")
        return self.engine

    def config(self) -> dict[str, Any]:
        """What the system's hypotheses depend on: recorded in results.json and binding its cache."""
        if self.kind == "outputs":
            return {"name": self.name, "kind": "outputs", "outputs": self.outputs}
        config = {"name": self.name, "kind": "engine", "mode": self.mode, "profile": self.profile,
                  "engine": self.engine_spec().identity()}  # fmt: skip
        if self.levers:  # only when set, so the bindings of systems without levers stay as they were
            config["translator"] = dict(self.levers)
        return config


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "system"


def _checked(spec: EngineSpec, where: str) -> EngineSpec:
    """`spec` with its options as the engine's config types them; SystemSpecError when the engine's own
    config refuses it (unknown option, bad value, served_model for a local engine): nothing is loaded."""
    try:
        config = spec.engine_config().model_dump(mode="json")
    except ConfigError as exc:
        raise SystemSpecError(f"system {where!r}: {exc}") from None
    return spec.model_copy(update={"options": {key: config[key] for key in spec.options}})


def parse_system(spec: str) -> SystemSpec:
    """Parse a ``--system`` string (see the module docs)."""
    spec = spec.strip()
    if spec == "default":
        return SystemSpec("default")
    if spec == "plain":
        return SystemSpec("plain", mode="plain")
    if spec.startswith("outputs:"):
        path = spec[len("outputs:") :]
        if not path:
            raise SystemSpecError("outputs: needs a file path, e.g. outputs:hyps.jsonl")
        return SystemSpec(Path(path).stem, kind="outputs", engine=None, outputs=path)
    if "=" not in spec:
        raise SystemSpecError(
            f"cannot read system {spec!r}: use default, plain, outputs:FILE or key=value pairs "
            "(name=…,engine=…,model=…,mode=…)"
        )
    values: dict[str, str] = {}
    for part in spec.split(","):
        if "=" not in part:
            # a comma inside a value (several endpoint URLs): continue the previous value
            if not values:
                raise SystemSpecError(f"cannot read system {spec!r} near {part!r}")
            last = list(values)[-1]
            values[last] += "," + part
            continue
        key, value = (x.strip() for x in part.split("=", 1))
        if not key:
            raise SystemSpecError(f"cannot read system {spec!r} near {part!r}")
        values[key] = value
    if "outputs" in values:
        path = values["outputs"]
        return SystemSpec(values.get("name") or Path(path).stem, kind="outputs", engine=None, outputs=path)
    mode = values.get("mode", "sns")
    if mode not in {"sns", "plain"}:
        raise SystemSpecError(f"mode must be sns or plain, not {mode!r}")
    fields: dict[str, Any] = {"model": DEFAULT_MODEL, "options": {}}
    for key, value in values.items():
        if key in _SPEC_KEYS:
            fields[_SPEC_KEYS[key]] = value
        elif key not in _SYSTEM_KEYS:
            fields["options"][key] = value  # typed by the engine's config below
    try:
        engine = validate_config(EngineSpec, fields, f"system {spec!r}")
    except ConfigError as exc:
        raise SystemSpecError(str(exc)) from None
    name = values.get("name") or f"{Path(str(engine.model)).name}-{mode}"
    levers = _levers(values, spec)
    return SystemSpec(name, "engine", _checked(engine, spec), mode, values.get("profile", "rednote"), levers=levers)


def _levers(values: dict[str, str], where: str) -> dict[str, Any]:
    """The spec string's translator keys as `TranslatorConfig` fields, checked."""
    levers: dict[str, Any] = {}
    if "termbase" in values:
        bases = [b.strip() for b in values["termbase"].split("+") if b.strip()]
        levers["termbases"] = [] if bases == ["none"] else bases
    if "examples" in values:
        levers["examples"] = None if values["examples"].lower() == "none" else values["examples"]
    for key in ("shots", "candidates"):
        if key in values:
            try:
                levers[key] = int(values[key])
            except ValueError:
                raise SystemSpecError(f"system {where!r}: {key} must be a whole number, not {values[key]!r}") from None
            if levers[key] < 0:
                raise SystemSpecError(f"system {where!r}: {key} must be 0 or more")
    if levers.get("termbases"):
        from redtrans.text.termbase import load_termbase

        load_termbase(levers["termbases"])  # a missing or broken base fails here, before any model loads
    return levers


# -- outputs files --------------------------------------------------------------------------------------
def load_outputs(spec: SystemSpec, all_ids: list[str]) -> dict[str, str]:
    """Hypotheses of an outputs system by segment id."""
    assert spec.outputs is not None
    path = Path(spec.outputs).expanduser()
    if not path.is_file():
        raise SystemSpecError(f"outputs file of system {spec.name!r} not found: {path}")
    if path.suffix == ".jsonl":
        hyps: dict[str, str] = {}
        for number, row in read_jsonl(path):
            text = row.get("translation", row.get("hypothesis"))
            if "id" not in row or not isinstance(text, str):
                raise SystemSpecError(f"{path}:{number}: an outputs row needs 'id' and 'translation' (or 'hypothesis')")
            hyps[str(row["id"])] = text
        return hyps
    try:
        lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    if len(lines) != len(all_ids):
        raise SystemSpecError(
            f"{path} has {len(lines)} lines but the suite has {len(all_ids)} segments: a plain-text outputs file "
            "must hold one hypothesis per segment of the whole suite, in order (or use JSONL with ids)"
        )
    return dict(zip(all_ids, lines, strict=True))


# -- engine systems (cached) ----------------------------------------------------------------------------
def read_cache(
    path: Path, segments: list[Segment], version: str | None = None, settings: str | None = None
) -> dict[str, dict]:
    """Cached rows for `segments`: the last row per id whose source text matches the segment's (and, when
    given, whose prompt version is `version`: a changed prompt makes old hypotheses stale, and whose resume
    key is the segment's under `settings` (`system_settings`): a changed model file, term base or engine option
    makes them stale too)."""
    if not path.is_file():
        return {}
    repair_tail(path)
    wanted = {s.id: s for s in segments}
    rows: dict[str, dict] = {}
    for _, row in read_jsonl(path):
        key = str(row.get("id"))
        segment = wanted.get(key)
        if segment is None or row.get("text") != segment.source:
            continue
        fresh = version is None or row.get("prompt_version") == version
        if settings is not None:
            fresh = fresh and row.get(KEY_FIELD) == segment_key(segment, settings)
        if fresh:
            rows[key] = row
    return rows


def system_settings(spec: SystemSpec) -> str:
    """The settings digest an engine system's cached rows are keyed by (`redtrans.resume`): its pipeline
    config and engine spec, with the model file, profile, term bases and example set as content hashes."""
    config = TranslatorConfig(profile=spec.profile, mode=spec.mode, **spec.levers)  # type: ignore[arg-type]
    return settings_digest(translation_settings(config, spec.engine_spec()))


def segment_key(segment: Segment, settings: str) -> str:
    """A segment's resume key: its id, source text and languages under a system's settings."""
    return resume_key(segment.id, {"text": segment.source, "src": segment.src, "tgt": segment.tgt}, settings)


def prompt_version(spec: SystemSpec) -> str:
    """The prompt version the translator records for this system's results."""
    return "plain" if spec.mode == "plain" else prompts.PROMPT_VERSION


_LEGACY_DECODING = {"llamacpp": "whole-prompt", "hf": "batch-of-one", "standin": "standin"}
"""The deterministic scheme of bindings written before they named one (`EngineSpec.decoding`). llamacpp's was
round 2's (one slot, every prompt computed whole on all cores): its outputs differ from today's, so its caches
are not reused; the other kinds' schemes did not change."""


def _upgrade_legacy_config(stored: dict[str, Any]) -> dict[str, Any]:
    """A cache binding in an older form, in today's (`SystemSpec.config`), so an unchanged system keeps its cache:
    a deterministic engine without its `decoding` gets the scheme of its time (`_LEGACY_DECODING`); one written
    before systems held an `EngineSpec` (top-level ``engine``/``model``/``options``, parallelism as the engine's
    own option) is rebuilt."""
    engine = stored.get("engine")
    if isinstance(engine, dict) and engine.get("deterministic") and "decoding" not in engine:
        kind = engine.get("kind")
        engine = {**engine, "decoding": _LEGACY_DECODING.get(str(kind), "unknown")}
        if kind in PARALLEL_DETERMINISTIC_KINDS:
            engine["parallel"] = None
        return {**stored, "engine": engine}
    if stored.get("kind") != "engine" or "options" not in stored or "model" not in stored:
        return stored
    options = dict(stored.get("options") or {})
    kind = stored.get("engine") or infer_kind(stored.get("model"))
    spec: dict[str, Any] = {
        "kind": kind,
        "model": stored.get("model"),
        "served_model": options.pop("served_model", None),
    }
    try:
        parallel_field = engine_class(kind).spec_fields.get("parallel")
        if parallel_field in options:
            spec["parallel"] = options.pop(parallel_field)
        engine = validate_config(EngineSpec, {**spec, "options": options}).resolved()
    except ConfigError:
        return stored  # not a configuration this version can build: stays different
    return {"name": stored.get("name"), "kind": "engine", "mode": stored.get("mode"),
            "profile": stored.get("profile"), "engine": engine.identity()}  # fmt: skip


def check_cache_config(config_path: Path, config: dict[str, Any]) -> None:
    """Bind a cache to its system's configuration: refuse to mix hypotheses of two configurations.

    The binding is `SystemSpec.config()`: name, mode, profile and the resolved `EngineSpec` (kind, model,
    parallel, served_model, options). A binding in the older form is read as what it meant, and rewritten."""
    if config_path.is_file():
        try:
            stored = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SystemSpecError(f"{config_path}: not the JSON this cache was bound with ({exc}); remove it "
                                  "together with its hypotheses, or use another --out folder") from None  # fmt: skip
        upgraded = _upgrade_legacy_config(stored) if isinstance(stored, dict) else stored
        if upgraded != config and _decoding_differs(upgraded, config):
            raise SystemSpecError(
                f"the cached hypotheses in {config_path.parent} for system {config['name']!r} were made in another "
                f"deterministic mode ({upgraded['engine']['decoding']}; this version decodes with "
                f"{config['engine']['decoding']}, whose outputs differ): use another --out folder, or remove "
                f"{config_path} and {config_path.parent / config_path.name.removesuffix('.config.json')}.jsonl "
                "to translate them again"
            )
        if upgraded != config:
            raise SystemSpecError(
                f"the cached hypotheses in {config_path.parent} for system {config['name']!r} were made with "
                f"{stored}, not {config}: give the system another name or use another --out folder"
            )
        if upgraded is stored:
            return
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _decoding_differs(stored: Any, config: dict[str, Any]) -> bool:
    """Whether two bindings differ in the deterministic scheme alone."""
    if not isinstance(stored, dict) or not isinstance(stored.get("engine"), dict):
        return False
    engine, now = stored["engine"], config.get("engine") or {}
    if engine.get("decoding") is None or now.get("decoding") is None or engine["decoding"] == now["decoding"]:
        return False
    return {**stored, "engine": {**engine, "decoding": now["decoding"]}} == config


_PROMPT_SETTINGS = {"termbases", "max_hints", "examples", "shots"}
"""`TranslatorConfig` fields that only change what goes into a prompt (`TranslatorConfig.prompt_settings`)."""


def can_reuse(baseline: SystemSpec, spec: SystemSpec) -> bool:
    """Whether `spec` may take `baseline`'s row of a segment for which it sends exactly the baseline's requests
    (`Translator.requests_for`): both run one engine spec in the deterministic mode, where a result is a function
    of its request alone, through the same pipeline, differing at most in prompt settings (term bases,
    examples: the quality levers whose prompts equal the default's wherever nothing is retrieved)."""
    if spec.kind != "engine" or baseline.kind != "engine" or spec.name == baseline.name:
        return False
    engine = spec.engine_spec().resolved()
    if not engine.deterministic or engine != baseline.engine_spec().resolved():
        return False
    if (spec.mode, spec.profile) != (baseline.mode, baseline.profile):
        return False
    other = {key: value for key, value in spec.levers.items() if key not in _PROMPT_SETTINGS}
    return other == {key: value for key, value in baseline.levers.items() if key not in _PROMPT_SETTINGS}


def translate_missing(
    spec: SystemSpec,
    translator: Translator,
    segments: list[Segment],
    cache_path: Path,
    on_result: Callable[[int], None] | None = None,
    reuse: Callable[[Segment], dict | None] | None = None,
) -> Iterator[dict]:
    """Translate the segments not yet in the cache, appending each result as it comes; yields the rows.

    A failed row (`status: failed`) is not done: the next run takes it out of the cache and tries again, up to
    `jsonl.MAX_ATTEMPTS` in all; after that it stays failed and is scored as an empty hypothesis.

    `reuse` gives a ready row for a segment (a baseline's, see `can_reuse`) or None; such rows are written first,
    marked `reused_from`, and have no `seconds`.

    Each row records `seconds`: the wall time since the previous row of this run (the first: since the loop
    began, the model already loaded). A run's rows sum to its translation time, so the time per segment of a
    system survives runs resumed in parts."""
    settings = system_settings(spec)
    with JSONLWriter(cache_path, drop=retry_pending) as writer:  # locked before the cache is read
        done = read_cache(cache_path, segments, prompt_version(spec), settings)
        todo = [s for s in segments if s.id not in done]
        if reuse is not None:
            left = []
            for segment in todo:
                row = reuse(segment)
                if row is None:
                    left.append(segment)
                    continue
                row = {**row, KEY_FIELD: segment_key(segment, settings), SETTINGS_FIELD: settings}
                writer.write(row)
                if on_result:
                    on_result(1)
                yield row
            todo = left
        by_id = {s.id: s for s in todo}
        items = (Item(s.id, s.source, s.tgt, s.src) for s in todo)
        last = time.perf_counter()
        for result in translator.translate(items):
            now = time.perf_counter()
            row = stamp_attempts({**result.to_dict(), "seconds": round(now - last, 3)}, writer.dropped)
            row[KEY_FIELD], row[SETTINGS_FIELD] = segment_key(by_id[result.id], settings), settings
            last = now
            writer.write(row)
            if on_result:
                on_result(1)
            yield row


class EnginePool:
    """Engines shared by systems with the same engine spec (`EngineSpec.key()`: default and plain share one)."""

    def __init__(self, prebuilt: dict[str, Engine] | None = None) -> None:
        self.prebuilt = prebuilt or {}
        self._engines: dict[str, Engine] = {}

    def get(self, spec: SystemSpec) -> Engine:
        if spec.name in self.prebuilt:
            return self.prebuilt[spec.name]
        engine_spec = spec.engine_spec()
        key = engine_spec.key()
        if key not in self._engines:
            self._engines[key] = create_engine(engine_spec)
        return self._engines[key]

    def shared(self, a: SystemSpec, b: SystemSpec) -> bool:
        """Whether systems `a` and `b` run on one engine (prebuilt ones: the same object)."""
        if a.name in self.prebuilt or b.name in self.prebuilt:
            return self.prebuilt.get(a.name) is self.prebuilt.get(b.name)
        return a.engine_spec().key() == b.engine_spec().key()

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


def translator_for(spec: SystemSpec, engine: Engine) -> Translator:
    return Translator(engine, TranslatorConfig(profile=spec.profile, mode=spec.mode, **spec.levers))  # type: ignore[arg-type]


def with_parallel(spec: SystemSpec, parallel: int | None) -> SystemSpec:
    """The system with `EngineSpec.parallel` = `parallel`, unless it is an outputs system or its spec already
    sets parallelism (``parallel=`` or the engine's own option, e.g. ``n_parallel=``)."""
    if not parallel or spec.kind != "engine" or spec.engine is None or spec.engine.parallel is not None:
        return spec
    resolved = spec.engine.resolved()
    assert resolved.kind is not None
    if engine_class(resolved.kind).spec_fields.get("parallel") in {None, *spec.engine.options}:
        return spec
    try:
        engine = validate_config(EngineSpec, {**spec.engine.model_dump(), "parallel": parallel}, "--parallel")
    except ConfigError as exc:
        raise SystemSpecError(str(exc)) from None
    return replace(spec, engine=engine)


def with_mode(spec: SystemSpec, deterministic: bool | None) -> SystemSpec:
    """An engine system in `redtrans bench`'s mode (`engines.spec.with_default_mode`): deterministic by default
    for engines that can give it unless the system sets a parallelism; `deterministic` True/False forces it."""
    if spec.kind != "engine" or spec.engine is None:
        return spec
    try:
        return replace(spec, engine=with_default_mode(spec.engine, deterministic))
    except ConfigError as exc:
        raise SystemSpecError(f"system {spec.name!r}: {exc}") from None
