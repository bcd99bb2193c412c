"""Local data files (csv / json / jsonl / parquet, a CLINC150 data_*.json, a save_to_disk folder)
-> a DatasetDict, with every problem of a file named by its line.

The `datasets` builders read the files; what they report for a file they cannot read (a
generation error, the cause in a log line above) names neither the line nor the fix, so the
text formats are checked here first.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict

from pipeline.errors import UserError

# Names other projects give the validation split; a source may use any of them.
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "val", "valid", "dev"),
                 "test": ("test",)}
_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# The text formats whose builders read gzip-compressed files too (parquet compresses inside).
_GZIP_FORMATS = {".csv", ".json", ".jsonl"}
_CLINC_KEYS = ("train", "val", "test")


@dataclass(frozen=True)
class Origin:
    """Where a split's rows come from, to name a bad row as the user sees it in the file."""

    path: Path
    kind: str  # csv, jsonl, json, parquet or clinc

    def row(self, index: int) -> str:
        """Row `index` (0-based, in load order) as a place in the file."""
        if self.kind == "csv":
            return f"{self.path} line {_csv_line(self.path, index)}"
        if self.kind == "jsonl":
            return f"{self.path} line {_jsonl_line(self.path, index)}"
        return f"{self.path} {'record' if self.kind == 'json' else 'row'} {index + 1}"


def file_format(path: Path) -> str:
    """The format suffix of a data file, '.csv' for both x.csv and x.csv.gz."""
    if path.suffix == ".gz" and len(path.suffixes) > 1 and path.suffixes[-2] in _GZIP_FORMATS:
        return path.suffixes[-2]
    return path.suffix


def _read_bytes(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (gzip.BadGzipFile, EOFError) as exc:
        raise UserError(f"data.source {path} is not a complete gzip file ({exc}); compress it "
                        "again (gzip FILE) or drop the .gz from its name.") from None


def _read_text(path: Path) -> str:
    raw = _read_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path} line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8; save the file as "
            f"UTF-8 (for example: iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name})."
        ) from None


def _csv_records(text: str) -> csv.reader:
    return csv.reader(io.StringIO(text, newline=""))


def _check_csv(path: Path) -> None:
    """Every record has as many fields as the header. pandas would take a longer first record
    as a row index and shift every column; a longer record later stops it mid-file."""
    records = _csv_records(_read_text(path))
    header = next(records, [])
    for record in records:
        if record and len(record) != len(header):
            raise UserError(
                f"{path} line {records.line_num}: {len(record)} fields where the header has "
                f"{len(header)} ({', '.join(header)}); quote a field that holds a comma "
                '("like, this") or remove the extra fields.'
            )


def _csv_line(path: Path, index: int) -> int:
    """The line data row `index` starts on (quoted fields may span lines; blank lines skip)."""
    records = _csv_records(_read_text(path))
    next(records, None)
    row, start = -1, records.line_num + 1
    for record in records:
        if record:
            row += 1
            if row == index:
                return start
        start = records.line_num + 1
    return start


def _jsonl_line(path: Path, index: int) -> int:
    lines = [n for n, line in enumerate(_read_text(path).splitlines(), 1) if line.strip()]
    return lines[index] if index < len(lines) else index + 1


_RECORDS = ('records, one object per row ({"text": ..., "label": ...}), or CLINC150\'s layout '
            "(an object with train, val and test lists of [query, intent] pairs)")


def _check_json_lines(path: Path, text: str) -> None:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} line {number}: not valid json ({exc.msg}); fix the file "
                            "there.") from None
        if not isinstance(record, dict):
            raise UserError(f"{path} line {number} is a {type(record).__name__}, not an object; "
                            f"a json file here holds {_RECORDS}.")


def _check_json(path: Path) -> dict | None:
    """A .json or .jsonl file's shape: records, as a list or one per line (None), or
    CLINC150's layout (its contents)."""
    text = _read_text(path)
    if file_format(path) == ".jsonl":
        _check_json_lines(path, text)
        return None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        # Not one json document: json lines (the json builder reads those from .json too).
        _check_json_lines(path, text)
        return None
    if isinstance(raw, list):
        bad = next((i for i, r in enumerate(raw) if not isinstance(r, dict)), None)
        if bad is not None:
            raise UserError(f"{path} record {bad + 1} is a {type(raw[bad]).__name__}, not an "
                            f"object; a json file here holds a list of {_RECORDS}.")
        return None
    if not isinstance(raw, dict):
        raise UserError(f"{path} holds a single {type(raw).__name__}; a json file here holds "
                        f"{_RECORDS}.")
    if not any(k in _CLINC_KEYS or str(k).startswith("oos_") for k in raw):
        return None  # an object of columns; the json builder reads that too
    missing = [k for k in _CLINC_KEYS if k not in raw]
    if missing:
        raise UserError(
            f"{path} looks like CLINC150's layout but has no {', '.join(map(repr, missing))} "
            f"key (it has {', '.join(raw)}); CLINC150's data_*.json holds train, val and test "
            "lists of [query, intent] pairs (and optionally oos_train, oos_val, oos_test)."
        )
    return raw



def _clinc_splits(raw: dict, path: Path) -> DatasetDict:
    """CLINC150's original layout: lists of [query, intent] under train/val/test (+ oos_*)."""
    out = {}
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        pairs = raw[key] + raw.get(f"oos_{key}", [])
        bad = next((i for i, p in enumerate(pairs) if not (isinstance(p, list) and len(p) == 2)),
                   None)
        if bad is not None:
            raise UserError(f"{path}: entry {bad + 1} of '{key}' (with 'oos_{key}' after it) is "
                            f"{json.dumps(pairs[bad])[:60]}, not a [query, intent] pair, as "
                            "CLINC150's data_*.json files have.")
        out[split] = Dataset.from_dict(
            {"text": [p[0] for p in pairs], "label": [p[1] for p in pairs]}
        )
    return DatasetDict(out)


def _split_files(folder: Path) -> dict[str, Path]:
    files = {}
    for split, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            matches = [p for p in folder.glob(f"{alias}.*") if file_format(p) in _BUILDERS]
            if matches:
                files[split] = sorted(matches)[0]
                break
    return files


def _builder_options(fmt: str, text_column: str, label_column: str) -> dict:
    if fmt != ".csv":
        return {}
    # Only an empty cell is missing: a query "None" is text, and a label "NaN" is refused by
    # name later rather than read as a missing value and merged with the empty ones.
    return {"keep_default_na": False, "na_values": {text_column: [""], label_column: [""]}}


def _load_files(files: dict[str, Path], columns: tuple[str, str]) -> tuple[DatasetDict, dict]:
    formats = {file_format(f) for f in files.values()}
    if len(formats) != 1:
        raise UserError(f"the split files mix formats ({sorted(formats)}); use one format.")
    fmt = formats.pop()
    builder = _BUILDERS[fmt]
    parts, origins = {}, {}
    # One split at a time, so that an error names the file it comes from.
    for split, f in files.items():
        if f.stat().st_size == 0:
            raise UserError(f"data file {f} is empty; give it a header and rows, or remove it.")
        if fmt == ".csv":
            _check_csv(f)
        elif fmt in (".json", ".jsonl") and (clinc := _check_json(f)) is not None:
            if len(files) > 1:
                raise UserError(f"{f} is in CLINC150's layout, which holds every split; point "
                                "data.source at that file alone.")
            return _clinc_splits(clinc, f), {}
        try:
            parts[split] = datasets.load_dataset(builder, data_files=str(f), split="train",
                                                 **_builder_options(fmt, *columns))
        except Exception as exc:  # the builders raise many types for an unreadable file
            if "corresponds to no data" in str(exc):
                raise UserError(f"split '{split}' has no rows ({f} has none); add rows.") from None
            cause = exc.__cause__ or exc
            raise UserError(f"could not read {f} as {builder}: {cause}") from None
        origins[split] = Origin(f, fmt.lstrip("."))
    return DatasetDict(parts), origins


def load_local(path: Path, columns: tuple[str, str]) -> tuple[DatasetDict, dict[str, Origin]]:
    """A local file or folder -> its splits as they are, and where each split's rows come from.
    `columns`: the input and label columns params name (csv cells are read by column)."""
    if not path.exists():
        raise UserError(
            f"data.source '{path}' does not exist. Give a file or folder path, 'hub:ID[:CONFIG]', "
            "or fix the path in params.yaml."
        )
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            return datasets.load_from_disk(str(path)), {}
        files = _split_files(path)
        if "train" not in files:
            # A folder whose data is fetched by a command (data/mnist) says how in its README.
            readme = path / "README.md"
            hint = f" {readme} says how to get its data." if readme.exists() else ""
            raise UserError(
                f"data.source folder {path} has no train file: expected train.csv / .jsonl / "
                ".json / .parquet (the first three optionally .gz; and optionally validation.* "
                f"and test.*) or a save_to_disk folder.{hint}"
            )
        return _load_files(files, columns)
    if file_format(path) not in _BUILDERS:
        raise UserError(
            f"data.source {path}: unsupported file type; use one of {', '.join(sorted(_BUILDERS))} "
            f"({', '.join(sorted(_GZIP_FORMATS))} also gzip-compressed, ending in .gz)."
        )
    return _load_files({"train": path}, columns)

