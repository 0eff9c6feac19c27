"""Systems under test: engine configurations (run through the translator) or files of pre-computed outputs.

Spec strings (``--system``, repeatable):

- ``default`` — the embedded ``qwen2.5-coder-1.5b`` through the full SNS pipeline (mode ``sns``);
- ``plain`` — the same model, one plain prompt per post (``TranslatorConfig(mode="plain")``): the baseline;
- ``name=mine,engine=openai,model=http://host/v1,served_model=x,mode=sns,profile=rednote,parallel=8`` — any
  engine configuration (keys: name, engine, model, mode, profile, parallel, served_model, base_model);
- ``outputs:path.jsonl`` (or ``name=x,outputs=path``) — published hypotheses: JSONL rows with ``id`` and
  ``translation`` (or ``hypothesis``), or a plain-text file with one line per segment of the whole suite.

Engine systems cache their hypotheses as append-only JSONL (``translations`` rows, keyed by segment id) so a
killed run resumes where it stopped; a cache is bound to its system's configuration.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from redtrans import prompts
from redtrans.bench.suites import Segment
from redtrans.engines import Engine, EngineSpec, create_engine
from redtrans.engines.models import DEFAULT_MODEL
from redtrans.errors import ConfigError
from redtrans.jsonl import JSONLWriter, read_jsonl, repair_tail
from redtrans.translator import Item, Translator, TranslatorConfig

_KEYS = {"name", "engine", "model", "mode", "profile", "parallel", "served_model", "base_model", "outputs"}


class SystemSpecError(ConfigError):
    """A system spec that cannot be parsed or run."""


@dataclass
class SystemSpec:
    """One system under test."""

    name: str
    """Label in reports and the cache file name."""
    kind: str = "engine"
    """engine = translate with an engine through the translator; outputs = read pre-computed hypotheses."""
    engine: str | None = None
    """llamacpp | openai | hf; None = inferred from `model` (see `redtrans.engines.create_engine`)."""
    model: str | None = DEFAULT_MODEL
    """Registry name, .gguf path, model/adapter directory or http(s)://…/v1 endpoint(s)."""
    mode: str = "sns"
    """sns = the full pipeline; plain = one plain prompt per post (a baseline)."""
    profile: str = "rednote"
    """Platform markup profile given to the translator (and used for fidelity)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Extra engine config fields (n_parallel / concurrency, served_model, base_model)."""
    outputs: str | None = None
    """kind=outputs: the hypotheses file."""

    def config(self) -> dict[str, Any]:
        data = asdict(self)
        if self.kind == "outputs":
            return {"name": self.name, "kind": "outputs", "outputs": self.outputs}
        data.pop("outputs")
        return data

    def engine_key(self) -> tuple:
        return (self.engine, self.model, tuple(sorted(self.options.items())))


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "system"


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
        return SystemSpec(Path(path).stem, kind="outputs", model=None, outputs=path)
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
        if key not in _KEYS:
            raise SystemSpecError(f"unknown key {key!r} in system {spec!r}: use {', '.join(sorted(_KEYS))}")
        values[key] = value
    if "outputs" in values:
        path = values["outputs"]
        return SystemSpec(values.get("name") or Path(path).stem, kind="outputs", model=None, outputs=path)
    mode = values.get("mode", "sns")
    if mode not in {"sns", "plain"}:
        raise SystemSpecError(f"mode must be sns or plain, not {mode!r}")
    options: dict[str, Any] = {}
    if "parallel" in values:
        kind = values.get("engine") or ("openai" if values.get("model", "").startswith("http") else "llamacpp")
        options["concurrency" if kind == "openai" else "batch_size" if kind == "hf" else "n_parallel"] = int(
            values["parallel"]
        )
    for key in ("served_model", "base_model"):
        if key in values:
            options[key] = values[key]
    model = values.get("model", DEFAULT_MODEL)
    name = values.get("name") or f"{Path(model).name}-{mode}"
    return SystemSpec(name, "engine", values.get("engine"), model, mode, values.get("profile", "rednote"), options)


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
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    if len(lines) != len(all_ids):
        raise SystemSpecError(
            f"{path} has {len(lines)} lines but the suite has {len(all_ids)} segments: a plain-text outputs file "
            "must hold one hypothesis per segment of the whole suite, in order (or use JSONL with ids)"
        )
    return dict(zip(all_ids, lines, strict=True))


# -- engine systems (cached) ----------------------------------------------------------------------------
def read_cache(path: Path, segments: list[Segment], version: str | None = None) -> dict[str, dict]:
    """Cached rows for `segments`: the last row per id whose source text matches the segment's (and, when
    given, whose prompt version is `version`: a changed prompt makes old hypotheses stale)."""
    if not path.is_file():
        return {}
    repair_tail(path)
    wanted = {s.id: s.source for s in segments}
    rows: dict[str, dict] = {}
    for _, row in read_jsonl(path):
        key = str(row.get("id"))
        fresh = version is None or row.get("prompt_version") == version
        if key in wanted and row.get("text") == wanted[key] and fresh:
            rows[key] = row
    return rows


def prompt_version(spec: SystemSpec) -> str:
    """The prompt version the translator records for this system's results."""
    return "plain" if spec.mode == "plain" else prompts.PROMPT_VERSION


def check_cache_config(config_path: Path, config: dict[str, Any]) -> None:
    """Bind a cache to its system's configuration: refuse to mix hypotheses of two configurations."""
    if config_path.is_file():
        stored = json.loads(config_path.read_text(encoding="utf-8"))
        if stored != config:
            raise SystemSpecError(
                f"the cached hypotheses in {config_path.parent} for system {config['name']!r} were made with "
                f"{stored}, not {config}: give the system another name or use another --out folder"
            )
    else:
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def translate_missing(
    spec: SystemSpec,
    translator: Translator,
    segments: list[Segment],
    cache_path: Path,
    on_result: Callable[[int], None] | None = None,
) -> Iterator[dict]:
    """Translate the segments not yet in the cache, appending each result as it comes; yields the rows."""
    done = read_cache(cache_path, segments, prompt_version(spec))
    todo = [s for s in segments if s.id not in done]
    items = (Item(s.id, s.source, s.tgt, s.src) for s in todo)
    with JSONLWriter(cache_path) as writer:
        for result in translator.translate(items):
            row = result.to_dict()
            writer.write(row)
            if on_result:
                on_result(1)
            yield row


class EnginePool:
    """Engines shared by systems with the same engine configuration (default and plain share one model)."""

    def __init__(self, prebuilt: dict[str, Engine] | None = None) -> None:
        self.prebuilt = prebuilt or {}
        self._engines: dict[tuple, Engine] = {}

    def get(self, spec: SystemSpec) -> Engine:
        if spec.name in self.prebuilt:
            return self.prebuilt[spec.name]
        key = spec.engine_key()
        if key not in self._engines:
            options = dict(spec.options)
            served_model = options.pop("served_model", None)
            self._engines[key] = create_engine(
                EngineSpec(kind=spec.engine, model=spec.model, served_model=served_model, options=options)
            )
        return self._engines[key]

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


def translator_for(spec: SystemSpec, engine: Engine) -> Translator:
    return Translator(engine, TranslatorConfig(profile=spec.profile, mode=spec.mode))  # type: ignore[arg-type]


def with_parallel(spec: SystemSpec, parallel: int | None) -> SystemSpec:
    """Give an engine system `parallel` slots / concurrent requests unless its spec already sets them."""
    if not parallel or spec.kind != "engine" or {"n_parallel", "concurrency", "batch_size"} & set(spec.options):
        return spec
    is_openai = spec.engine == "openai" or (spec.engine is None and (spec.model or "").startswith("http"))
    is_hf = spec.engine == "hf"
    key = "concurrency" if is_openai else "batch_size" if is_hf else "n_parallel"
    spec.options = {**spec.options, key: parallel}
    return spec
