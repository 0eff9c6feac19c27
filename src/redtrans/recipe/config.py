"""The recipe file (`RecipeConfig`): one YAML for the whole RedTrans recipe, on the one config layer.

Each stage's own config is embedded as a mapping (the fields of that stage's config, by the names its own YAML
uses) or named by the path of that stage's YAML file (relative to the recipe file). The recipe owns the fields
that join the stages — output directories, `train_file`, `model_name_or_path` — and fills them in; the rest is
the stage's (see docs/recipe.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from redtrans.config import StageConfig, load_config, read_yaml_mapping
from redtrans.engines.spec import EngineSpec
from redtrans.errors import ConfigError
from redtrans.prefs.config import DEFAULT_TAU_AUTO, SamplingConfig

__all__ = [
    "BenchSection",
    "PrefsSection",
    "RecipeConfig",
    "SuiteSpec",
    "Table3Section",
    "Table4Section",
    "load_recipe",
]

TRAINED = ("sft", "dpo", "dpo-corrected", "repo", "repo-random")
"""Names of the recipe's own models (with `base`) as they appear in `bench.systems` and `prefs.systems`: SFT and
the arms of Table 3 (`redtrans.train.arms.ARMS`)."""


class SuiteSpec(StageConfig):
    """One benchmark suite of the report (data that training never saw)."""

    name: str
    """Label in the report and the folder name under OUT/bench/."""
    suite: str = "jsonl"
    """redtrans-bench | wmt23 | pair | jsonl (see `redtrans.bench.suites`)."""
    data: str | None = None
    """Suite data: a file or folder (relative to the recipe file)."""
    langs: str | None = None
    """Direction for suites that cannot tell it (pair, jsonl), e.g. zh-en."""
    sample: int | None = Field(default=None, ge=1)
    """Stratified sample of N segments (direction × category)."""
    limit: int | None = Field(default=None, ge=1)
    """Keep the first N segments."""
    seed: int = 0
    """Seed of the sample."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or "/" in value or value.startswith("."):
            raise ValueError(f"a suite name is a folder name: {value!r}")
        return value


class PrefsSection(StageConfig):
    """Where the preference pairs of DPO/RePO come from."""

    source: Literal["reference-rewrite", "export"] = "reference-rewrite"
    """reference-rewrite: two candidates per post are generated (`prefs generate`) and turned into pairs by
    chrF++ against the reference, the reference playing the expert rewrite y_t (`prefs export --mode
    reference-rewrite`); export: an expert export from `redtrans prefs export --db …` (`export_file`)."""
    export_file: str | None = None
    """Preference JSONL written by `redtrans prefs export -o X.jsonl` (source: export): the corrected pairs;
    Table 3's DPO baseline reads the experts' original pairs it writes beside it, `X.original.jsonl`."""
    input: str | None = None
    """Posts with references for reference-rewrite (JSONL `text`/`source`, `reference`, `src`, `tgt`; or a text
    file with `reference` beside it). None = journal rows of the sample stage that are not in the SFT set (held
    out of SFT, with a reference)."""
    reference: str | None = None
    """Line-aligned reference file of a text `input`."""
    limit: int | None = Field(default=200, ge=1)
    """Posts used for preferences (None = all)."""
    systems: list[str | EngineSpec] = Field(default_factory=lambda: list[str | EngineSpec](["sft"]), min_length=1,
                                           max_length=2)  # fmt: skip
    """The candidates' systems: `sft`, `base` (the recipe's models) or engine specs; one system is sampled
    twice (see `sampling`)."""
    sampling: SamplingConfig = Field(default_factory=lambda: SamplingConfig(temperature=0.8, seeds=[1, 2]))
    """Temperature and seeds when one system gives both candidates."""
    tau_auto: float = Field(default=DEFAULT_TAU_AUTO, ge=0, le=100)
    """chrF++ threshold of reference-rewrite: both candidates below it → the reference is y_t (two pairs)."""
    batch_size: int = Field(default=16, ge=1)
    """Posts translated before their rows are written (the unit of resume)."""
    profile: str = "rednote"
    """Platform markup profile of the translator."""

    @model_validator(mode="after")
    def _source(self) -> PrefsSection:
        if self.source == "export" and not self.export_file:
            raise ValueError("source: export reads an expert export: give export_file")
        for system in self.systems:
            if isinstance(system, str) and system not in ("base", "sft"):
                raise ValueError(f"systems: {system!r} is neither base, sft nor an engine spec mapping")
        return self


class BenchSection(StageConfig):
    """The benchmark of every model on every suite."""

    suites: list[SuiteSpec] = Field(default_factory=list)
    """Suites (a RedTrans-Bench sample, WMT23 segments, …): never training data."""
    systems: list[str] | None = None
    """Which of the recipe's models to bench, first = significance baseline; None = base, sft, dpo, repo (those
    trained), then the Table 4 SFT variants."""
    extra_systems: list[str] = Field(default_factory=list)
    """Further systems as `redtrans bench --system` specs (`name=x,model=…`, `outputs:FILE`, …)."""
    base: EngineSpec | None = None
    """How the base model is run; None = the hf engine on `base_model` (the same code and precision as the
    trained models, whose LoRA/full outputs load with the hf engine)."""
    parallel: int | None = Field(default=None, ge=1)
    """Batch size of the trained models' hf engine (and the base's, when `base` is unset)."""
    engine_options: dict[str, Any] = Field(default_factory=dict)
    """Further hf engine options of the recipe's models (`device`, `dtype`, …)."""
    mode: Literal["sns", "plain"] = "sns"
    """Translator pipeline of every recipe model."""
    profile: str = "rednote"
    """Platform profile for tags and markup fidelity."""
    bootstrap_samples: int = Field(default=1000, ge=1)
    """Paired bootstrap resamples."""


class Table3Section(StageConfig):
    """The paper's Table 3: the preference-stage arms, trained on the same source items with the same optimizer
    steps and seed (docs/training.md, "The arms")."""

    enabled: bool = True
    """Train DPO on the experts' original pairs (the paper's baseline), DPO on the corrected pairs and RePO, and
    bench them beside the base and SFT models. False = RePO only, on the corrected pairs."""
    random_rewrites: bool = False
    """Also train the ablation arm: RePO whose truth term uses another item's rewrite (`repo-random`)."""

    @model_validator(mode="before")
    @classmethod
    def _bare_bool(cls, data: Any) -> Any:
        return {"enabled": data} if isinstance(data, bool) else data


class Table4Section(StageConfig):
    """The paper's Table 4: SFT on different ΔBLEU bucket ranges, drawn again from the same journal."""

    enabled: bool = False
    """Train and bench one SFT model per range (the main SFT model is the `all` row)."""
    ranges: list[tuple[float, float]] = Field(default_factory=lambda: [(0.0, 0.1), (0.4, 1.0)])
    """ΔBLEU ranges [low, high) (the last bucket, ending at 1, is closed)."""
    target_size: int | None = Field(default=None, ge=0)
    """Rows of each variant's SFT set; None = the sample stage's target_size (same size as `all`)."""

    @field_validator("ranges")
    @classmethod
    def _ranges(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for low, high in value:
            if not 0 <= low < high <= 1:
                raise ValueError(f"a range is [low, high) with 0 ≤ low < high ≤ 1, got [{low}, {high}]")
        return value


class RecipeConfig(StageConfig):
    """The whole recipe: sample → sft → prefs → dpo/repo → bench → report (docs/recipe.md)."""

    output_dir: str = "runs/recipe"
    """Every stage writes under OUT/<stage>/ with a manifest.json; the report goes to OUT/report/."""
    base_model: str
    """The model SFT starts from (`model_name_or_path`): a registry name, a .gguf file or a model directory."""
    sample: str | dict[str, Any] = Field(default_factory=dict)
    """`redtrans sample` config (SampleConfig fields: corpora and their mix, the two back-translation models m1
    and m2, edges/weights/target_size, …) or the path of its YAML. `output_dir` is the recipe's."""
    sft: str | dict[str, Any] = Field(default_factory=dict)
    """`redtrans sft` config (SFTRunConfig: redtrans fields and TRL's by TRL's names) or its YAML's path.
    `train_file`, `output_dir` and `model_name_or_path` are the recipe's."""
    repo: str | dict[str, Any] = Field(default_factory=dict)
    """`redtrans repo` config (RePOConfig: ours and trl.DPOConfig's fields) or its YAML's path, shared by every
    arm of Table 3 (same optimizer steps, seed and hyperparameters). `model_name_or_path`, `train_file`,
    `output_dir`, `loss` and `truth_target` are the recipe's."""
    prefs: PrefsSection = Field(default_factory=PrefsSection)
    """The preference source."""
    table3: Table3Section = Field(default_factory=Table3Section)
    """The paper's Table 3: the DPO arms beside RePO (`enabled`, `random_rewrites`); `table3: false` = RePO only."""
    table4: Table4Section = Field(default_factory=Table4Section)
    """The paper's Table 4 as an option of the same file."""
    bench: BenchSection = Field(default_factory=BenchSection)
    """Suites and systems of the final benchmark."""
    launch: list[str] | None = None
    """A launcher for the training stages (SFT, Table 4's SFTs, DPO, RePO) that takes ``-m MODULE``, e.g.
    ``[accelerate, launch, --config_file, zero3.yaml]`` for DeepSpeed ZeRO-3 on several GPUs: each such stage
    writes its config to OUT/<stage>/launch.yaml and runs ``LAUNCH -m redtrans sft|repo -c that file`` as a
    child process (same outputs, manifest and resume rules). None = in the recipe's own process."""
    launch_timeout_h: float | None = Field(default=None, gt=0)
    """Wall-clock limit of one launched training stage, in hours: past it the child is stopped (SIGTERM, then
    SIGKILL after `launch_grace_s`) and the stage fails; a re-run starts it again. None = no limit (a hung
    collective is still ended by torch.distributed's own timeout)."""
    launch_grace_s: float = Field(default=60.0, gt=0)
    """How long a launched child gets to exit after SIGTERM (the recipe's own SIGTERM or Ctrl-C, or
    `launch_timeout_h`) before it is killed."""

    @property
    def out(self) -> Path:
        return Path(self.output_dir).expanduser()

    @property
    def arms(self) -> list[str]:
        """The preference-stage models this recipe trains (`redtrans.train.arms.ARMS` names), in Table 3's order."""
        if not self.table3.enabled:
            return ["repo"]
        return ["dpo", "dpo-corrected", "repo"] + (["repo-random"] if self.table3.random_rewrites else [])


def _resolve(base: Path, value: Any) -> Any:
    if isinstance(value, str) and value and not value.startswith(("http://", "https://")):
        p = Path(value).expanduser()
        if not p.is_absolute() and (base / p).exists():
            return str((base / p).resolve())
    return value


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> RecipeConfig:
    """Read a recipe YAML with dotted overrides (`redtrans.config.load_config`). Paths in it (stage config files,
    corpora, data, the base model) are taken relative to the recipe file when they exist there."""
    p = Path(path)
    config = load_config(RecipeConfig, p, overrides)
    folder = p.parent.resolve()
    updates: dict[str, Any] = {"base_model": _resolve(folder, config.base_model)}
    for name in ("sample", "sft", "repo"):
        value = getattr(config, name)
        if isinstance(value, str):
            resolved = Path(_resolve(folder, value))
            if not resolved.is_file():
                raise ConfigError(f"{p}: {name}: config file not found: {value}")
            updates[name] = str(resolved)
    if isinstance(config.sample, dict):  # embedded: corpus paths relative to the recipe file
        sample = dict(config.sample)
        sample["corpora"] = [
            {**c, **{k: _resolve(folder, c[k]) for k in ("path", "reference_path") if c.get(k)}}
            if isinstance(c, dict) else c
            for c in sample.get("corpora") or []
        ]  # fmt: skip
        updates["sample"] = sample
    config = config.model_copy(update=updates)
    config.prefs = config.prefs.model_copy(
        update={k: _resolve(folder, getattr(config.prefs, k)) for k in ("export_file", "input", "reference")}
    )
    config.bench = config.bench.model_copy(
        update={"suites": [s.model_copy(update={"data": _resolve(folder, s.data)}) for s in config.bench.suites]}
    )
    return config


def stage_values(value: str | dict[str, Any]) -> tuple[dict[str, Any], Path | None]:
    """A stage section's values and the file they came from (None when embedded)."""
    if isinstance(value, str):
        return read_yaml_mapping(value), Path(value)
    return dict(value), None
