"""Data sources -> a DatasetDict with columns idx, text or image, label (ClassLabel) and fixed
splits."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from PIL import Image as PILImage

from pipeline.config import DataConfig
from pipeline.errors import UserError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
# Names other projects give the validation split; a source may use any of them.
_SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "val", "valid", "dev"),
                  "test": ("test",)}
_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_CLINC_KEYS = {"train", "val", "test"}


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def _load_hub(spec: str) -> DatasetDict:
    parts = spec.removeprefix("hub:").split(":")
    if not parts[0] or len(parts) > 2:
        raise UserError(f"data.source '{spec}' must be 'hub:ID' or 'hub:ID:CONFIG'.")
    if _hub_offline():
        raise UserError(
            f"data.source '{spec}' needs the Hugging Face Hub, but HF_HUB_OFFLINE is set. "
            "Unset it on a machine with internet access, or point data.source at a local copy."
        )
    try:
        loaded = datasets.load_dataset(*parts)
    except (ConnectionError, OSError) as exc:
        raise UserError(
            f"could not load '{spec}' from the Hugging Face Hub ({exc}). Check the id and the "
            "network, or point data.source at a local copy."
        ) from None
    return loaded


def _load_sklearn(spec: str) -> DatasetDict:
    """`sklearn:digits`: the 8x8 handwritten digits that ship inside scikit-learn (offline)."""
    name = spec.removeprefix("sklearn:")
    if name != "digits":
        raise UserError(
            f"data.source '{spec}': only sklearn:digits ships inside scikit-learn; the other "
            "scikit-learn data sets download, so load them from the Hub or a local copy."
        )
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values run 0..16; scaled to 0..255 they are ordinary 8-bit grayscale images.
    pixels = np.rint(digits.images * 255 / 16).astype(np.uint8)
    features = Features({"image": Image(), "label": ClassLabel(names=[str(n) for n in digits.target_names])})
    train = Dataset.from_dict(
        {"image": [PILImage.fromarray(p, mode="L") for p in pixels], "label": digits.target.tolist()},
        features=features,
    )
    return DatasetDict({"train": train})


def _is_clinc_layout(path: Path) -> bool:
    if path.suffix != ".json":
        return False
    try:
        with path.open() as f:
            if f.read(1) != "{":
                return False
        keys = set(json.loads(path.read_text()))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False  # not the CLINC layout; the json builder reports what is wrong with it
    return _CLINC_KEYS <= keys


def _load_clinc(path: Path) -> DatasetDict:
    """CLINC150's original layout: lists of [query, intent] under train/val/test (+ oos_*)."""
    raw = json.loads(path.read_text())
    out = {}
    for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
        pairs = raw[key] + raw.get(f"oos_{key}", [])
        out[split] = Dataset.from_dict(
            {"text": [p[0] for p in pairs], "label": [p[1] for p in pairs]}
        )
    return DatasetDict(out)


def _split_files(folder: Path) -> dict[str, str]:
    files = {}
    for split, aliases in _SPLIT_ALIASES.items():
        for alias in aliases:
            matches = [p for p in folder.glob(f"{alias}.*") if p.suffix in _BUILDERS]
            if matches:
                files[split] = str(sorted(matches)[0])
                break
    return files


def _load_files(files: dict[str, str]) -> DatasetDict:
    suffixes = {Path(f).suffix for f in files.values()}
    if len(suffixes) != 1:
        raise UserError(f"the split files mix formats ({sorted(suffixes)}); use one format.")
    builder = _BUILDERS[suffixes.pop()]
    parts = {}
    # One split at a time, so that an error names the file it comes from.
    for split, f in files.items():
        if Path(f).stat().st_size == 0:
            raise UserError(f"data file {f} is empty; give it a header and rows, or remove it.")
        try:
            parts[split] = datasets.load_dataset(builder, data_files=f, split="train")
        except Exception as exc:  # the builders raise many types for an unreadable file
            if "corresponds to no data" in str(exc):
                raise UserError(f"split '{split}' has no rows ({f} has none); add rows.") from None
            raise UserError(f"could not read {f} as {builder}: {exc}") from None
    return DatasetDict(parts)


def _load_local(path: Path) -> DatasetDict:
    if not path.exists():
        raise UserError(
            f"data.source '{path}' does not exist. Give a file or folder path, 'hub:ID[:CONFIG]', "
            "or fix the path in params.yaml."
        )
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            return datasets.load_from_disk(str(path))
        files = _split_files(path)
        if "train" not in files:
            raise UserError(
                f"data.source folder {path} has no train file: expected train.csv / .jsonl / "
                ".json / .parquet (and optionally validation.* and test.*) or a save_to_disk folder."
            )
        return _load_files(files)
    if path.suffix not in _BUILDERS:
        raise UserError(
            f"data.source {path}: unsupported file type '{path.suffix}'; use one of "
            f"{', '.join(sorted(_BUILDERS))}."
        )
    if _is_clinc_layout(path):
        return _load_clinc(path)
    return _load_files({"train": str(path)})


def load_source(source: str) -> DatasetDict:
    """Load `data.source` as it is: splits and columns as the source has them."""
    if source.startswith("hub:"):
        return _load_hub(source)
    if source.startswith("sklearn:"):
        return _load_sklearn(source)
    return _load_local(Path(source))


def _normalise_columns(ds: DatasetDict, cfg: DataConfig, column: str) -> DatasetDict:
    """Keep the input and label columns, named `column` ("text" or "image") and "label"."""
    source_column = cfg.text_column if column == "text" else cfg.image_column
    for split, part in ds.items():
        missing = [c for c in (source_column, cfg.label_column) if c not in part.column_names]
        if missing:
            raise UserError(
                f"split '{split}' has no column {', '.join(repr(m) for m in missing)} "
                f"(it has {', '.join(part.column_names)}); set data.{column}_column / "
                "data.label_column in params.yaml."
            )
        part = part.select_columns([source_column, cfg.label_column])
        renames = {source_column: column, cfg.label_column: "label"}
        ds[split] = part.rename_columns({k: v for k, v in renames.items() if k != v})
    return ds


def _one_image_mode(ds: DatasetDict) -> DatasetDict:
    """Every image decoded as images and in one mode (grayscale or RGB), so that a model sees
    one input shape."""
    for split, part in ds.items():
        if not isinstance(part.features["image"], Image):
            # A column of file paths or bytes: cast to images, or name the column that is wrong.
            try:
                ds[split] = part.cast_column("image", Image())
            except Exception as exc:  # datasets raises several types for a non-image column
                raise UserError(f"split '{split}': the image column does not hold images or "
                                f"image paths ({exc}); set data.image_column.") from None
    first = ds["train"][0]["image"]
    mode = "L" if len(first.getbands()) == 1 else "RGB"

    def convert(batch: dict) -> dict:
        return {"image": [im if im.mode == mode else im.convert(mode) for im in batch["image"]]}

    return DatasetDict({s: p.map(convert, batched=True, keep_in_memory=True) for s, p in ds.items()})


def _label_names(ds: DatasetDict) -> list[str]:
    feature = ds["train"].features["label"]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    values = set()
    for part in ds.values():
        values.update(part.unique("label"))
    # A fixed, sorted order makes label ids the same whatever order the rows come in.
    return sorted(str(v) for v in values)


def _encode_labels(ds: DatasetDict, names: list[str]) -> DatasetDict:
    feature = ClassLabel(names=names)
    for split, part in ds.items():
        if isinstance(part.features["label"], ClassLabel):
            current = part.features["label"].names
            if current != names:
                part = part.map(lambda r: {"label": names.index(current[r["label"]])})
        else:
            index = {n: i for i, n in enumerate(names)}
            part = part.map(lambda r: {"label": index[str(r["label"])]})
        ds[split] = part.cast_column("label", feature)
    return ds


def _make_missing_splits(ds: DatasetDict, cfg: DataConfig, seed: int) -> DatasetDict:
    ds = DatasetDict({_canonical(k): v for k, v in ds.items()})
    if "train" not in ds:
        raise UserError(f"the data source has no train split (it has {', '.join(ds)}).")
    for split, fraction in (("test", cfg.test_fraction), ("validation", cfg.validation_fraction)):
        if split in ds:
            continue
        try:
            parts = ds["train"].train_test_split(
                test_size=fraction, seed=seed, stratify_by_column="label"
            )
        except ValueError as exc:
            raise UserError(
                f"cannot make a stratified {split} split from train ({exc}); every label needs "
                f"at least two train rows, or give a {split} file."
            ) from None
        log.info("made a %s split of %d rows from train (seed %d)", split, len(parts["test"]), seed)
        ds["train"], ds[split] = parts["train"], parts["test"]
    return DatasetDict({s: ds[s] for s in SPLITS})


def _canonical(split: str) -> str:
    for name, aliases in _SPLIT_ALIASES.items():
        if split in aliases:
            return name
    return split


def _check(ds: DatasetDict, names: list[str]) -> None:
    for split in SPLITS:
        if len(ds[split]) == 0:
            raise UserError(f"split '{split}' has no rows; check the source file for that split.")
    train_labels = set(ds["train"]["label"])
    unseen = sorted({names[i] for i in set(ds["test"]["label"]) - train_labels})
    if unseen:
        raise UserError(
            f"test labels never occur in train: {', '.join(unseen[:10])}"
            f"{' …' if len(unseen) > 10 else ''}. Add train rows for them or drop them from test."
        )


def prepare_dataset(
    cfg: DataConfig, seed: int, column: str = "text"
) -> tuple[DatasetDict, list[str]]:
    """Load the source and return (splits with columns idx, `column`, label; label names).
    `column` is the task's input: "text" or "image"."""
    ds = _normalise_columns(load_source(cfg.source), cfg, column)
    if column == "image":
        ds = _one_image_mode(ds)
    names = _label_names(ds)
    ds = _encode_labels(ds, names)
    ds = _make_missing_splits(ds, cfg, seed)
    _check(ds, names)
    # A stable row id lets later stages join per-row outputs (teacher logits) back to rows.
    ds = DatasetDict({s: p.add_column("idx", list(range(len(p)))) for s, p in ds.items()})
    return ds.select_columns(["idx", column, "label"]), names


def _key(example: str | PILImage.Image) -> str:
    """What makes two inputs the same: normalised text, or identical pixels."""
    if isinstance(example, str):
        return " ".join(example.lower().split())
    return hashlib.sha1(example.tobytes()).hexdigest()


def data_report(ds: DatasetDict, names: list[str], oos_label: str | None) -> dict:
    """Counts, class balance and train/test overlap, for reports/data.json."""
    column = "image" if "image" in ds["train"].column_names else "text"
    train_counts = [0] * len(names)
    for label in ds["train"]["label"]:
        train_counts[label] += 1
    train_keys = {_key(x) for x in ds["train"][column]}
    overlap = sum(_key(x) in train_keys for x in ds["test"][column])
    shape = {}
    if column == "image":
        first = ds["train"][0]["image"]
        shape = {"image_height": first.height, "image_width": first.width,
                 "image_channels": len(first.getbands())}
    return {
        "rows": {s: len(ds[s]) for s in SPLITS},
        "num_labels": len(names),
        "has_oos_label": oos_label in names if oos_label else False,
        "train_rows_per_label_min": min(train_counts),
        "train_rows_per_label_max": max(train_counts),
        "test_rows_also_in_train": overlap,
        **shape,
    }


def load_prepared(folder: str | Path) -> tuple[DatasetDict, list[str]]:
    folder = Path(folder)
    ds = datasets.load_from_disk(str(folder))
    names = json.loads((folder / "labels.json").read_text())
    return ds, names


def save_prepared(ds: DatasetDict, names: list[str], folder: str | Path) -> None:
    folder = Path(folder)
    ds.save_to_disk(str(folder))
    (folder / "labels.json").write_text(json.dumps(names, indent=1) + "\n")
