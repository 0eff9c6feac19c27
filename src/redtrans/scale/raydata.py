"""Translate and sample as Ray Data jobs: rows through `map_batches` on an actor pool (issue 34).

Each actor builds one `Translator` and its engine once, from the same `EngineSpec` and `TranslatorConfig` the
single-process stage uses (for sampling: both models' `RoundTripper`), so every row is made by the one code
path. The same job runs on a local Ray (``--ray``: a few background processes on this machine, stopped when the
job ends) and unchanged on a cluster (``--ray auto`` inside it, ``--ray ray://head:10001`` from outside).

**Sizing.** An actor asks for `cpus` CPUs (``--ray-cpus``; llamacpp in the throughput mode gets as many
``n_threads``) and `gpus` GPUs (``--ray-gpus``, the hf engine). The pool is sized so that
``actors × cpus ≤ 0.9 × the cluster's CPUs``: a tenth stays free for Ray Data's own read and write tasks and the
driver (`pool_size`). An openai engine's concurrency (``--parallel``) is the fleet's total, split across
actors.

**translate** (`translate_ray`) writes a folder of Parquet shards (`scale.shards`): the driver plans (stages
rows by a hash of their resume key), the dataset is the list of shards left to do, and an actor translates
and commits a whole shard. A killed actor is restarted by Ray and its shard redone (nothing of it was
committed); a killed driver is rerun with the same folder and redoes the shards without a committed file and
the failed rows of committed shards within the attempt cap (`jsonl.MAX_ATTEMPTS`).

**sample** (`roundtrips_ray`): the rows left to round-trip are staged as Parquet, read as a Ray Dataset and
round-tripped and scored (ΔBLEU) per row on the pool; the driver appends the scored rows to the same journal
the single-process run writes. The global steps (bucket counts, the stratified draw keyed by
``blake2b(seed, id)``) then run over the whole journal as before: the drawn ids are the single-process run's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import regex

from redtrans import errors, translate_file
from redtrans.engines.spec import EngineSpec, create_engine
from redtrans.errors import ConfigError, EngineError, RedtransError
from redtrans.resume import translation_settings
from redtrans.scale import shards as sh
from redtrans.translate_file import FileFields
from redtrans.translator import Translator, TranslatorConfig

if TYPE_CHECKING:
    from redtrans.sampling.config import SampleConfig
    from redtrans.sampling.roundtrip import RoundTripSummary

LOCAL = "local"
"""``--ray`` without an address: start a local Ray for the job (stopped when it ends)."""
RESERVED_SHARE = 0.1
"""Share of the cluster's CPUs no actor takes: Ray Data's read/write tasks and the driver run there."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray job runs."""

    address: str = LOCAL
    """``local`` (start a local Ray), ``auto`` (the cluster this machine is in), ``host:6379``, ``ray://host:10001``."""
    actors: int | None = None
    """Actors in the pool; None = as many as `cpus` fit in 90 % of the cluster's CPUs."""
    cpus: float | None = None
    """CPUs each actor asks for; None = 1 (fewer when the actors asked for would not leave 10 % free)."""
    gpus: float = 0.0
    """GPUs each actor asks for (the hf engine on GPU nodes)."""
    shard_rows: int = sh.SHARD_ROWS
    """Rows per shard of a translate output folder (the first run's choice is kept)."""


def _ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise ConfigError("--ray needs Ray Data: pip install 'redtrans[ray]'") from None
    return ray


@dataclass
class Session:
    """A connection to a Ray cluster; `close` stops a local Ray this session started."""

    cpus: float
    started: bool

    def close(self) -> None:
        if self.started:
            _ray().shutdown()


def connect(address: str = LOCAL) -> Session:
    """Connect to Ray (or start a local one); Ray's own logs stay at warnings, its progress bars on."""
    ray = _ray()
    started = False
    if not ray.is_initialized():
        started = True
        kwargs: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": True, "include_dashboard": False}
        if address == LOCAL:
            # The workers import redtrans the way this process did (a source tree on PYTHONPATH included).
            ray.init(**kwargs, runtime_env={"env_vars": _worker_env()})
        else:
            try:
                ray.init(address=address, logging_level="WARNING", log_to_driver=True)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise ConfigError(f"cannot connect to Ray at {address!r}: {exc}") from None
    data = __import__("ray.data").data
    context = data.DataContext.get_current()
    context.execution_options.preserve_order = True  # journals and shards in input order, as single-process
    return Session(float(ray.cluster_resources().get("CPU", 1.0)), started)


def _worker_env() -> dict[str, str]:
    return {k: v for k in ("PYTHONPATH", "REDTRANS_HOME") if (v := os.environ.get(k))}


def pool_size(cluster_cpus: float, actors: int | None, cpus: float | None) -> tuple[int, float]:
    """(actors, CPUs per actor) with ``actors × cpus ≤ 0.9 × cluster_cpus`` (see the module docstring)."""
    room = cluster_cpus * (1 - RESERVED_SHARE)
    if actors is None:
        per = cpus or 1.0
        actors = max(1, math.floor(room / per + 1e-9))
        return actors, min(per, room / actors)
    if actors < 1:
        raise ConfigError(f"--ray-actors must be at least 1, not {actors}")
    per = cpus or 1.0
    return actors, round(min(per, room / actors), 3)


def actor_spec(spec: EngineSpec, actors: int, cpus: float) -> EngineSpec:
    """The engine spec each actor builds: llamacpp with ``n_threads`` = its CPUs in the throughput mode, and as
    many single-thread contexts as its CPUs in the deterministic mode (whose answers do not depend on the count,
    so they match a single-process run's), openai with the fleet's concurrency split across the actors."""
    resolved = spec.resolved()
    options = dict(resolved.options)
    update: dict[str, Any] = {}
    if resolved.kind == "llamacpp" and not resolved.deterministic and "n_threads" not in options:
        options["n_threads"] = max(1, math.ceil(cpus))
        update["options"] = options
    if resolved.kind == "llamacpp" and resolved.deterministic and resolved.asked_parallelism() is None:
        # Single-thread contexts whose answers do not depend on how many run: as many as the actor has CPUs
        # (the engine's default, one per core of the node, would oversubscribe a node of several actors).
        update["parallel"] = max(1, math.ceil(cpus))
    if resolved.kind == "openai" and resolved.parallel:
        update["parallel"] = max(1, resolved.parallel // actors)
    return resolved.model_copy(update=update)


def job_settings(spec: EngineSpec, config: TranslatorConfig, src: str | None, tgt: str | None) -> str:
    """The settings digest of a translate job, as a single-process `translate` computes it
    (`translate_file.job_settings` of `resume.translation_settings`): one resume key for a row either way."""
    return translate_file.job_settings(translation_settings(config, spec), src, tgt)


def _unwrap(exc: BaseException) -> BaseException:
    """Our own error when an actor raised one (Ray wraps it, once or twice); else the exception itself."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        found = stack.pop()
        if found is None or id(found) in seen:
            continue
        seen.add(id(found))
        if isinstance(found, RedtransError) and type(found).__module__.startswith("redtrans"):
            return found
        stack += [getattr(found, "cause", None), found.__cause__, found.__context__]
    # A cause that did not survive pickling is still named in Ray's text: `redtrans.errors.ModelError: …`.
    named = regex.search(r"redtrans\.errors\.(\w+): (.+)", str(exc))
    cls = getattr(errors, named.group(1), None) if named else None
    if named and isinstance(cls, type) and issubclass(cls, RedtransError):
        return cls(named.group(2).strip())
    return exc


# -- translate ------------------------------------------------------------------------------------------------
class ShardTranslator:
    """A Ray Data actor: one `Translator` and its engine, built once; each batch names shards to do."""

    def __init__(
        self,
        spec: EngineSpec,
        config: TranslatorConfig,
        folder: str,
        settings: str,
        retry_failed: bool = False,
        layout: sh.Layout | None = None,
    ) -> None:
        self.engine = create_engine(spec)
        self.translator = Translator(self.engine, config)
        self.folder, self.settings, self.retry_failed, self.layout = Path(folder), settings, retry_failed, layout

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"summary": []}
        for shard in batch["shard"]:
            summary = sh.translate_shard(self.translator, self.folder, int(shard), self.settings, self.retry_failed,
                                         self.layout)  # fmt: skip
            out["summary"].append(json.dumps(dataclasses.asdict(summary)))
        return out


@dataclass
class JobSummary:
    """What a translate job did, for the final line (`summary_line`)."""

    total: int
    skipped: int  # rows of shards already done before this run
    written: int  # rows translated by this run
    reused: int  # rows of redone shards kept from their committed file
    flagged: int
    failed: int
    failed_ids: list[str]
    shards: int
    shards_done: int  # shards this run did
    actors: int
    cpus_per_actor: float
    seconds: float
    manifest: Path | None = None

    @property
    def rows_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def line(self, output: str | Path) -> str:
        return (
            f"translated {self.written} rows on {self.actors} Ray actors × {self.cpus_per_actor:g} CPU "
            f"({self.skipped + self.reused} already done, {self.flagged} flagged, {self.failed} failed; "
            f"{self.shards_done} of {self.shards} shards, {self.rows_per_s:.1f} rows/s) → {output}"
        )


def translate_ray(
    spec: EngineSpec,
    config: TranslatorConfig,
    input_path: str | Path,
    output: str | Path,
    options: RayOptions,
    fields: FileFields | None = None,
    src: str | None = None,
    tgt: str | None = None,
    total: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    *,
    overwrite: bool = False,
    retry_failed: bool = False,
    keep: str | Sequence[str] = "all",
    columns: Sequence[str] | None = None,
) -> JobSummary:
    """Translate `input_path` into the folder `output` on a Ray actor pool (see the module docstring).
    `total` / `columns`: the row count and columns from an earlier `translate_file.validate_input` (which this
    does otherwise). `overwrite` starts the folder over, `retry_failed` retries every failed row with its count
    reset, `keep` chooses the input columns rows keep (`translate_file.plan_columns`), as `translate_file`'s."""
    from redtrans.translate_file import plan_columns, validate_input

    started = time.perf_counter()
    fields = fields or FileFields()
    sh.check_folder(Path(output))
    if total is None or columns is None:
        seen: dict[str, None] = {}
        total = validate_input(input_path, fields, seen).rows
        columns = list(seen)
    kept = plan_columns(columns, fields, keep)
    settings = job_settings(spec, config, src, tgt)
    lock = sh.lock_folder(Path(output))  # one driver per folder; released by the OS when this process dies
    try:
        session = connect(options.address)
    except BaseException:
        lock.close()
        raise
    try:
        actors, cpus = pool_size(session.cpus, options.actors, options.cpus)
        plan = sh.plan_translate(input_path, output, fields, settings, total, src, tgt, options.shard_rows,
                                 min_shards=2 * actors, overwrite=overwrite, columns=kept)  # fmt: skip
        todo, done = sh.pending_shards(plan, retry_failed)
        summaries = {s.shard: s for s in done}
        skipped = sum(s.rows for s in done)
        if on_progress:
            on_progress(skipped, plan.total)
        if todo:
            ray = _ray()
            dataset = ray.data.from_items([{"shard": s} for s in todo], override_num_blocks=len(todo))
            results = dataset.map_batches(
                ShardTranslator,
                fn_constructor_kwargs={
                    "spec": actor_spec(spec, actors, cpus),
                    "config": config,
                    "folder": str(plan.folder),
                    "settings": settings,
                    "retry_failed": retry_failed,
                    "layout": plan.layout,
                },  # fmt: skip
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=cpus,
                num_gpus=options.gpus or None,
            )
            done_rows = skipped
            try:
                for row in results.iter_rows():
                    summary = sh.ShardSummary(**json.loads(row["summary"]))
                    summaries[summary.shard] = summary
                    done_rows += summary.rows
                    if on_progress:
                        on_progress(done_rows, plan.total)
            except Exception as exc:
                raise _unwrap(exc) from None
        manifest = sh.finish(plan)
    finally:
        session.close()
        lock.close()
    totals = sh.counts(summaries)
    failed_ids = [i for s in sorted(summaries.values(), key=lambda s: s.shard) for i in s.failed_ids]
    return JobSummary(
        total=plan.total, skipped=skipped, written=totals["written"], reused=totals["reused"] - skipped,
        flagged=totals["flagged"], failed=totals["failed"], failed_ids=failed_ids, shards=plan.shards,
        shards_done=len(todo), actors=actors, cpus_per_actor=cpus, seconds=time.perf_counter() - started,
        manifest=manifest,
    )  # fmt: skip


# -- bench ----------------------------------------------------------------------------------------------------
class ItemTranslator:
    """A Ray Data actor: one `Translator` and its engine; a batch of items in, their results (JSON) out."""

    def __init__(self, spec: EngineSpec, config: TranslatorConfig) -> None:
        self.translator = Translator(create_engine(spec), config)

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        from redtrans.translator import Item

        items = [Item(**row) for row in batch.to_pylist()]  # a pyarrow batch: None stays None (not NaN)
        return {"result": [json.dumps(dataclasses.asdict(r)) for r in self.translator.translate(items)]}


def system_config(spec: Any) -> TranslatorConfig:
    """The `TranslatorConfig` of a bench system (`bench.systems.translator_for`'s, without an engine)."""
    return TranslatorConfig(profile=spec.profile, mode=spec.mode, **spec.levers)


class PoolTranslator:
    """`Translator.translate` on a Ray actor pool: what ``bench --ray`` translates a system's segments with. The
    pool is started for each call and gone after it (a system's segments are one call)."""

    def __init__(self, spec: EngineSpec, config: TranslatorConfig, options: RayOptions) -> None:
        self.spec, self.config, self.options = spec, config, options
        self.model = spec.label()
        self.engine_seconds = 0.0

    def translate(self, items: Any) -> Iterator[Any]:
        from redtrans.translator import Result

        rows = [dataclasses.asdict(item) for item in items]
        if not rows:
            return
        session = connect(self.options.address)
        try:
            ray = _ray()
            actors, cpus = pool_size(session.cpus, self.options.actors, self.options.cpus)
            width = self.config.batch_size or 4 * (self.spec.asked_parallelism() or 1)
            blocks = max(1, min(len(rows) // width, 8 * actors))
            results = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
                ItemTranslator,
                fn_constructor_kwargs={"spec": actor_spec(self.spec, actors, cpus), "config": self.config},
                batch_size=width,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=cpus,
                num_gpus=self.options.gpus or None,
            )
            try:
                for row in results.iter_rows():
                    yield Result(**json.loads(row["result"]))
            except Exception as exc:
                raise _unwrap(exc) from None
        finally:
            session.close()


# -- sample ---------------------------------------------------------------------------------------------------
class RoundTripActor:
    """A Ray Data actor: both models' `RoundTripper` (engines built once). A batch names staged files of source
    rows; out come their journal rows (JSON text; an empty string for a row whose round trip hit an engine
    error), window by window as the single-process run makes them."""

    def __init__(self, config: SampleConfig, width: int, settings: str) -> None:
        from redtrans.sampling.buckets import Buckets
        from redtrans.sampling.roundtrip import MODELS, RoundTripper, build_engine

        self.config, self.width, self.settings = config, width, settings
        self.engines = {m: build_engine(getattr(config, m)) for m in MODELS}
        self.tripper = RoundTripper(self.engines, config)
        self.buckets = Buckets(config.edges, config.weights, config.exclude)
        self.models = {m: e.model for m, e in self.engines.items()}

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        import pyarrow.parquet as pq

        from redtrans.sampling.inputs import SourceRow

        out: list[str] = []
        for path in batch["path"]:
            rows = [SourceRow(**row) for row in pq.read_table(str(path)).to_pylist()]
            for start in range(0, len(rows), self.width):
                out.extend(self._window(rows[start : start + self.width]))
        return {"row": out}

    def _window(self, rows: list[Any]) -> list[str]:
        from redtrans.sampling.roundtrip import MODELS, journal_row
        from redtrans.sampling.scoring import score_chunk

        legs = self.tripper.window(rows)
        ok = [i for i in range(len(rows)) if all(legs[m][i].error is None for m in MODELS)]
        if not ok:
            errors = sorted({str(legs[m][0].error) for m in MODELS if legs[m][0].error})
            raise EngineError(f"every row of a {len(rows)}-row window failed ({'; '.join(errors)})")
        jobs = [(rows[i].source, rows[i].src, legs["m1"][i].back, legs["m2"][i].back) for i in ok]
        scores = dict(zip(ok, score_chunk(jobs), strict=True))
        out: list[str] = []
        for i, row in enumerate(rows):
            if i not in scores:
                out.append("")
                continue
            row_legs = {m: legs[m][i] for m in MODELS}
            journaled = journal_row(row, row_legs, scores[i], self.buckets, self.models, self.settings)
            out.append(json.dumps(journaled, ensure_ascii=False))
        return out


def _stage_rows(rows: Iterator[Any], folder: Path, chunk_rows: int) -> list[str]:
    """Write source rows to Parquet files of `chunk_rows` (explicit string/int schema); their paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("corpus", pa.string()), ("line", pa.int64()), ("source", pa.string()),
                        ("src", pa.string()), ("tgt", pa.string()), ("reference", pa.string()),
                        ("source_id", pa.string())])  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    paths: list[str] = []
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        path = folder / f"rows-{len(paths):05d}.parquet"
        pq.write_table(pa.Table.from_pylist(chunk, schema=schema), path)
        paths.append(str(path))
        chunk.clear()

    for row in rows:
        chunk.append(dataclasses.asdict(row))
        if len(chunk) >= chunk_rows:
            flush()
    if chunk:
        flush()
    return paths


def roundtrips_ray(
    config: SampleConfig, options: RayOptions, on_progress: Callable[[int, int], None] | None = None
) -> RoundTripSummary:
    """`sampling.roundtrip.run_roundtrips` on a Ray actor pool: the same rows, the same journal rows (see the
    module docstring). Engines are built in the actors only."""
    from redtrans.jsonl import JSONLWriter
    from redtrans.resume import check_settings
    from redtrans.sampling.inputs import MixState, mix
    from redtrans.sampling.roundtrip import (
        MODELS,
        RoundTripSummary,
        _Rejects,
        key_prefix,
        open_corpora,
        read_journal_state,
        row_key,
        sample_settings,
    )

    started = time.perf_counter()
    corpora, row_quotas = open_corpora(config)
    sizes = {c.name: c.check() for c in corpora}
    journal = config.journal_path
    settings = sample_settings(config)
    done, journal_models, journal_settings = read_journal_state(journal, sizes)
    check_settings(journal, journal_settings, settings, "ΔBLEU from different settings cannot be mixed; use "
                   "another output_dir", rows=done.count + done.superseded)  # fmt: skip
    models: dict[str, str] = {}

    def check_models(row: dict[str, Any]) -> None:
        """The single-process run's check, on the models the actors report with their first row."""
        models.update(row["models"])
        if journal_models is not None and journal_models != models:
            raise ConfigError(
                f"{journal} was written by m1={journal_models.get('m1')}, m2={journal_models.get('m2')}, not by "
                f"m1={models['m1']}, m2={models['m2']}: ΔBLEU from different model pairs cannot be mixed "
                "(use another output_dir, or set m1.label / m2.label to match)"
            )

    total = sum(row_quotas)
    rejects = _Rejects(config.rejects_path, config.on_bad_row == "fail")
    state = MixState()
    skipped = changed = 0

    def left(row: Any) -> bool:
        """Whether `row` is left to do: not journaled, or journaled for another key (its text changed)."""
        nonlocal skipped, changed
        stored = done.stored(row)
        if stored and stored == key_prefix(row_key(row, settings)):
            skipped += 1
            return False
        changed += bool(stored)
        return True

    staging = config.out / ".ray-staging"
    width = config.batch_size or max(8, 4 * max(_parallel(getattr(config, m)) for m in MODELS))
    try:
        paths = _stage_rows(filter(left, mix(corpora, row_quotas, rejects, state)), staging, 4 * width)
    finally:
        rejects.close()
    written = failed = 0
    described: dict[str, dict[str, Any]] = {}
    session = connect(options.address) if paths else None
    try:
        if on_progress:
            on_progress(skipped, total)
        if session is not None:
            ray = _ray()
            actors, cpus = pool_size(session.cpus, options.actors, options.cpus)
            # The dataset names the staged files (no read tasks to schedule beside a pool that holds 90 % of the
            # CPUs); an actor reads its file and round-trips it window by window.
            dataset = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=len(paths))
            results = dataset.map_batches(
                RoundTripActor,
                fn_constructor_kwargs={"config": config, "width": width, "settings": settings},
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=cpus,
                num_gpus=options.gpus or None,
            )
            with JSONLWriter(journal) as writer:
                try:
                    for out in results.iter_rows():
                        if out["row"]:
                            row = json.loads(out["row"])
                            if not models:
                                check_models(row)
                            writer.write(row)
                            written += 1
                        else:
                            failed += 1
                        if on_progress and (written + failed) % 64 == 0:
                            on_progress(skipped + written + failed, total)
                except Exception as exc:
                    raise _unwrap(exc) from None
                if changed or done.superseded:
                    writer.compact()  # a redone row's new line supersedes its old one
            if on_progress:
                on_progress(skipped + written + failed, total)
        elif done.superseded:  # an earlier run killed after redoing a changed row: only the compaction is left
            with JSONLWriter(journal) as writer:
                writer.compact()
        for m in MODELS:  # described without loading a model in the driver
            described[m] = {"model": models.get(m), "engine": getattr(config, m).label()}
    finally:
        if session is not None:
            session.close()
        for old in staging.glob("*.parquet"):
            old.unlink()
        if staging.is_dir():
            staging.rmdir()
    short = {name: state.quota[name] - state.taken[name] for name in state.exhausted if state.quota.get(name)}
    return RoundTripSummary(
        total=total, skipped=skipped, written=written, failed=failed, changed=changed, rejected=rejects.count,
        rejected_by_corpus=rejects.by_corpus, taken=dict(state.taken), quota=dict(state.quota),
        short={k: v for k, v in short.items() if v > 0}, seconds=time.perf_counter() - started,
        engine_seconds={m: 0.0 for m in MODELS}, models=described,
    )  # fmt: skip


def _parallel(spec: EngineSpec) -> int:
    return spec.asked_parallelism() or 1
