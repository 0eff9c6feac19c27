"""Benchmark suites: a small registry of loaders that turn test sets into scored segments.

Built in:

- ``redtrans-bench`` — the RedTrans paper's benchmark (JSON list of ``zh``, ``en``, ``source``, ``src_lang``,
  ``dst_lang``; ``source`` is the category: comment, note-title, note-content). Resolved from ``--data``,
  ``$REDTRANS_DATA``, the cache ``$REDTRANS_HOME/data/`` or its public home on GitHub (pinned, sha256-checked).
- ``wmt23`` — the WMT23 general test set (zh↔en) as WMT-style plain-text files in one folder.
- ``pair`` — any WMT-style pair of plain-text files, one segment a line: ``--data SRC_FILE,REF_FILE``.
- ``jsonl`` — generic JSON Lines: ``source`` (or ``text``), ``reference``, ``src``, ``tgt``, optional ``id`` and
  ``category``.
- ``parquet`` / ``csv`` / ``hf`` — the same fields in any table `redtrans.datafiles` reads: a Parquet file or
  folder, a CSV/TSV file, a dataset folder saved with ``save_to_disk``, or a Hub id already in the local HF
  cache (``owner/name#test`` picks a split; nothing is downloaded). Errors name the row (``x.parquet: row 7``).

Every segment gets a stable id (``redtrans-bench:17`` is the 18th item of the file) so hypotheses cached
under one sample are reused by any other sample of the same file, and a suite carries the sha256 of its file.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redtrans.errors import SuiteError
from redtrans.jsonl import read_jsonl
from redtrans.languages import UnknownLanguageError, get_language
from redtrans.limits import check_text
from redtrans.paths import redtrans_home

REDTRANS_BENCH_FILE = "RedTrans-Bench.json"
REDTRANS_BENCH_REPO = "HC-Guo/RedTrans"
REDTRANS_BENCH_COMMIT = "a1f4489a1806bf77304f91836212624130f5452a"
REDTRANS_BENCH_SHA256 = "da8f70155689441f68d9fae5d43335e261e65a053338f29cc083c113a3759734"
REDTRANS_BENCH_URL = (
    f"https://raw.githubusercontent.com/{REDTRANS_BENCH_REPO}/{REDTRANS_BENCH_COMMIT}/{REDTRANS_BENCH_FILE}"
)
REDTRANS_BENCH_LICENSE = "CC BY-NC-SA 4.0"
REDTRANS_BENCH_LICENSE_URL = "https://creativecommons.org/licenses/by-nc-sa/4.0/"
REDTRANS_BENCH_CITATION = (
    "Redefining Machine Translation on Social Network Services with Large Language Models (arXiv 2504.07901); "
    f"data: github.com/{REDTRANS_BENCH_REPO}"
)
WMT23_FILES = {
    ("zh", "en"): ("generaltest2023.zh-en.src.zh", "generaltest2023.zh-en.ref.refA.en"),
    ("en", "zh"): ("generaltest2023.en-zh.src.en", "generaltest2023.en-zh.ref.refA.zh"),
}


@dataclass(frozen=True)
class Segment:
    """One test item: a source, its reference and where it belongs."""

    id: str
    source: str
    reference: str
    src: str
    tgt: str
    category: str = "all"

    @property
    def direction(self) -> str:
        return f"{self.src}-{self.tgt}"


@dataclass
class Suite:
    name: str
    segments: list[Segment]
    paths: list[str] = field(default_factory=list)
    sha256: str = ""
    """sha256 of the suite's file (of the files, concatenated in order, for multi-file suites)."""
    license: str = ""
    license_url: str = ""
    citation: str = ""
    notes: list[str] = field(default_factory=list)
    """Provenance remarks shown in reports (e.g. the file differs from the pinned upstream version)."""
    total: int = 0
    """Segments in the whole suite before --limit / --sample."""
    selection: dict = field(default_factory=dict)
    """How segments were selected: {"limit": n} / {"sample": n, "seed": s, "strata": {...}} / {}."""

    def describe(self) -> dict:
        return {
            "name": self.name,
            "paths": self.paths,
            "sha256": self.sha256,
            "license": self.license,
            "license_url": self.license_url,
            "citation": self.citation,
            "notes": self.notes,
            "total": self.total,
            "selected": len(self.segments),
            "selection": self.selection,
        }


def sha256_file(*paths: str | Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# -- RedTrans-Bench ---------------------------------------------------------------------------------------
def _in_folder(path: Path) -> Path:
    if path.is_dir():
        for candidate in (path / REDTRANS_BENCH_FILE, path / "redtrans-bench" / REDTRANS_BENCH_FILE):
            if candidate.is_file():
                return candidate
        raise SuiteError(f"no {REDTRANS_BENCH_FILE} in {path} (nor in {path / 'redtrans-bench'})")
    return path


def download_redtrans_bench(target: Path, url: str = REDTRANS_BENCH_URL, timeout: float = 30.0) -> Path:
    """Download the pinned file into `target`, checking its sha256; SuiteError says how to supply it instead."""
    how = (
        f"Supply the file yourself: download {REDTRANS_BENCH_FILE} from github.com/{REDTRANS_BENCH_REPO} "
        f"(commit {REDTRANS_BENCH_COMMIT[:12]}) and pass --data PATH, set $REDTRANS_DATA to it, or copy it to "
        f"{target}. The data is licensed {REDTRANS_BENCH_LICENSE} ({REDTRANS_BENCH_LICENSE_URL})."
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed https URL
            data = response.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SuiteError(
            f"RedTrans-Bench is not available locally and downloading {url} failed ({reason}). {how}"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != REDTRANS_BENCH_SHA256:
        raise SuiteError(f"downloaded {url} but its sha256 is {digest}, expected {REDTRANS_BENCH_SHA256}. {how}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def resolve_redtrans_bench(data: str | Path | None = None, download: bool = True) -> Path:
    """`data` (file or folder) → ``$REDTRANS_DATA`` → ``$REDTRANS_HOME/data/`` → download (pinned, sha256)."""
    if data:
        path = _in_folder(Path(data).expanduser())
        if not path.is_file():
            raise SuiteError(f"RedTrans-Bench file not found: {path}")
        return path
    env = os.environ.get("REDTRANS_DATA")
    if env:
        path = _in_folder(Path(env).expanduser())
        if not path.is_file():
            raise SuiteError(f"$REDTRANS_DATA points to {env}, which is not a RedTrans-Bench file or folder")
        return path
    cached = redtrans_home() / "data" / REDTRANS_BENCH_FILE
    if cached.is_file():
        return cached
    if not download:
        raise SuiteError(f"RedTrans-Bench not found: pass --data PATH, set $REDTRANS_DATA or copy it to {cached}")
    return download_redtrans_bench(cached)


def load_redtrans_bench(data: str | Path | None = None, langs: str | None = None, **_: object) -> Suite:
    path = resolve_redtrans_bench(data)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(rows, list):
        raise SuiteError(f"{path}: expected a JSON list of items, got {type(rows).__name__}")
    segments = []
    for index, row in enumerate(rows):
        where = f"{path}: item {index}"
        if not isinstance(row, dict):
            raise SuiteError(f"{where}: expected an object")
        try:
            src, tgt = get_language(str(row["src_lang"])).code, get_language(str(row["dst_lang"])).code
            source, reference = row[row["src_lang"]], row[row["dst_lang"]]
        except KeyError as exc:
            raise SuiteError(f"{where}: missing field {exc}") from None
        except UnknownLanguageError as exc:
            raise SuiteError(f"{where}: {exc}") from None
        if not isinstance(source, str) or not source.strip():
            raise SuiteError(f"{where}: the {row['src_lang']!r} (source) text is empty")
        if not isinstance(reference, str):
            raise SuiteError(f"{where}: the {row['dst_lang']!r} (reference) text is not a string")
        segments.append(Segment(f"redtrans-bench:{index}", source, reference, src, tgt, str(row.get("source", "all"))))
    digest = sha256_file(path)
    notes = []
    if digest != REDTRANS_BENCH_SHA256:
        notes.append(
            f"{path.name} differs from the pinned upstream file ({REDTRANS_BENCH_REPO}@{REDTRANS_BENCH_COMMIT[:12]}, "
            f"sha256 {REDTRANS_BENCH_SHA256[:12]}…): scores are not comparable with published ones"
        )
    return Suite(
        "redtrans-bench",
        _only_direction("redtrans-bench", segments, langs),
        [str(path)],
        digest,
        REDTRANS_BENCH_LICENSE,
        REDTRANS_BENCH_LICENSE_URL,
        REDTRANS_BENCH_CITATION,
        notes,
    )


# -- plain-text pairs (WMT style) ------------------------------------------------------------------------
def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    except FileNotFoundError:
        raise SuiteError(f"file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not UTF-8 ({exc})") from None


def _pair_segments(name: str, src_path: Path, ref_path: Path, src: str, tgt: str, category: str) -> list[Segment]:
    sources, references = _read_lines(src_path), _read_lines(ref_path)
    if len(sources) != len(references):
        raise SuiteError(f"{src_path} has {len(sources)} lines but {ref_path} has {len(references)}")
    segments = []
    for index, (source, reference) in enumerate(zip(sources, references, strict=True)):
        if not source.strip():
            raise SuiteError(f"{src_path}:{index + 1}: empty source line")
        problem = check_text(source, "source line")
        if problem is not None:
            raise SuiteError(f"{src_path}:{index + 1}: {problem.message}")
        segments.append(Segment(f"{name}:{src}-{tgt}:{index}", source, reference, src, tgt, category))
    return segments


def _lang_of(path: Path) -> str | None:
    try:
        return get_language(path.suffix.lstrip(".")).code if path.suffix else None
    except UnknownLanguageError:
        return None


def _parse_langs(langs: str) -> tuple[str, str]:
    try:
        src, tgt = (get_language(code).code for code in langs.split("-", 1))
    except (ValueError, UnknownLanguageError) as exc:
        raise SuiteError(f"--langs must look like zh-en: {exc}") from None
    return src, tgt


def _only_direction(name: str, segments: list[Segment], langs: str | None) -> list[Segment]:
    """``--langs zh-en`` on a suite holding both directions keeps that one, before --limit / --sample (the draw
    takes strata in sorted order, so on RedTrans-Bench ``--langs en-zh --sample 60`` is ``--sample 120``'s en→zh)."""
    if not langs:
        return segments
    src, tgt = _parse_langs(langs)
    kept = [s for s in segments if (s.src, s.tgt) == (src, tgt)]
    if not kept:
        held = ", ".join(sorted({s.direction for s in segments}))
        raise SuiteError(f"{name} has no {src}-{tgt} segments (it holds {held})")
    return kept


def load_pair(data: str | Path | None = None, langs: str | None = None, **_: object) -> Suite:
    """``data`` = "SRC_FILE,REF_FILE"; languages from ``langs`` ("zh-en") or the files' extensions (.zh/.en)."""
    if not data or "," not in str(data):
        raise SuiteError("the pair suite needs --data SRC_FILE,REF_FILE (one segment a line, aligned)")
    src_path, ref_path = (Path(p.strip()).expanduser() for p in str(data).split(",", 1))
    if langs:
        src, tgt = _parse_langs(langs)
    else:
        src_lang, tgt_lang = _lang_of(src_path), _lang_of(ref_path)
        if not src_lang or not tgt_lang:
            raise SuiteError(
                f"cannot tell the languages of {src_path} / {ref_path} from their extensions: pass --langs"
            )
        src, tgt = src_lang, tgt_lang
    segments = _pair_segments("pair", src_path, ref_path, src, tgt, "all")
    return Suite("pair", segments, [str(src_path), str(ref_path)], sha256_file(src_path, ref_path))


def load_wmt23(data: str | Path | None = None, langs: str | None = None, **_: object) -> Suite:
    folder = Path(data).expanduser() if data else None
    if folder is None and os.environ.get("REDTRANS_DATA"):
        folder = Path(os.environ["REDTRANS_DATA"]).expanduser() / "wmt23"
    if folder is None:
        folder = redtrans_home() / "data" / "wmt23"
    if not folder.is_dir():
        raise SuiteError(
            f"WMT23 folder not found: {folder}. Pass --data FOLDER holding "
            f"{', '.join(f for pair in WMT23_FILES.values() for f in pair)} "
            "(e.g. from `sacrebleu -t wmt23 -l zh-en --echo src` / `--echo ref` where the internet is reachable)."
        )
    segments, paths = [], []
    for (src, tgt), (src_name, ref_name) in WMT23_FILES.items():
        if (folder / src_name).is_file():
            segments += _pair_segments("wmt23", folder / src_name, folder / ref_name, src, tgt, "general")
            paths += [str(folder / src_name), str(folder / ref_name)]
    if not segments:
        raise SuiteError(f"no WMT23 files in {folder}: expected {', '.join(f for f, _ in WMT23_FILES.values())}")
    segments = _only_direction("wmt23", segments, langs)
    return Suite("wmt23", segments, paths, sha256_file(*paths), notes=["WMT23 general test set (refA)"])


# -- generic JSON Lines ---------------------------------------------------------------------------------
def load_jsonl(data: str | Path | None = None, langs: str | None = None, **_: object) -> Suite:
    if not data:
        raise SuiteError("the jsonl suite needs --data FILE.jsonl (fields: source, reference, src, tgt)")
    path = Path(data).expanduser()
    if not path.is_file():
        raise SuiteError(f"file not found: {path}")
    segments = _row_segments(read_jsonl(path), lambda number: f"{path}:{number}", path.stem, langs)
    return Suite("jsonl", segments, [str(path)], sha256_file(path))


def load_table(data: str | Path | None = None, langs: str | None = None, **_: object) -> Suite:
    """The jsonl suite's fields from a Parquet/CSV file, a saved dataset folder or a cached Hub id."""
    from redtrans.datafiles import open_rows
    from redtrans.errors import InputError

    if not data:
        raise SuiteError("this suite needs --data: a .parquet/.csv file, a dataset folder or a cached Hub id")
    try:
        source = open_rows(str(data))
        stem = Path(source.path).stem if source.kind != "hf-hub" else source.path.replace("/", "--")
        segments = _row_segments(iter(source), source.where, stem, langs)
    except SuiteError:
        raise
    except InputError as exc:
        raise SuiteError(str(exc)) from None
    p = Path(source.path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.is_file() else []
    # A Hub id's cache files are not located: its checksum is of its name (and split).
    checksum = sha256_file(*files) if files else hashlib.sha256(source.label.encode()).hexdigest()
    name = "hf" if source.kind.startswith("hf") else source.kind
    return Suite(name, segments, [source.label], checksum)


def _row_segments(
    rows: Iterator[tuple[int, dict[str, Any]]], where_of: Callable[[int], str], stem: str, langs: str | None
) -> list[Segment]:
    default_src, default_tgt = (langs.split("-", 1) + [None])[:2] if langs else (None, None)
    segments, seen = [], set()
    for number, row in rows:
        where = where_of(number)
        source = row.get("source", row.get("text"))
        reference = row.get("reference", row.get("ref"))
        if not isinstance(source, str) or not source.strip():
            raise SuiteError(f"{where}: field 'source' (or 'text') is missing or empty")
        # A test set is refused whole: one silently missing segment would change what is scored.
        problem = check_text(source, "source")
        if problem is not None:
            raise SuiteError(f"{where}: {problem.message}")
        if not isinstance(reference, str):
            raise SuiteError(f"{where}: field 'reference' is missing")
        try:
            src = get_language(str(row.get("src") or default_src)).code
            tgt = get_language(str(row.get("tgt") or default_tgt)).code
        except UnknownLanguageError as exc:
            raise SuiteError(f"{where}: {exc} (give src/tgt fields or --langs)") from None
        seg_id = str(row["id"]) if row.get("id") not in (None, "") else f"{stem}:{number}"
        if seg_id in seen:
            raise SuiteError(f"{where}: duplicate id {seg_id!r}")
        seen.add(seg_id)
        segments.append(Segment(seg_id, source, reference, src, tgt, str(row.get("category") or "all")))
    return segments


SUITES: dict[str, Callable[..., Suite]] = {
    "redtrans-bench": load_redtrans_bench,
    "wmt23": load_wmt23,
    "pair": load_pair,
    "jsonl": load_jsonl,
    "parquet": load_table,
    "csv": load_table,
    "hf": load_table,
}


def register_suite(name: str, loader: Callable[..., Suite]) -> None:
    """Add a suite: `loader(data=..., langs=...)` returns a Suite."""
    SUITES[name] = loader


def load_suite(name: str, data: str | Path | None = None, langs: str | None = None) -> Suite:
    if name not in SUITES:
        raise SuiteError(f"unknown suite {name!r}: use one of {', '.join(SUITES)}")
    suite = SUITES[name](data=data, langs=langs)
    suite.total = len(suite.segments)
    return suite


# -- selection ------------------------------------------------------------------------------------------
def stratified_sample(segments: list[Segment], n: int, seed: int = 0) -> tuple[list[Segment], dict[str, int]]:
    """`n` segments spread evenly over direction × category strata (a stratum smaller than its share gives
    all it has and the rest goes to the others), drawn with `seed`; returned in suite order."""
    strata: dict[str, list[Segment]] = defaultdict(list)
    for segment in segments:
        strata[f"{segment.direction}/{segment.category}"].append(segment)
    keys = sorted(strata)
    quota = dict.fromkeys(keys, 0)
    left = min(n, len(segments))
    while left > 0:
        open_keys = [k for k in keys if quota[k] < len(strata[k])]
        share, extra = divmod(left, len(open_keys))
        for i, key in enumerate(open_keys):
            add = min(share + (i < extra), len(strata[key]) - quota[key])
            quota[key] += add
            left -= add
    rng = random.Random(seed)
    chosen: set[str] = set()
    for key in keys:
        chosen.update(s.id for s in rng.sample(strata[key], quota[key]))
    return [s for s in segments if s.id in chosen], {k: quota[k] for k in keys}


def select(suite: Suite, limit: int | None = None, sample: int | None = None, seed: int = 0) -> Suite:
    """Apply ``--limit`` (first n) or ``--sample`` (stratified by direction × category, seeded) in place."""
    if limit and sample:
        raise SuiteError("give --limit or --sample, not both")
    if sample:
        suite.segments, strata = stratified_sample(suite.segments, sample, seed)
        suite.selection = {"sample": sample, "seed": seed, "strata": strata}
    elif limit:
        suite.segments = suite.segments[:limit]
        suite.selection = {"limit": limit}
    return suite
