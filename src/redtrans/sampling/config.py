"""Configuration of `redtrans sample`: corpora, the two models, buckets, the draw and the SFT export.

The models are `redtrans.config.StageConfig` (pydantic): every field is documented where it is declared, a
YAML file maps one-to-one onto them (see `examples/sample.yaml`), unknown fields and wrong types fail with
the field named, and command-line overrides use dotted keys (`m1.parallel=2`, `corpora.0.max_rows=40`),
read and merged by `redtrans.config`. Checks that involve several fields (edges against weights, corpus
names, src ≠ tgt, each model's engine options) live in `SampleConfig.validate`, which `run_sample` and the
CLI call before anything runs: fields stay assignable one at a time (``config.edges = …`` then
``config.weights = …``) without tripping over a half-made change.

Each model (`m1`, `m2`) is a `ModelSpec`: an `EngineSpec` (kind, model, parallel, served_model, options —
the same description every stage builds engines from) plus a provenance `label`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from redtrans.config import StageConfig, merge_overrides, parse_overrides, read_yaml_mapping, validate_config
from redtrans.engines.spec import EngineSpec
from redtrans.errors import ConfigError
from redtrans.languages import get_language

__all__ = ["ConfigError", "CorpusConfig", "ModelSpec", "SampleConfig", "cli_overrides", "load_config"]

DEFAULT_EDGES = [0.0, 0.1, 0.2, 0.4, 1.0]
DEFAULT_WEIGHTS = [1.0, 2.0, 3.0, 4.0]
DEFAULT_MODELS = {"m1": "qwen2.5-coder-1.5b", "m2": "gemma3-270m"}
SftFormat = Literal["messages", "prompt_completion"]
SFT_FORMATS: tuple[SftFormat, ...] = ("messages", "prompt_completion")


class CorpusConfig(StageConfig):
    """One input corpus and the direction it is translated in."""

    path: str
    """Source file: JSON Lines (one object a line) or plain text (one source sentence a line)."""
    src: str
    """Language of the sources (ISO 639-1). The round trip goes src → tgt → src."""
    tgt: str
    """The other language of the round trip; references, when given, are in this language."""
    name: str | None = None
    """Name used in row ids (`name:line`), stats and the journal; default: the file name without suffixes."""
    reference_path: str | None = None
    """Plain-text file of references, line-aligned with `path` (a parallel pair). Text format only."""
    format: Literal["auto", "jsonl", "text"] = "auto"
    """`jsonl`, `text`, or `auto` (.jsonl/.json = jsonl, anything else = text)."""
    text_field: str = "text"
    """JSONL field holding the source text."""
    reference_field: str = "reference"
    """JSONL field holding an optional reference translation (into `tgt`)."""
    id_field: str = "id"
    """JSONL field holding the row's own id, kept as `source_id` (row ids are always `name:line`)."""
    ratio: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Share of this corpus in the mix. When any corpus has a ratio, every corpus needs one and the rows
    taken from each follow the ratios (of `max_rows`, or of the largest mix the corpora can fill)."""
    max_rows: int | None = Field(default=None, ge=0)
    """Use at most this many lines of this corpus (from the top); None = all."""

    @field_validator("src", "tgt")
    @classmethod
    def _language(cls, value: str) -> str:
        return get_language(value).code  # LanguageError is a ValueError: reported under the field's name

    def resolved_name(self) -> str:
        if self.name:
            return self.name
        stem = Path(self.path).name
        return stem.split(".")[0] or stem

    def resolved_format(self) -> str:
        if self.format != "auto":
            return self.format
        return "jsonl" if Path(self.path).suffix.lower() in {".jsonl", ".json"} else "text"


class ModelSpec(EngineSpec):
    """One of the two translators of the round trip: an `EngineSpec` plus the name recorded as provenance.

    A bare string is a model (``m1: qwen2.5-coder-0.5b``). Older configs keep working: ``engine:`` is read
    as `kind`, and ``options: {served_model: …}`` as `served_model`. The provenance name is ``label`` in YAML,
    overrides and dumps, and `provenance` in Python (`EngineSpec.label()` is the engine's short description)."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    provenance: str | None = Field(default=None, alias="label")
    """Name recorded as provenance in the journal (`label` in YAML); default: the engine's model name."""

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"model": data}
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "engine" in data:
            engine = data.pop("engine")
            if data.get("kind") not in (None, engine):
                raise ValueError(f"engine ({engine!r}) and kind ({data['kind']!r}) disagree; give kind only")
            data["kind"] = engine
        options = data.get("options")
        if isinstance(options, dict) and "served_model" in options and "served_model" not in data:
            options = dict(options)
            data["served_model"] = options.pop("served_model")
            data["options"] = options
        return data


def _default_model(name: str) -> Any:
    return lambda: ModelSpec(model=DEFAULT_MODELS[name])


class SampleConfig(StageConfig):
    """Everything `redtrans sample` does: round trips, scores, the stratified draw and the SFT export."""

    corpora: list[CorpusConfig] = Field(default_factory=list)
    """Input corpora, mixed (see `CorpusConfig.ratio`)."""
    output_dir: str = "runs/sample"
    """Where the run lives: journal.jsonl, rejects.jsonl, stats.json, histogram.png, sft*.jsonl."""
    m1: ModelSpec = Field(default_factory=_default_model("m1"))
    """First translator (default: the embedded Qwen2.5-Coder-1.5B, chat prompts)."""
    m2: ModelSpec = Field(default_factory=_default_model("m2"))
    """Second translator, ideally of another family (default: Gemma 3 270M base, few-shot completion prompts)."""
    max_rows: int | None = Field(default=None, ge=0)
    """Rows to round-trip over all corpora together (split by the corpus ratios); None = all of them."""
    mode: Literal["sns", "plain"] = "sns"
    """Translator pipeline: sns (spans protected, checks, retry) or plain (one plain prompt)."""
    profile: str = "rednote"
    """Platform markup profile of the SNS pipeline (rednote, generic, or a YAML path)."""
    retry: bool = True
    """Retry a segment once when a check fails (as TranslatorConfig.retry)."""
    batch_size: int = Field(default=0, ge=0)
    """Rows per window sent through both models together; 0 = 4 × the larger engine parallelism."""
    concurrent_models: bool | None = None
    """Run the two models' round trips of a window at the same time (endpoints gain; two in-process models on
    the same CPU cores only compete). None = yes unless both engines run in this process."""
    score_workers: int = Field(default=0, ge=0)
    """Processes scoring sentence BLEU/chrF; 0 = one per CPU core, 1 = score in this process."""
    edges: list[float] = Field(default_factory=lambda: list(DEFAULT_EDGES))
    """ΔBLEU bucket edges (0–1 scale): buckets are [e0,e1), [e1,e2), …, and the last one is closed."""
    weights: list[float] = Field(default_factory=lambda: list(DEFAULT_WEIGHTS))
    """Weight of each bucket in the draw (one per bucket; need not sum to 1); larger = more of that bucket."""
    exclude: list[int | str] = Field(default_factory=list)
    """Buckets left out of the draw, by index (0 = lowest) or label such as "[0.0,0.1)" (the paper's
    ablation drops the near-zero bucket)."""
    method: Literal["quota", "weighted"] = "quota"
    """quota = stratified: bucket b gets target_size × w_b / Σw rows (a bucket short of rows passes its share
    to the others, pro rata), uniformly at random inside the bucket. weighted = Efraimidis–Spirakis weighted
    sampling without replacement: each row weighs its bucket's weight, so a bucket's share follows
    count × weight."""
    target_size: int = Field(default=0, ge=0)
    """Rows in the SFT set; 0 = every eligible row of the buckets not excluded (weights then do not matter)."""
    seed: int = 0
    """Seed of the draw. The same journal, config and seed give the same SFT set, in the same order."""
    target_rule: Literal["auto", "reference", "best_forward"] = "auto"
    """SFT target: auto = the reference when the row has one, otherwise the forward translation whose round
    trip scored higher (ties: m1); reference = rows without a reference are not eligible; best_forward =
    always the better forward translation, even when a reference exists."""
    allow_flagged_targets: bool = False
    """Accept a forward translation that the translator's checks flagged (wrong_language, echo, …) as target."""
    sft_formats: list[SftFormat] = Field(default_factory=lambda: list(SFT_FORMATS))
    """SFT files to write: messages → sft.jsonl (TRL conversational), prompt_completion →
    sft.prompt_completion.jsonl (TRL prompt/completion)."""
    on_bad_row: Literal["reject", "fail"] = "reject"
    """A bad input row (invalid JSON, empty text, …): reject = write it with file:line and reason to
    rejects.jsonl, count it in the stats and go on; fail = stop with file:line."""
    histogram_bins: int = Field(default=20, ge=1)
    """Bins of the ΔBLEU histogram (stats.json and histogram.png)."""

    # -- derived ----------------------------------------------------------------------------------------
    @property
    def out(self) -> Path:
        return Path(self.output_dir).expanduser()

    @property
    def journal_path(self) -> Path:
        return self.out / "journal.jsonl"

    @property
    def rejects_path(self) -> Path:
        return self.out / "rejects.jsonl"

    @property
    def stats_path(self) -> Path:
        return self.out / "stats.json"

    @property
    def histogram_path(self) -> Path:
        return self.out / "histogram.png"

    def validate(self, need_corpora: bool = True) -> None:  # type: ignore[override]
        """Check what involves several fields; ConfigError naming the first field that cannot work.

        Field types and ranges are checked by pydantic when the config is built or a field assigned; this
        adds the cross-field rules and each model's engine config (so an unknown engine option fails here,
        before any model loads)."""
        if need_corpora and not self.corpora:
            raise ConfigError("corpora: give at least one corpus (path, src, tgt)")
        names: set[str] = set()
        with_ratio = [c.ratio is not None for c in self.corpora]
        if any(with_ratio) and not all(with_ratio):
            raise ConfigError("corpora: when one corpus has a ratio, every corpus needs one")
        for i, corpus in enumerate(self.corpora):
            where = f"corpora.{i}"
            if corpus.src == corpus.tgt:
                raise ConfigError(f"{where}: src and tgt are both {corpus.src!r}")
            name = corpus.resolved_name()
            if name in names:
                raise ConfigError(f"{where}.name: {name!r} is used twice; give each corpus its own name")
            names.add(name)
            if corpus.reference_path and corpus.resolved_format() != "text":
                raise ConfigError(f"{where}.reference_path: only for plain-text corpora (JSONL rows carry "
                                  f"`{corpus.reference_field}`)")  # fmt: skip
        if len(self.edges) < 2 or any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ConfigError(f"edges: need at least two strictly increasing values, got {self.edges}")
        if self.edges[0] < 0 or self.edges[-1] > 1:
            raise ConfigError(f"edges: ΔBLEU is on the 0–1 scale; edges must lie in [0, 1], got {self.edges}")
        if len(self.weights) != len(self.edges) - 1:
            raise ConfigError(f"weights: {len(self.edges) - 1} buckets need {len(self.edges) - 1} weights, "
                              f"got {len(self.weights)}")  # fmt: skip
        if any(w < 0 or not math.isfinite(w) for w in self.weights):
            raise ConfigError(f"weights: must be finite and ≥ 0, got {self.weights}")
        for m in ("m1", "m2"):
            try:
                getattr(self, m).engine_config()
            except ConfigError as exc:
                raise ConfigError(f"{m}: {exc}") from None


# -- loading ------------------------------------------------------------------------------------------------
def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SampleConfig:
    """Read a YAML config (optional), apply dotted overrides (`redtrans.config.merge_overrides`) and validate
    (`redtrans.config.validate_config`); ConfigError names the source and every field that is wrong.

    Relative corpus paths in the YAML file are resolved against the file's folder. `m1`/`m2` given as a bare
    model name become mappings first, so ``m1.parallel=2`` reaches into them; a model left unnamed is the
    default one (`DEFAULT_MODELS`) unless another engine kind is asked for (``m1.kind=standin``)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        data = read_yaml_mapping(p)
        for corpus in data.get("corpora") or []:
            if isinstance(corpus, dict):
                for key in ("path", "reference_path"):
                    if corpus.get(key) and not Path(str(corpus[key])).expanduser().is_absolute():
                        corpus[key] = str((p.parent / str(corpus[key])).resolve())
    for m in DEFAULT_MODELS:
        if isinstance(data.get(m), str):
            data[m] = {"model": data[m]}
    data = merge_overrides(data, overrides)
    for m, default in DEFAULT_MODELS.items():
        if data.get(m) is None:
            data[m] = {}
        spec = data[m]
        kind = spec.get("kind", spec.get("engine")) if isinstance(spec, dict) else "given"
        if isinstance(spec, dict) and "model" not in spec and kind in {None, "llamacpp"}:
            spec["model"] = default  # the default model, unless another kind (its own default) is asked for
    return validate_config(SampleConfig, data, str(path) if path else "config")


def _number_list(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--{what}: expected comma-separated numbers, got {text!r}") from None


def cli_overrides(options: dict[str, Any], sets: list[str] | None = None) -> dict[str, Any]:
    """Dotted overrides from command-line options (None = not given) and `KEY=VALUE` strings (YAML values,
    `redtrans.config.parse_overrides`).

    `input`/`reference`/`src`/`tgt` describe one corpus that replaces the configured ones."""
    out: dict[str, Any] = {}
    given = {k: v for k, v in options.items() if v is not None}
    if "input" in given:
        if "src" not in given or "tgt" not in given:
            raise ConfigError("--input needs --src and --tgt (the direction of the round trip)")
        corpus: dict[str, Any] = {"path": str(given.pop("input")), "src": given.pop("src"), "tgt": given.pop("tgt")}
        if "reference" in given:
            corpus["reference_path"] = str(given.pop("reference"))
        out["corpora"] = [corpus]
    elif {"reference", "src", "tgt"} & set(given):
        raise ConfigError("--reference/--src/--tgt describe an --input corpus; give --input too (or use --config)")
    for key in ("edges", "weights"):
        if key in given:
            out[key] = _number_list(str(given.pop(key)), key)
    if "exclude" in given:
        items = re.findall(r"\[[^\])]*[\])]|[^,\s]+", str(given.pop("exclude")))  # labels hold commas
        out["exclude"] = [int(x) if x.lstrip("-").isdigit() else x for x in items]
    for m in ("m1", "m2"):
        if m in given:
            out[f"{m}.model"] = str(given.pop(m))
    for key, value in given.items():
        out[key] = str(value) if isinstance(value, Path) else value
    out.update(parse_overrides(sets or []))
    return out
