"""Configuration of `redtrans sample`: corpora, the two models, buckets, the draw and the SFT export.

Every field is documented where it is declared (TRL style). A YAML file maps one-to-one onto these
dataclasses (see `examples/sample.yaml`); unknown keys are errors that name the key, and command-line
overrides use dotted keys (`m1.options.n_parallel=2`, `corpora.0.max_rows=40`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from redtrans.config import ConfigError as SharedConfigError
from redtrans.config import read_yaml_mapping
from redtrans.errors import ConfigError
from redtrans.languages import get_language

DEFAULT_EDGES = [0.0, 0.1, 0.2, 0.4, 1.0]
DEFAULT_WEIGHTS = [1.0, 2.0, 3.0, 4.0]


@dataclass
class CorpusConfig:
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
    ratio: float | None = None
    """Share of this corpus in the mix. When any corpus has a ratio, every corpus needs one and the rows
    taken from each follow the ratios (of `max_rows`, or of the largest mix the corpora can fill)."""
    max_rows: int | None = None
    """Use at most this many lines of this corpus (from the top); None = all."""

    def resolved_name(self) -> str:
        if self.name:
            return self.name
        stem = Path(self.path).name
        return stem.split(".")[0] or stem

    def resolved_format(self) -> str:
        if self.format != "auto":
            return self.format
        return "jsonl" if Path(self.path).suffix.lower() in {".jsonl", ".json"} else "text"


@dataclass
class ModelConfig:
    """One of the two translators of the round trip."""

    model: str
    """Registry name (qwen2.5-coder-1.5b, qwen2.5-coder-0.5b, gemma3-270m), a .gguf path, a model directory,
    or http(s)://host/v1 endpoint(s), comma-separated."""
    engine: str | None = None
    """llamacpp | openai | hf | standin (a fast deterministic stand-in that measures the pipeline);
    None = inferred from `model`."""
    options: dict[str, Any] = field(default_factory=dict)
    """Fields of that engine's config: `n_parallel` (llamacpp), `concurrency` (openai: requests in flight),
    `served_model`, `chat` (False = completion prompts), `timeout_s`, …"""
    label: str | None = None
    """Name recorded as provenance in the journal; default: the engine's model name."""


@dataclass
class SampleConfig:
    """Everything `redtrans sample` does: round trips, scores, the stratified draw and the SFT export."""

    corpora: list[CorpusConfig] = field(default_factory=list)
    """Input corpora, mixed (see `CorpusConfig.ratio`)."""
    output_dir: str = "runs/sample"
    """Where the run lives: journal.jsonl, rejects.jsonl, stats.json, histogram.png, sft*.jsonl."""
    m1: ModelConfig = field(default_factory=lambda: ModelConfig("qwen2.5-coder-1.5b"))
    """First translator (default: the embedded Qwen2.5-Coder-1.5B, chat prompts)."""
    m2: ModelConfig = field(default_factory=lambda: ModelConfig("gemma3-270m"))
    """Second translator, ideally of another family (default: Gemma 3 270M base, few-shot completion prompts)."""
    max_rows: int | None = None
    """Rows to round-trip over all corpora together (split by the corpus ratios); None = all of them."""
    mode: Literal["sns", "plain"] = "sns"
    """Translator pipeline: sns (spans protected, checks, retry) or plain (one plain prompt)."""
    profile: str = "rednote"
    """Platform markup profile of the SNS pipeline (rednote, generic, or a YAML path)."""
    retry: bool = True
    """Retry a segment once when a check fails (as TranslatorConfig.retry)."""
    batch_size: int = 0
    """Rows per window sent through both models together; 0 = 4 × the larger engine parallelism."""
    concurrent_models: bool | None = None
    """Run the two models' round trips of a window at the same time (endpoints gain; two in-process models on
    the same CPU cores only compete). None = yes unless both engines run in this process."""
    score_workers: int = 0
    """Processes scoring sentence BLEU/chrF; 0 = one per CPU core, 1 = score in this process."""
    edges: list[float] = field(default_factory=lambda: list(DEFAULT_EDGES))
    """ΔBLEU bucket edges (0–1 scale): buckets are [e0,e1), [e1,e2), …, and the last one is closed."""
    weights: list[float] = field(default_factory=lambda: list(DEFAULT_WEIGHTS))
    """Weight of each bucket in the draw (one per bucket; need not sum to 1); larger = more of that bucket."""
    exclude: list[int | str] = field(default_factory=list)
    """Buckets left out of the draw, by index (0 = lowest) or label such as "[0.0,0.1)" (the paper's
    ablation drops the near-zero bucket)."""
    method: Literal["quota", "weighted"] = "quota"
    """quota = stratified: bucket b gets target_size × w_b / Σw rows (a bucket short of rows passes its share
    to the others, pro rata), uniformly at random inside the bucket. weighted = Efraimidis–Spirakis weighted
    sampling without replacement: each row weighs its bucket's weight, so a bucket's share follows
    count × weight."""
    target_size: int = 0
    """Rows in the SFT set; 0 = every eligible row of the buckets not excluded (weights then do not matter)."""
    seed: int = 0
    """Seed of the draw. The same journal, config and seed give the same SFT set, in the same order."""
    target_rule: Literal["auto", "reference", "best_forward"] = "auto"
    """SFT target: auto = the reference when the row has one, otherwise the forward translation whose round
    trip scored higher (ties: m1); reference = rows without a reference are not eligible; best_forward =
    always the better forward translation, even when a reference exists."""
    allow_flagged_targets: bool = False
    """Accept a forward translation that the translator's checks flagged (wrong_language, echo, …) as target."""
    sft_formats: list[Literal["messages", "prompt_completion"]] = field(
        default_factory=lambda: ["messages", "prompt_completion"]
    )
    """SFT files to write: messages → sft.jsonl (TRL conversational), prompt_completion →
    sft.prompt_completion.jsonl (TRL prompt/completion)."""
    on_bad_row: Literal["reject", "fail"] = "reject"
    """A bad input row (invalid JSON, empty text, …): reject = write it with file:line and reason to
    rejects.jsonl, count it in the stats and go on; fail = stop with file:line."""
    histogram_bins: int = 20
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

    def validate(self, need_corpora: bool = True) -> None:
        """Raise ConfigError naming the first field that cannot work."""
        if need_corpora and not self.corpora:
            raise ConfigError("corpora: give at least one corpus (path, src, tgt)")
        names: set[str] = set()
        with_ratio = [c.ratio is not None for c in self.corpora]
        if any(with_ratio) and not all(with_ratio):
            raise ConfigError("corpora: when one corpus has a ratio, every corpus needs one")
        for i, corpus in enumerate(self.corpora):
            where = f"corpora[{i}]"
            for attr in ("src", "tgt"):
                try:
                    setattr(corpus, attr, get_language(getattr(corpus, attr)).code)
                except ValueError as exc:
                    raise ConfigError(f"{where}.{attr}: {exc}") from None
            if corpus.src == corpus.tgt:
                raise ConfigError(f"{where}: src and tgt are both {corpus.src!r}")
            name = corpus.resolved_name()
            if name in names:
                raise ConfigError(f"{where}.name: {name!r} is used twice; give each corpus its own name")
            names.add(name)
            if corpus.format not in {"auto", "jsonl", "text"}:
                raise ConfigError(f"{where}.format: use auto, jsonl or text, not {corpus.format!r}")
            if corpus.reference_path and corpus.resolved_format() != "text":
                raise ConfigError(f"{where}.reference_path: only for plain-text corpora (JSONL rows carry "
                                  f"`{corpus.reference_field}`)")  # fmt: skip
            if corpus.ratio is not None and not (corpus.ratio > 0 and math.isfinite(corpus.ratio)):
                raise ConfigError(f"{where}.ratio: must be a positive number, not {corpus.ratio!r}")
            if corpus.max_rows is not None and corpus.max_rows < 0:
                raise ConfigError(f"{where}.max_rows: must be ≥ 0")
        if self.max_rows is not None and self.max_rows < 0:
            raise ConfigError("max_rows: must be ≥ 0")
        if len(self.edges) < 2 or any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ConfigError(f"edges: need at least two strictly increasing values, got {self.edges}")
        if self.edges[0] < 0 or self.edges[-1] > 1:
            raise ConfigError(f"edges: ΔBLEU is on the 0–1 scale; edges must lie in [0, 1], got {self.edges}")
        if len(self.weights) != len(self.edges) - 1:
            raise ConfigError(f"weights: {len(self.edges) - 1} buckets need {len(self.edges) - 1} weights, "
                              f"got {len(self.weights)}")  # fmt: skip
        if any(w < 0 or not math.isfinite(w) for w in self.weights):
            raise ConfigError(f"weights: must be finite and ≥ 0, got {self.weights}")
        if self.method not in {"quota", "weighted"}:
            raise ConfigError(f"method: use quota or weighted, not {self.method!r}")
        if self.target_rule not in {"auto", "reference", "best_forward"}:
            raise ConfigError(f"target_rule: use auto, reference or best_forward, not {self.target_rule!r}")
        if self.on_bad_row not in {"reject", "fail"}:
            raise ConfigError(f"on_bad_row: use reject or fail, not {self.on_bad_row!r}")
        if self.mode not in {"sns", "plain"}:
            raise ConfigError(f"mode: use sns or plain, not {self.mode!r}")
        for fmt in self.sft_formats:
            if fmt not in {"messages", "prompt_completion"}:
                raise ConfigError(f"sft_formats: use messages and/or prompt_completion, not {fmt!r}")
        if self.target_size < 0:
            raise ConfigError("target_size: must be ≥ 0 (0 = every eligible row)")
        if self.histogram_bins < 1:
            raise ConfigError("histogram_bins: must be ≥ 1")
        for m in ("m1", "m2"):
            if not getattr(self, m).model and getattr(self, m).engine != "standin":
                raise ConfigError(f"{m}.model: name a model")


# -- YAML / dict loading --------------------------------------------------------------------------------
def _build(cls: type, data: Any, where: str) -> Any:
    if isinstance(data, cls):
        return data
    if cls is ModelConfig and isinstance(data, str):
        return ModelConfig(model=data)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if cls is SampleConfig and key == "corpora":
            if not isinstance(value, list):
                raise ConfigError(f"{path}: expected a list of corpora")
            value = [_build(CorpusConfig, item, f"{path}[{i}]") for i, item in enumerate(value)]
        elif cls is SampleConfig and key in {"m1", "m2"}:
            value = _build(ModelConfig, value, path)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def config_from_dict(data: dict[str, Any]) -> SampleConfig:
    """A SampleConfig from plain data (a parsed YAML file); ConfigError names unknown or missing keys."""
    return _build(SampleConfig, data or {}, "")


def config_to_dict(config: SampleConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.0.c` = value inside nested dicts/lists (lists indexed by number)."""
    keys = dotted.split(".")
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            try:
                index = int(key)
                if last:
                    node[index] = value
                    return
                node = node[index]
            except (ValueError, IndexError):
                raise ConfigError(f"override {dotted}: {key!r} is not an index of a {len(node)}-item list") from None
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {'.'.join(keys[:i])} is not a mapping")
        if last:
            node[key] = value
            return
        if node.get(key) is None:
            node[key] = {}
        elif isinstance(node[key], str) and keys[i + 1] in {f.name for f in dataclasses.fields(ModelConfig)}:
            node[key] = {"model": node[key]}  # m1: name → m1: {model: name}
        node = node[key]


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SampleConfig:
    """Read a YAML config (optional), apply dotted overrides, build and validate the dataclasses.

    Relative corpus paths in the YAML file are resolved against the file's folder."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = read_yaml_mapping(p)
        except SharedConfigError as exc:
            raise ConfigError(str(exc)) from None
        for corpus in data.get("corpora") or []:
            if isinstance(corpus, dict):
                for key in ("path", "reference_path"):
                    if corpus.get(key) and not Path(str(corpus[key])).expanduser().is_absolute():
                        corpus[key] = str((p.parent / str(corpus[key])).resolve())
    else:
        data = config_to_dict(SampleConfig())
    for key, value in (overrides or {}).items():
        apply_override(data, key, value)
    config = config_from_dict(data)
    return config


def _number_list(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--{what}: expected comma-separated numbers, got {text!r}") from None


def cli_overrides(options: dict[str, Any], sets: list[str] | None = None) -> dict[str, Any]:
    """Dotted overrides from command-line options (None = not given) and `KEY=VALUE` strings (YAML values).

    `input`/`reference`/`src`/`tgt` describe one corpus that replaces the configured ones."""
    import yaml

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
    for item in sets or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (dotted keys, YAML values), got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: invalid value {raw!r}: {exc}") from None
    return out
