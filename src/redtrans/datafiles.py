"""Rows from where the data lives: JSON Lines, CSV/TSV, Parquet and Hugging Face datasets, one reader for all.

`open_rows(spec)` names a `RowSource`; iterating it yields ``(number, row)`` like `jsonl.read_jsonl`, and
`RowSource.where(number)` says where a row is in the user's terms, so every stage's errors keep naming it:

| spec | read by | a row is named |
|---|---|---|
| ``posts.jsonl`` (``.json``, ``.ndjson``, other files) | `jsonl.read_jsonl` (as before) | ``posts.jsonl:7`` (a line) |
| ``posts.csv`` / ``posts.tsv`` | 🤗 ``datasets`` csv (every column a string, empty cells "") | ``posts.csv: row 7`` |
| ``posts.parquet`` or a folder of ``*.parquet`` | 🤗 ``datasets`` parquet | ``posts.parquet: row 7`` |
| a folder saved by ``save_to_disk`` | ``datasets.load_from_disk`` | ``ds: row 7`` |
| ``owner/name`` (not a path) | ``datasets.load_dataset`` **offline**: only the local HF cache | ``owner/name: row 7`` |

Rows are numbered from 1 in file order; a CSV's header is not a row (row 7 is the 7th record under it). A
split is chosen with ``#split`` (``ds#test``, ``owner/name#validation``); a dataset with one split needs none,
and with several the error lists them. Nothing is downloaded: a Hub id is read with ``HF_HUB_OFFLINE`` and
``HF_DATASETS_OFFLINE`` set, and a dataset missing from the cache is an InputError that says so.

`write_parquet` writes rows (the union of their fields, missing values null) to a Parquet file atomically;
`translate` uses it to turn its JSONL journal into ``-o out.parquet`` at the end of a run.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import regex

from redtrans.errors import InputError
from redtrans.jsonl import read_jsonl

Kind = Literal["jsonl", "csv", "parquet", "hf-disk", "hf-hub"]
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_HUB_ID = regex.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class RowSource:
    """A place rows come from. Iterate it for ``(number, row)``; `where(number)` names a row in errors."""

    path: str
    kind: Kind
    split: str | None = None

    @property
    def label(self) -> str:
        return self.path + (f"#{self.split}" if self.split else "")

    def where(self, number: int) -> str:
        """``posts.jsonl:7`` for JSON Lines (a line), ``posts.csv: row 7`` for the rest."""
        return f"{self.path}:{number}" if self.kind == "jsonl" else f"{self.label}: row {number}"

    def error(self, number: int, message: str) -> InputError:
        """InputError naming the row: ``posts.csv: row 7: field 'text' is empty``."""
        if self.kind == "jsonl":
            return InputError(message, path=self.path, line=number)
        return InputError(f"row {number}: {message}", path=self.label)

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if self.kind == "jsonl":
            yield from read_jsonl(self.path)
            return
        dataset = self._load()
        for number, row in enumerate(dataset, start=1):
            yield number, {key: _plain(value) for key, value in row.items()}

    def _load(self) -> Any:
        with _hf_offline():
            import datasets

            try:
                if self.kind == "csv":
                    loaded = _load_csv(Path(self.path))
                elif self.kind == "parquet":
                    p = Path(self.path)
                    files = sorted(str(f) for f in p.glob("*.parquet")) if p.is_dir() else [str(p)]
                    loaded = datasets.load_dataset("parquet", data_files=files, split="train")
                elif self.kind == "hf-disk":
                    loaded = datasets.load_from_disk(self.path)
                else:
                    loaded = datasets.load_dataset(self.path)
            except InputError:
                raise
            except (FileNotFoundError, ConnectionError) as exc:
                if self.kind == "hf-hub":
                    raise InputError(
                        "not a file, and not a dataset in the local Hugging Face cache (redtrans never downloads;"
                        f" run `datasets.load_dataset({self.path!r})` where the Hub is reachable): {exc}",
                        path=self.path,
                    ) from None
                raise InputError(f"cannot read: {exc}", path=self.path) from None
            except Exception as exc:  # pyarrow / pandas parse errors have no common base
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
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return RowSource(str(path), "hf-disk", split)
        if any(path.glob("*.parquet")):
            return RowSource(str(path), "parquet", split)
        raise InputError(
            "is a folder, but neither a dataset saved with save_to_disk nor a folder of .parquet files", path=path
        )
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if path.is_file():
        return RowSource(str(path), kind or "jsonl", split)  # type: ignore[arg-type]
    if kind is None and path.suffix.lower() not in {".jsonl", ".json", ".ndjson"} and _HUB_ID.match(text):
        return RowSource(text, "hf-hub", split)
    raise InputError(f"input file not found: {path}")


def read_rows(spec: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(number, row)`` for every row of `spec`: the one reader stages adopt (JSONL keeps file:line errors)."""
    yield from open_rows(spec)


def is_parquet_output(path: str | Path) -> bool:
    return Path(path).suffix.lower() in {".parquet", ".pq"}


def journal_path(output: str | Path) -> Path:
    """Where a non-JSONL output is journaled during a run: ``out.parquet`` → ``out.parquet.journal.jsonl``."""
    p = Path(output)
    return p.with_name(p.name + ".journal.jsonl")


def write_parquet(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write `rows` to `path` (columns: the union of their keys in first-seen order; absent values null), via
    a temporary file and `os.replace` so a reader never sees half a file. Returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(rows)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows])
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return len(rows)


def _load_csv(path: Path) -> Any:
    """A CSV/TSV as a Dataset of strings: no type guessing (an id ``007`` stays ``007``, a post ``NA`` stays
    ``NA``), empty cells ``""``."""
    import datasets

    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle, delimiter=delimiter), None)
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    if not header:
        raise InputError("is empty: a CSV needs a header row naming its columns", path=path)
    if len(set(header)) != len(header):
        raise InputError(f"duplicate column names in the header: {header}", path=path)
    features = datasets.Features({name: datasets.Value("string") for name in header})
    return datasets.load_dataset(
        "csv", data_files=[str(path)], split="train", sep=delimiter, features=features, na_filter=False
    )


def _plain(value: Any) -> Any:
    """NaN (pandas' missing value) as None; everything else as it came."""
    if isinstance(value, float) and math.isnan(value):
        return None
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
