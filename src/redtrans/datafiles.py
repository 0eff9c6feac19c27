"""Rows from where the data lives and back: one reader for every input format, one writer for every output.

**Reading.** `open_rows(spec)` names a `RowSource`; iterating it yields ``(number, row)`` like
`jsonl.read_jsonl`, and `RowSource.where(number)` names a row in the user's terms, so every stage's errors do:

| spec | read by | a row is named |
|---|---|---|
| ``posts.jsonl`` (``.json``, ``.ndjson``, others) | `jsonl.read_jsonl` (a BOM skipped) | ``posts.jsonl:7`` |
| ``posts.csv`` / ``posts.tsv`` | stdlib `csv` (every cell a string; a BOM skipped) | ``posts.csv: row 7`` |
| ``posts.parquet``, a folder of ``*.parquet`` | ``pyarrow``, in batches (``files`` extra) | ``posts.parquet: row 7`` |
| a glob (``'shards/*.jsonl'``), a folder of ``*.jsonl`` / ``*.csv`` | each file as above, in name order | by its file |
| a dataset folder this module wrote (``.manifest.json``) | its shards, in the manifest's order | ``out: row 7`` |
| a folder saved by ``save_to_disk`` | ``datasets.load_from_disk`` (``files`` extra) | ``ds: row 7`` |
| ``owner/name`` (not a path) | ``datasets.load_dataset`` **offline**: only the local HF cache | ``owner/name: row 7`` |

Rows are numbered from 1 in file order (over a glob's files, on from one file to the next; its files must
share one format); a CSV's header is not a row (row 7 is the 7th record under it, blank
lines skipped). A CSV row with more or fewer cells than the header is an InputError naming ``file:line`` (a
shifted row would put one column's value in another). A split is chosen with ``#split`` (``ds#test``); a dataset
with one split needs none, and with several the error lists them. Nothing is downloaded: a Hub id is read with
``HF_HUB_OFFLINE`` and ``HF_DATASETS_OFFLINE`` set. Values JSON cannot hold are kept as text (timestamps and
dates in ISO 8601, decimals as written, binary as base64), as every stage journals rows as JSON Lines.

`FieldPath` reads a field by name: ``text`` or, nested, ``translation.zh`` (the 🤗 translation schema); a real
column whose name contains the dot wins over the nested reading, and ``a\\.b`` names that column only.

**Writing.** `output_format(path)` says what an output path asks for, before any work (InputError otherwise):

| output | format |
|---|---|
| ``out.jsonl`` (``.ndjson``) | JSON Lines: the journal itself, appended row by row |
| ``out.csv`` / ``out.tsv`` | CSV / TSV (lists and objects as JSON text), from the journal |
| ``out.parquet`` (``.pq``) | one Parquet file, from the journal (``files`` extra) |
| ``out/``, a name without an extension, or an existing folder | a sharded Parquet dataset (below) |

Anything else (``.json`` included: JSON Lines is ``.jsonl``) is refused. A non-JSONL output is journaled in
`journal_path(output)` and `export_journal` converts the whole journal when a run ends, streaming in chunks
with a fixed schema: the caller's columns, always present, of their fixed types (``flags: list<string>`` and
``error: string`` whether or not a run flagged or failed anything) and, for other columns, the types seen
over the whole journal (never ``null``: an all-null column is a string column; a column of mixed types is JSON
text). The last row of an id wins. The result replaces the
output atomically (temporary file + `os.replace`).

**Dataset folders** (``-o out/``): ``part-00000.parquet``, ``part-00001.parquet``, … and ``.manifest.json``
(hidden, so ``datasets.load_dataset("parquet", data_dir="out")`` and ``pyarrow.dataset`` read only the shards).
Writers of such folders (translate here, the Ray jobs later) use one API: `open_shard` streams a shard to a
hidden temporary file, `ShardWriter.commit` renames it into place, `write_manifest` records the shards (the
manifest is the commit point: a shard it does not name is not part of the dataset, and is removed when the
manifest is written), `read_manifest` reads it back.
"""

from __future__ import annotations

import array
import base64
import bisect
import contextlib
import csv
import datetime as dt
import decimal
import glob
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import regex

from redtrans.errors import InputError, MissingExtraError
from redtrans.jsonl import read_jsonl

Kind = Literal["jsonl", "csv", "parquet", "hf-disk", "hf-hub"]
TABLE_SUFFIXES: dict[str, Kind] = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_HUB_ID = regex.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_PARQUET_BATCH = 1024  # rows per batch read from a Parquet file
_GLOB = regex.compile(r"[*?\[]")
_SHARD_SUFFIXES = frozenset({".jsonl", ".ndjson", ".csv", ".tsv"})
"""Files a folder of shards may hold besides .parquet (a folder of .json files is not taken for one)."""


def files_extra(module: str) -> Any:
    """Import `module` of the ``files`` extra (pyarrow, datasets), or MissingExtraError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtraError("files", exc.name or module, "Parquet files and Hugging Face datasets") from None


# -- field paths ---------------------------------------------------------------------------------------------
_UNESCAPED_DOT = regex.compile(r"(?<!\\)\.")


@dataclass(frozen=True)
class FieldPath:
    """A field named on the command line: ``text``, ``translation.zh`` (nested), ``a\\.b`` (a column "a.b")."""

    spec: str

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(part.replace("\\.", ".") for part in _UNESCAPED_DOT.split(self.spec))

    @property
    def nested(self) -> bool:
        return len(self.parts) > 1

    def get(self, row: Mapping[str, Any]) -> Any:
        """The value in `row` (None when absent): a column named exactly `spec` first, then the nested path."""
        if "\\." not in self.spec and self.spec in row:
            return row[self.spec]
        value: Any = row
        for part in self.parts:
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        return value

    def container_problem(self, row: Mapping[str, Any]) -> str | None:
        """Why `set` cannot write into `row` (a value on the path that is not an object), or None."""
        value: Any = row
        for depth, part in enumerate(self.parts[:-1], start=1):
            value = value.get(part) if isinstance(value, Mapping) else None
            if value is not None and not isinstance(value, Mapping):
                where = ".".join(self.parts[:depth])
                return f"field {where!r} is {type(value).__name__}, so it cannot hold {self.spec!r}"
        return None

    def set(self, row: dict[str, Any], value: Any) -> None:
        """Write `value` at the path, copying the objects on the way (the input row's dicts stay untouched)."""
        if not self.nested:
            row[self.parts[0]] = value
            return
        target = row
        for part in self.parts[:-1]:
            inner = target.get(part)
            target[part] = dict(inner) if isinstance(inner, Mapping) else {}
            target = target[part]
        target[self.parts[-1]] = value


# -- reading -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowSource:
    """A place rows come from. Iterate it for ``(number, row)``; `where(number)` names a row in errors.

    A source of several files (`files`: a glob, or a folder of JSONL/CSV shards) numbers its rows on from one
    file to the next (a JSONL file's lines after the previous file's last), and names a row by its own file."""

    path: str
    kind: Kind
    split: str | None = None
    files: tuple[str, ...] = ()
    _starts: list[int] = field(default_factory=list, compare=False, repr=False)
    """With `files`: the number before each file's first row, filled as the files are read."""

    @property
    def label(self) -> str:
        return self.path + (f"#{self.split}" if self.split else "")

    def _locate(self, number: int) -> tuple[RowSource, int]:
        """The single file holding row `number`, and the row's number in it."""
        if not self.files or not self._starts:
            return self, number
        index = max(0, bisect.bisect_left(self._starts, number) - 1)
        return RowSource(self.files[index], self.kind), number - self._starts[index]

    def where(self, number: int) -> str:
        """``posts.jsonl:7`` for JSON Lines (a line), ``posts.csv: row 7`` for the rest."""
        source, number = self._locate(number)
        return f"{source.path}:{number}" if source.kind == "jsonl" else f"{source.label}: row {number}"

    def error(self, number: int, message: str) -> InputError:
        """InputError naming the row: ``posts.csv: row 7: field 'text' is empty``."""
        source, number = self._locate(number)
        if source.kind == "jsonl":
            return InputError(message, path=source.path, line=number)
        return InputError(f"row {number}: {message}", path=source.label)

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if self.files:
            if self.split:
                raise InputError(f"has no splits; drop #{self.split}", path=self.path)
            self._starts.clear()
            last = 0
            for file in self.files:
                self._starts.append(last)
                offset = last
                for number, row in RowSource(file, self.kind):
                    last = offset + number
                    yield last, row
        elif self.kind == "jsonl":
            yield from read_jsonl(self.path)
        elif self.kind == "csv":
            yield from _read_csv(Path(self.path))
        elif self.kind == "parquet":
            if self.split:
                raise InputError(f"has no splits; drop #{self.split}", path=self.path)
            rows = _read_parquet(_parquet_files(Path(self.path)))
            yield from enumerate(rows, start=1)
        else:
            for number, row in enumerate(self._load(), start=1):
                yield number, _plain(row)

    def _load(self) -> Any:
        files_extra("datasets")
        with _hf_offline():
            import datasets

            try:
                loaded = (
                    datasets.load_from_disk(self.path) if self.kind == "hf-disk" else datasets.load_dataset(self.path)
                )
            except (FileNotFoundError, ConnectionError) as exc:
                if self.kind == "hf-hub":
                    raise InputError(
                        "not a file, and not a dataset in the local Hugging Face cache (redtrans never downloads;"
                        f" run `datasets.load_dataset({self.path!r})` where the Hub is reachable): {exc}",
                        path=self.path,
                    ) from None
                raise InputError(f"cannot read: {exc}", path=self.path) from None
            except Exception as exc:  # datasets' and pyarrow's errors have no common base
                raise InputError(f"cannot read as {self.kind}: {type(exc).__name__}: {exc}", path=self.path) from None
        return self._pick_split(loaded)

    def _pick_split(self, loaded: Any) -> Any:
        import datasets

        if not isinstance(loaded, datasets.DatasetDict):
            if self.split:
                raise InputError(f"has no splits; drop #{self.split}", path=self.path)
            return loaded
        names = list(loaded)
        if self.split:
            if self.split not in loaded:
                raise InputError(f"no split {self.split!r}; it has {', '.join(names)}", path=self.path)
            return loaded[self.split]
        if len(names) == 1:
            return loaded[names[0]]
        raise InputError(f"has splits {', '.join(names)}: choose one as {self.path}#SPLIT", path=self.path)


def open_rows(spec: str | Path) -> RowSource:
    """The RowSource `spec` names (see the module docstring); InputError when it names nothing readable."""
    text = str(spec)
    split = None
    if "#" in text and not Path(text).exists():
        text, split = text.rsplit("#", 1)
    path = Path(text).expanduser()
    if not path.exists() and _GLOB.search(text):
        return _files_source(text, sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file()), split)
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            return RowSource(str(path), "parquet", split)
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return RowSource(str(path), "hf-disk", split)
        if any(_visible_parquet(path)):
            return RowSource(str(path), "parquet", split)
        shards = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _SHARD_SUFFIXES
                        and not p.name.startswith((".", "_")))  # fmt: skip
        if shards:
            return _files_source(str(path), shards, split)
        raise InputError(
            "is a folder, but neither a dataset saved with save_to_disk nor a folder of .parquet, .jsonl or .csv files",
            path=path,
        )
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if path.is_file():
        return RowSource(str(path), kind or "jsonl", split)
    if kind is None and path.suffix.lower() not in {".jsonl", ".json", ".ndjson"} and _HUB_ID.match(text):
        return RowSource(text, "hf-hub", split)
    raise InputError(f"input file not found: {path}")


def _file_kind(path: Path) -> Kind:
    return TABLE_SUFFIXES.get(path.suffix.lower(), "jsonl")


def _files_source(spec: str, files: Sequence[Path], split: str | None) -> RowSource:
    """The source of a glob's or a folder's files, all of one format; InputError for none, or for mixed ones."""
    if not files:
        raise InputError(f"no file matches {spec}")
    kinds = sorted({_file_kind(f) for f in files})
    if len(kinds) > 1:
        raise InputError(f"holds files of several formats ({', '.join(kinds)}): give one format's files", path=spec)
    return RowSource(spec, kinds[0], split, tuple(map(str, files)))


def read_rows(spec: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(number, row)`` for every row of `spec`: the one reader stages adopt (JSONL keeps file:line errors)."""
    yield from open_rows(spec)


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """A CSV/TSV as rows of strings, streamed: no type guessing (an id ``007`` stays ``007``, a post ``NA``
    stays ``NA``), empty cells ``""``, a UTF-8 BOM (Excel's "CSV UTF-8") skipped; a row whose cell count is not
    the header's is an InputError naming its line."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long posts are the row checks' business, not the parser's
    line = 0
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter, strict=True)
            header: list[str] | None = None
            number = 0
            for record in reader:
                start, line = line + 1, reader.line_num
                if not record:
                    continue  # a blank line
                if header is None:
                    if len(set(record)) != len(record):
                        raise InputError(f"duplicate column names in the header: {record}", path=path, line=start)
                    header = record
                    continue
                number += 1
                if len(record) != len(header):
                    raise InputError(
                        f"row {number} has {len(record)} cells, the header {len(header)} ({', '.join(header)}); "
                        "quote a cell that holds the delimiter",
                        path=path,
                        line=start,
                    )
                yield number, dict(zip(header, record, strict=True))
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    except csv.Error as exc:
        raise InputError(f"not valid CSV: {exc}", path=path, line=line + 1) from None
    if header is None:
        raise InputError("is empty: a CSV needs a header row naming its columns", path=path)


def _visible_parquet(folder: Path) -> list[Path]:
    """The Parquet files of a folder that readers see (hidden ``.x`` and ``_x`` files are not data)."""
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_")))


def _parquet_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    manifest = read_manifest(path)
    if manifest is None:
        return _visible_parquet(path)
    files = [path / shard.file for shard in manifest.shards]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise InputError(f"incomplete dataset: its manifest names {', '.join(missing)}, which are missing", path=path)
    return files


def _read_parquet(files: Sequence[Path]) -> Iterator[dict[str, Any]]:
    pq = files_extra("pyarrow.parquet")
    pa = files_extra("pyarrow")
    for file in files:
        try:
            reader = pq.ParquetFile(file)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"cannot read as Parquet: {exc}", path=file) from None
        with contextlib.closing(reader):
            for batch in reader.iter_batches(batch_size=_PARQUET_BATCH):
                for row in batch.to_pylist():
                    yield _plain(row)


def _plain(value: Any) -> Any:
    """A value as JSON holds it: NaN → None, timestamps and dates → ISO 8601, decimals → their digits,
    binary → base64; lists and objects converted inside."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


@contextlib.contextmanager
def _hf_offline() -> Iterator[None]:
    """HF_HUB_OFFLINE / HF_DATASETS_OFFLINE for the duration (also in modules that read them at import), and
    no progress bars or warnings from `datasets` (a CLI error stays one line; our own bar shows progress)."""
    keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved_env = {k: os.environ.get(k) for k in keys}
    os.environ.update(dict.fromkeys(keys, "1"))
    patched: list[tuple[Any, str, Any]] = []
    try:
        import datasets
        import datasets.config
        import huggingface_hub.constants

        modules: tuple[Any, ...] = (datasets.config, huggingface_hub.constants)
        for module in modules:
            if hasattr(module, "HF_HUB_OFFLINE"):
                patched.append((module, "HF_HUB_OFFLINE", module.HF_HUB_OFFLINE))
                module.HF_HUB_OFFLINE = True
        if hasattr(datasets.config, "HF_DATASETS_OFFLINE"):
            patched.append((datasets.config, "HF_DATASETS_OFFLINE", datasets.config.HF_DATASETS_OFFLINE))
            datasets.config.HF_DATASETS_OFFLINE = True
        bars_were_off = datasets.utils.are_progress_bars_disabled()
        verbosity = datasets.logging.get_verbosity()
        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
        try:
            yield
        finally:
            datasets.logging.set_verbosity(verbosity)
            if not bars_were_off:
                datasets.enable_progress_bars()
    finally:
        for module, name, value in patched:
            setattr(module, name, value)
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


# -- writing -------------------------------------------------------------------------------------------------
OutputFormat = Literal["jsonl", "csv", "tsv", "parquet", "dataset"]
OUTPUT_SUFFIXES: dict[str, OutputFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
OUTPUTS_HELP = ".jsonl, .csv, .tsv, .parquet, or a folder (out/: a sharded Parquet dataset)"
EXPORT_CHUNK = 1000
"""Rows converted at a time (one Parquet row group): bounds an export's memory whatever the output's size."""
_JSON_BLOCK = 1 << 15
"""Bytes Arrow's JSON reader parses at a time (more for a longer line): its memory grows with the block."""
SHARD_ROWS = 100_000
"""Rows per shard of a dataset folder written by `export_journal`."""


def output_format(path: str | Path) -> OutputFormat:
    """The format an output path asks for (see the module docstring); InputError, before any work, for a
    path that names none, or a folder that holds other files."""
    text, p = str(path), Path(path)
    if p.is_dir() or (not p.exists() and (text.endswith(("/", os.sep)) or not p.suffix)):
        if p.is_dir() and any(_foreign_files(p)):
            raise InputError(
                "is a folder with other files in it; a dataset output needs a new or empty folder, or one redtrans "
                f"wrote (found {', '.join(sorted(f.name for f in _foreign_files(p))[:3])})",
                path=p,
            )
        return "dataset"
    found = OUTPUT_SUFFIXES.get(p.suffix.lower())
    if found is None:
        hint = "JSON Lines is .jsonl; " if p.suffix.lower() == ".json" else ""
        raise InputError(
            f"cannot write {p.suffix!r} files: {hint}--output takes {OUTPUTS_HELP} "
            "(end a folder's name with / when it has a dot)",
            path=p,
        )
    if p.parent.exists() and not p.parent.is_dir():
        raise InputError(f"cannot write {p}: {p.parent} is not a folder")
    return found


def _foreign_files(folder: Path) -> Iterator[Path]:
    """Files of `folder` that are not a dataset's: anything but shards and hidden files (manifest, journal)."""
    for entry in folder.iterdir():
        if entry.name.startswith(".") or (entry.name.startswith("part-") and entry.suffix == ".parquet"):
            continue
        yield entry


def journal_path(output: str | Path) -> Path:
    """Where an output is journaled during a run: a JSONL output is its own journal; ``out.parquet`` →
    ``out.parquet.journal.jsonl`` next to it; a dataset folder ``out/`` → ``out/.journal.jsonl`` inside it."""
    p = Path(output)
    fmt = output_format(p)
    if fmt == "jsonl":
        return p
    if fmt == "dataset":
        return p / ".journal.jsonl"
    return p.with_name(p.name + ".journal.jsonl")


class _Mixed(Exception):
    """A column's values have no common type (it is written as JSON text)."""


_TYPE_NAMES = ("string", "int64", "float64", "bool", "list<string>")
_INT64 = range(-(2**63), 2**63)


def _kind(value: Any) -> Any:
    """The type of a JSON value, as `_merge` combines them: ``null``, ``bool``, ``int``, ``float``, ``str``,
    ``("list", item)``, ``("struct", {field: kind})``; _Mixed for what no Arrow column holds."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        if value not in _INT64:
            raise _Mixed
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        item: Any = "null"
        for inner in value:
            item = _merge(item, _kind(inner))
        return ("list", item)
    if isinstance(value, dict):
        return ("struct", {str(k): _kind(v) for k, v in value.items()})
    raise _Mixed


def _merge(a: Any, b: Any) -> Any:
    """The kind that holds both (null within anything, int within float, lists and structs inside); _Mixed."""
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if isinstance(a, str) and isinstance(b, str):
        if {a, b} == {"int", "float"}:
            return "float"
        raise _Mixed
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] == "list":
        return ("list", _merge(a[1], b[1]))
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] == "struct":
        fields = dict(a[1])
        for name, kind in b[1].items():
            fields[name] = _merge(fields.get(name, "null"), kind)
        return ("struct", fields)
    raise _Mixed


@dataclass
class _JournalScan:
    """What the first pass over a journal found: its columns and their kinds, the line of each id's last row."""

    columns: dict[str, None] = field(default_factory=dict)
    kinds: dict[str, Any] = field(default_factory=dict)
    as_text: set[str] = field(default_factory=set)  # columns whose values have no common type: JSON text
    id_hashes: array.array = field(default_factory=lambda: array.array("q"))  # 8 bytes a row, not a set of ids
    last_line: dict[str, int] | None = None  # the last line of each id that has several (`_find_superseded`)
    rows: int = 0
    longest: int = 0  # bytes of the longest line

    def observe(self, row: dict[str, Any], fixed: Mapping[str, str]) -> None:
        self.rows += 1
        for name, value in row.items():
            if name not in self.columns:
                self.columns[name] = None
            if name in fixed or name in self.as_text:
                continue
            try:
                self.kinds[name] = _merge(self.kinds.get(name, "null"), _kind(value))
            except _Mixed:
                self.as_text.add(name)
                self.kinds.pop(name, None)


class RowSchema:
    """One Arrow schema for rows written in pieces (the shards of a Ray job): the `fixed` columns first, of
    their types, then the others in first-seen order, of the type seen over every row `observe`d — the
    schema `export_journal` gives the same rows (a column of mixed types is JSON text: `cells`)."""

    def __init__(self, fixed: Mapping[str, str]) -> None:
        self.fixed = dict(fixed)
        self._scan = _JournalScan(columns=dict.fromkeys(fixed))

    def observe(self, row: dict[str, Any]) -> None:
        self._scan.observe(row, self.fixed)

    def schema(self) -> Any:
        """The `pyarrow.Schema` of the rows observed so far."""
        return _arrow_schema(self._scan, self.fixed)

    @property
    def as_text(self) -> frozenset[str]:
        """Columns written as JSON text (call after `schema`, which may add some)."""
        return frozenset(self._scan.as_text)


def cells(row: dict[str, Any], as_text: Iterable[str]) -> dict[str, Any]:
    """`row` ready for a `RowSchema`'s schema: the values of `as_text` columns as JSON text."""
    return _texts(row, set(as_text))


def export_journal(
    journal: str | Path,
    output: str | Path,
    types: Mapping[str, str] | None = None,
    id_key: str | None = "id",
    shard_rows: int = SHARD_ROWS,
) -> int:
    """Write the rows of a JSONL `journal` to `output` in the format its path names (`output_format`); the last
    row of an id wins (`id_key`; None keeps every row). `types`: column → ``string``, ``int64``, ``float64``,
    ``bool`` or ``list<string>``: these columns come first, in this order, whether or not any row has them (so
    outputs of different runs have one schema); other columns follow in first-seen order, of the type seen over
    the journal. A first pass in Python finds columns, types and each id's last row; the second streams:
    CSV/TSV row by row, Parquet through pyarrow's JSON reader in blocks (Arrow builds the columns, no Python
    objects per row). The output is replaced atomically. Returns the row count."""
    fmt = output_format(output)
    if fmt == "jsonl":
        raise ValueError("a JSONL output is its own journal")
    journal, fixed = Path(journal), dict(types or {})
    scan = _scan_journal(journal, id_key, fixed)
    if fmt in {"csv", "tsv"}:
        rows = _kept_rows(journal, id_key, scan)
        return _write_csv(rows, list(scan.columns), Path(output), "\t" if fmt == "tsv" else ",")
    schema = _arrow_schema(scan, fixed)
    with _arrow_ready(journal, id_key, scan) as source:
        batches = _json_batches(source, schema, scan.longest)
        if fmt == "parquet":
            return _write_parquet_file(batches, Path(output), schema)
        return _write_dataset(batches, Path(output), schema, shard_rows)


def write_parquet(rows: Iterable[dict[str, Any]], path: str | Path, types: Mapping[str, str] | None = None) -> int:
    """Write `rows` to one Parquet file (columns: their keys in first-seen order, types as `export_journal`'s)
    via a temporary file and `os.replace`. Holds the rows in memory: for small tables (tests, suites)."""
    pa = files_extra("pyarrow")
    rows, fixed = list(rows), dict(types or {})
    scan = _JournalScan(columns=dict.fromkeys(fixed))
    for row in rows:
        scan.observe(row, fixed)
    schema = _arrow_schema(scan, fixed)
    table = pa.Table.from_pylist([_texts(row, scan.as_text) for row in rows], schema=schema)
    return _write_parquet_file(iter([table]), Path(path), schema)


def _journal_lines(journal: Path) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(line number, bytes, row) of each non-blank line of a journal (`read_jsonl`'s numbering)."""
    with journal.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as exc:
                raise InputError(f"journal line is not JSON: {exc}", path=journal, line=number) from None
            yield number, len(raw), row


def _scan_journal(journal: Path, id_key: str | None, fixed: Mapping[str, str]) -> _JournalScan:
    scan = _JournalScan(columns=dict.fromkeys(fixed))
    for _, size, row in _journal_lines(journal):
        scan.longest = max(scan.longest, size)
        if id_key is not None:
            scan.id_hashes.append(hash(str(row.get(id_key))))
        scan.observe(row, fixed)
    if id_key is not None:
        _find_superseded(journal, id_key, scan)
    return scan


def _find_superseded(journal: Path, id_key: str, scan: _JournalScan) -> None:
    """`scan.last_line` for the ids written more than once (a later row supersedes an earlier one), found by
    sorting the rows' id hashes (numpy, 8 bytes a row), then reading the journal again for those ids only."""
    import numpy as np

    hashes = np.sort(np.frombuffer(scan.id_hashes, dtype=np.int64))
    scan.id_hashes = array.array("q")
    repeated = set(hashes[1:][hashes[1:] == hashes[:-1]].tolist())
    if not repeated:
        return
    scan.last_line = {}
    for number, _, row in _journal_lines(journal):
        row_id = str(row.get(id_key))
        if hash(row_id) in repeated:
            scan.last_line[row_id] = number


def _kept_rows(journal: Path, id_key: str | None, scan: _JournalScan) -> Iterator[dict[str, Any]]:
    for number, _, row in _journal_lines(journal):
        last = None if id_key is None or scan.last_line is None else scan.last_line.get(str(row.get(id_key)))
        if last is None or last == number:
            yield row


def _texts(row: dict[str, Any], as_text: set[str]) -> dict[str, Any]:
    """`row` with the values of `as_text` columns as JSON text (strings stay as they are)."""
    for name in as_text & row.keys():
        value = row[name]
        row[name] = value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return row


@contextlib.contextmanager
def _arrow_ready(journal: Path, id_key: str | None, scan: _JournalScan) -> Iterator[Path]:
    """The journal itself when Arrow's JSON reader can read it as is; else a temporary copy (hidden, next to
    it, removed after) with only each id's last row and mixed-type columns as JSON text."""
    if scan.last_line is None and not scan.as_text:
        yield journal
        return
    tmp = _temporary(journal)
    try:
        with tmp.open("w", encoding="utf-8") as out:
            for row in _kept_rows(journal, id_key, scan):
                out.write(json.dumps(_texts(row, scan.as_text), ensure_ascii=False) + "\n")
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _json_batches(source: Path, schema: Any, longest: int) -> Iterator[Any]:
    """Record batches of at least `EXPORT_CHUNK` rows (one Parquet row group each) read by Arrow from JSONL."""
    pa, pj = files_extra("pyarrow"), files_extra("pyarrow.json")
    reader = pj.open_json(
        source,
        # A block must hold the longest line whole; a small block keeps the reader's memory small.
        read_options=pj.ReadOptions(block_size=max(_JSON_BLOCK, longest + 1), use_threads=False),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        memory_pool=_memory_pool(),
    )
    pending, rows = [], 0
    for batch in reader:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= EXPORT_CHUNK:
            yield pa.Table.from_batches(pending, schema=schema)
            pending, rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending, schema=schema)


def _memory_pool() -> Any:
    """malloc's pool rather than Arrow's default (mimalloc), which keeps what a streamed export frees."""
    return files_extra("pyarrow").system_memory_pool()


def _arrow_type(pa: Any, name: str) -> Any:
    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
             "list<string>": pa.list_(pa.string())}  # fmt: skip
    if name not in types:
        raise ValueError(f"unknown column type {name!r}: one of {', '.join(_TYPE_NAMES)}")
    return types[name]


def _kind_type(pa: Any, kind: Any) -> Any:
    """The Arrow type of a `_kind` (a column nobody filled, or a list of nothing, holds strings)."""
    if isinstance(kind, tuple) and kind[0] == "list":
        return pa.list_(_kind_type(pa, kind[1]))
    if isinstance(kind, tuple):
        if not kind[1]:
            raise _Mixed  # only empty objects: Parquet has no struct without fields
        return pa.struct([pa.field(name, _kind_type(pa, inner)) for name, inner in kind[1].items()])
    names = {"null": pa.string(), "str": pa.string(), "bool": pa.bool_(), "int": pa.int64(), "float": pa.float64()}
    return names[kind]


def _arrow_schema(scan: _JournalScan, fixed: Mapping[str, str]) -> Any:
    pa = files_extra("pyarrow")
    fields = []
    for name in scan.columns:
        if name in fixed:
            type_ = _arrow_type(pa, fixed[name])
        else:
            try:
                type_ = pa.string() if name in scan.as_text else _kind_type(pa, scan.kinds.get(name, "null"))
            except _Mixed:
                scan.as_text.add(name)
                type_ = pa.string()
        fields.append(pa.field(name, type_))
    return pa.schema(fields)


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _write_csv(rows: Iterator[dict[str, Any]], columns: list[str], target: Path, delimiter: str) -> int:
    tmp = _temporary(target)
    count = 0
    try:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter=delimiter)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_cell(row.get(name)) for name in columns])
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _write_parquet_file(tables: Iterator[Any], target: Path, schema: Any) -> int:
    pq = files_extra("pyarrow.parquet")
    tmp = _temporary(target)
    count = 0
    try:
        with pq.ParquetWriter(tmp, schema, memory_pool=_memory_pool()) as writer:
            for table in tables:
                writer.write_table(table)
                count += table.num_rows
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _write_dataset(tables: Iterator[Any], folder: Path, schema: Any, shard_rows: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    shards: list[Shard] = []
    writer: ShardWriter | None = None
    try:
        for table in tables:
            while table.num_rows:
                writer = writer or open_shard(folder, len(shards), schema)
                room = shard_rows - writer.rows
                writer.write_table(table.slice(0, room))
                table = table.slice(room)
                if writer.rows >= shard_rows:
                    shards.append(writer.commit())
                    writer = None
        if writer is not None or not shards:  # the last, partial shard; an empty dataset keeps its columns
            writer = writer or open_shard(folder, 0, schema)
            shards.append(writer.commit())
            writer = None
    finally:
        if writer is not None:
            writer.abort()
    write_manifest(folder, shards, schema)
    return sum(shard.rows for shard in shards)


# -- sharded Parquet dataset folders -------------------------------------------------------------------------
MANIFEST_NAME = ".manifest.json"
MANIFEST_FORMAT = "redtrans-parquet-dataset/1"


def shard_name(index: int) -> str:
    """``part-00000.parquet`` for shard 0."""
    return f"part-{index:05d}.parquet"


@dataclass(frozen=True)
class Shard:
    """A committed shard: its file name in the folder and its row count."""

    file: str
    rows: int


@dataclass(frozen=True)
class Manifest:
    """What `read_manifest` finds: the shards in order, the total, the columns (name → Arrow type as text)."""

    shards: list[Shard]
    rows: int
    columns: dict[str, str]
    created_by: str
    format: str = MANIFEST_FORMAT


class ShardWriter:
    """One shard of a dataset folder, streamed to a hidden temporary file in it; `commit` closes it and renames
    it to its shard name, `abort` removes it. Rows are written in row groups as given (`write`)."""

    def __init__(self, folder: str | Path, index: int, schema: Any) -> None:
        self.folder, self.index, self.schema = Path(folder), index, schema
        self.path = self.folder / shard_name(index)
        self._tmp = _temporary(self.path)
        self._pa, pq = files_extra("pyarrow"), files_extra("pyarrow.parquet")
        self._writer = pq.ParquetWriter(self._tmp, schema, memory_pool=_memory_pool())
        self.rows = 0

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append `rows` (dicts; keys the schema lacks are ignored, absent ones null) as one row group."""
        if rows:
            self.write_table(self._pa.Table.from_pylist(list(rows), schema=self.schema))

    def write_table(self, table: Any) -> None:
        """Append a `pyarrow.Table` of the shard's schema (empty tables write nothing)."""
        if not table.num_rows:
            return
        self._writer.write_table(table)
        self.rows += table.num_rows

    def commit(self) -> Shard:
        """Close the file and move it into place (atomic); the shard counts once a manifest names it."""
        self._writer.close()
        os.replace(self._tmp, self.path)
        return Shard(self.path.name, self.rows)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()


def open_shard(folder: str | Path, index: int, schema: Any) -> ShardWriter:
    """A `ShardWriter` for shard `index` (``part-{index:05d}.parquet``) of `folder`, with a `pyarrow.Schema`."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    return ShardWriter(folder, index, schema)


def write_manifest(folder: str | Path, shards: Sequence[Shard], schema: Any, created_by: str = "") -> Path:
    """Record `shards` (in reading order) as the dataset of `folder`, atomically, then remove the shard files
    it does not name (an earlier run's leftovers). Returns the manifest's path."""
    from redtrans import __version__

    folder = Path(folder)
    manifest = Manifest(
        shards=list(shards),
        rows=sum(s.rows for s in shards),
        columns={f.name: str(f.type) for f in schema},
        created_by=created_by or f"redtrans {__version__}",
    )
    target = folder / MANIFEST_NAME
    tmp = _temporary(target)
    try:
        tmp.write_text(json.dumps(asdict(manifest), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    named = {s.file for s in shards}
    for stale in folder.glob("part-*.parquet"):
        if stale.name not in named:
            stale.unlink(missing_ok=True)
    return target


def read_manifest(folder: str | Path) -> Manifest | None:
    """The manifest of a dataset folder, None when it has none; InputError when it cannot be read."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        return Manifest(
            shards=[Shard(str(s["file"]), int(s["rows"])) for s in data["shards"]],
            rows=int(data["rows"]),
            columns=dict(data["columns"]),
            created_by=str(data.get("created_by", "")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable dataset manifest: {exc}", path=path) from None
