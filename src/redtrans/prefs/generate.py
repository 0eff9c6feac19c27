"""`prefs generate`: two candidate translations y₁, y₂ of each source post, with provenance.

The candidates come from two systems (two `EngineSpec`s, e.g. the base and the SFT model) or from two
seeded samples of one (temperature > 0). Both go through the `Translator`, so a candidate is exactly what
the system would serve. Rows are written a batch at a time, once both candidates of a source exist; a source
whose candidate failed (an engine error, an empty answer) is written with ``status: "failed"`` and is
retried by the next run, which skips every source that succeeded *for its resume key* (`redtrans.resume`:
its text, languages and reference, and the systems' settings): a changed source is generated again and its
new row supersedes the old one; a file made with other settings for every row is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from redtrans import prompts
from redtrans.engines.base import Engine, GenRequest, GenResult
from redtrans.engines.spec import create_engine
from redtrans.errors import EngineError, InputError, RedtransError, RowsFailedError
from redtrans.jsonl import JSONLWriter
from redtrans.prefs.config import GenerateConfig
from redtrans.prefs.rows import Source, latest_rows, read_sources
from redtrans.resume import KEY_FIELD, SETTINGS_FIELD, check_settings, resume_key, settings_digest, translation_settings
from redtrans.translator import ENGINE_ERROR, Item, Result, Translator, TranslatorConfig


class SampledEngine(Engine):
    """An engine whose requests all carry one temperature and seed (two of them = two samples of one model)."""

    def __init__(self, inner: Engine, temperature: float, seed: int | None) -> None:
        self.inner, self.temperature, self.seed = inner, temperature, seed
        self.name, self.model, self.chat = inner.name, inner.model, inner.chat
        self.parallelism = inner.parallelism
        self.supports_grammar, self.supports_submit = inner.supports_grammar, inner.supports_submit

    def _set(self, request: GenRequest) -> GenRequest:
        return dataclasses.replace(request, temperature=self.temperature, seed=self.seed)

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        return self.inner.generate([self._set(r) for r in requests])

    def submit(self, request: GenRequest, ahead: bool = False) -> Future[GenResult]:
        return self.inner.submit(self._set(request), ahead=ahead)


@dataclasses.dataclass
class GenerateReport:
    written: int = 0
    failed: int = 0
    skipped: int = 0
    total: int = 0


def _candidate(result: Result | None, label: str, seed: int | None, temperature: float) -> dict[str, Any]:
    return {
        "text": result.translation if result else "",
        "system": label,
        "model": result.model if result else "",
        "seed": seed,
        "temperature": temperature,
        "flags": list(result.flags) if result else [],
    }


def _failure(result: Result | None) -> str | None:
    if result is None:
        return "no result"
    if not result.ok:
        return result.error or "failed"
    if ENGINE_ERROR in result.flags:
        return "engine error"
    if not result.translation.strip():
        return "empty translation"
    return None


def generate_settings(config: GenerateConfig) -> str:
    """The settings digest of a candidates file (`redtrans.resume`): both systems (engine spec and pipeline),
    the sampling temperature and seeds, and the default languages."""
    specs = config.systems if len(config.systems) == 2 else [config.systems[0], config.systems[0]]
    tcfg = TranslatorConfig(profile=config.profile)
    return settings_digest({"systems": [translation_settings(tcfg, spec) for spec in specs],
                            "sampling": config.sampling.model_dump(mode="json"), "src": config.src,
                            "tgt": config.tgt})  # fmt: skip


def source_key(source: Source, settings: str) -> str:
    """A source's resume key: its id, text, languages and reference under the file's settings."""
    content = {"text": source.text, "src": source.src, "tgt": source.tgt, "reference": source.reference}
    return resume_key(source.id, content, settings)


def run_generate(
    config: GenerateConfig,
    on_progress: Callable[[int, int], None] | None = None,
    engines: list[Engine] | None = None,
) -> GenerateReport:
    """Write the candidates file; raises RowsFailedError (after writing everything) when rows failed.
    `engines` replaces building them from `config.systems` (same order; a test or a caller holding models)."""
    settings = generate_settings(config)
    previous = latest_rows(config.output)
    check_settings(config.output, [row.get(SETTINGS_FIELD) for row in previous.values()], settings,
                   "candidates of other systems or settings cannot be mixed; use another --output")  # fmt: skip
    sources = list(read_sources(config.input, config.reference, config.src, config.tgt, config.limit))
    if not sources:
        raise InputError("has no rows: nothing to generate", path=config.input)
    keys = {s.id: source_key(s, settings) for s in sources}
    # Done for its resume key: a source whose text, languages or reference changed is generated again.
    done = {
        k for k, row in previous.items() if row.get("status", "ok") != "failed" and row.get(KEY_FIELD) == keys.get(k)
    }
    todo = [s for s in sources if s.id not in done]
    report = GenerateReport(skipped=len(sources) - len(todo), total=len(sources))
    if on_progress:
        on_progress(report.skipped, len(sources))
    if not todo:
        return report
    specs = config.systems if len(config.systems) == 2 else [config.systems[0], config.systems[0]]
    built: dict[str, Engine] = {}
    owned: list[Engine] = []
    try:
        if engines is None:
            for spec in specs:
                if spec.key() not in built:
                    built[spec.key()] = create_engine(spec)
                    owned.append(built[spec.key()])
            bases = [built[spec.key()] for spec in specs]
        else:
            bases = engines if len(engines) == 2 else [engines[0], engines[0]]
        sampled = config.sampling.temperature > 0
        seeds: list[int | None] = list(config.sampling.seeds) if sampled else [None, None]
        temperature = config.sampling.temperature
        translators = [
            Translator(SampledEngine(base, temperature, seed) if sampled else base,
                       TranslatorConfig(profile=config.profile))
            for base, seed in zip(bases, seeds, strict=True)
        ]  # fmt: skip
        labels = [spec.label() for spec in specs]
        with JSONLWriter(config.output) as writer:
            for start in range(0, len(todo), config.batch_size):
                batch = todo[start : start + config.batch_size]
                _write_batch(writer, batch, translators, labels, seeds, temperature, report, keys, settings)
                if on_progress:
                    on_progress(report.skipped + report.written + report.failed, len(sources))
    finally:
        for engine in owned:
            engine.close()
    if report.failed:
        raise RowsFailedError(report.failed, len(sources), config.output)
    return report


def _translate_all(translator: Translator, batch: list[Source]) -> tuple[dict[str, Result], str | None]:
    items = [Item(s.id, s.text, s.tgt, s.src) for s in batch]
    try:
        return {r.id: r for r in translator.translate(items)}, None
    except (EngineError, RedtransError) as exc:
        return {}, str(exc)


def _write_batch(
    writer: JSONLWriter,
    batch: list[Source],
    translators: list[Translator],
    labels: list[str],
    seeds: list[int | None],
    temperature: float,
    report: GenerateReport,
    keys: dict[str, str],
    settings: str,
) -> None:
    bad = [s for s in batch if s.problem is not None]
    batch = [s for s in batch if s.problem is None]
    for source in bad:  # fails on its own text: no engine call (the bad-input contract, `redtrans.limits`)
        assert source.problem is not None
        writer.write({"id": source.id, "source": source.text, "src": source.src, "tgt": source.tgt,
                      "candidates": [], "prompt_version": prompts.PROMPT_VERSION, "status": "failed",
                      "error": source.problem.message, "reason": source.problem.reason, KEY_FIELD: keys[source.id],
                      SETTINGS_FIELD: settings})  # fmt: skip
        report.failed += 1
    outputs = [_translate_all(t, batch) for t in translators]
    for source in batch:
        results = [out[0].get(source.id) for out in outputs]
        first = next((r for r in results if r is not None), None)
        src = first.src if first else source.src
        tgt = first.tgt if first else source.tgt
        row: dict[str, Any] = {"id": source.id, "source": source.text, "src": src, "tgt": tgt}
        if source.reference is not None:
            row["reference"] = source.reference
        row["candidates"] = [
            _candidate(r, label, seed, temperature) for r, label, seed in zip(results, labels, seeds, strict=True)
        ]
        row["prompt_version"] = prompts.PROMPT_VERSION
        errors = [
            f"candidate {i + 1}: {outputs[i][1] or _failure(r)}"
            for i, r in enumerate(results)
            if outputs[i][1] or _failure(r)
        ]
        if errors:
            row.update(status="failed", error="; ".join(errors))
            report.failed += 1
        else:
            row["status"] = "ok"
            report.written += 1
        row[KEY_FIELD], row[SETTINGS_FIELD] = keys[source.id], settings
        writer.write(row)
