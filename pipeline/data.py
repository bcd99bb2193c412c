"""Data sources -> a DatasetDict with columns idx, text or image, label (ClassLabel) and fixed
splits."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from pathlib import Path

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from huggingface_hub import HfApi
from huggingface_hub.errors import HTTPError
from PIL import Image as PILImage

from pipeline.config import DataConfig
from pipeline.data_files import SPLIT_ALIASES, Origin, load_local
from pipeline.errors import UserError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_HUB_FORMAT = "'hub:ID', 'hub:ID:CONFIG', either optionally followed by '@REVISION'"
# What the Hub libraries raise for a wrong id, config or revision (HTTP errors, ValueError) and
# for an unreachable Hub (OSError, or the HTTP client's own errors).
_HUB_ERRORS = (HTTPError, OSError, ValueError)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def _parse_hub(spec: str) -> tuple[str, str | None, str | None]:
    """`hub:ID[:CONFIG][@REVISION]` -> (ID, CONFIG, REVISION); checks that the Hub is allowed."""
    # Hub ids and config names hold no '@', so the first one starts the revision.
    body, at, revision = spec.removeprefix("hub:").partition("@")
    parts = body.split(":")
    if len(parts) > 2 or not all(parts) or (at and not revision):
        raise UserError(f"data.source '{spec}' must be {_HUB_FORMAT}.")
    if _hub_offline():
        raise UserError(
            f"data.source '{spec}' needs the Hugging Face Hub, but HF_HUB_OFFLINE is set. "
            "Unset it on a machine with internet access, or point data.source at a local copy."
        )
    return parts[0], parts[1] if len(parts) == 2 else None, revision or None


def _load_hub(spec: str, revision: str | None) -> DatasetDict:
    repo_id, config, named = _parse_hub(spec)
    args = (repo_id, config) if config else (repo_id,)
    revision = revision or named
    try:
        return datasets.load_dataset(*args, **({"revision": revision} if revision else {}))
    except _HUB_ERRORS as exc:
        raise UserError(
            f"could not load '{spec}' from the Hugging Face Hub ({exc}). Check the id, the "
            "revision and the network, or point data.source at a local copy."
        ) from None


def source_revision(source: str) -> str | None:
    """The commit sha a `hub:` source's revision (default: the default branch) points at now;
    None for other sources. Pass it to prepare_dataset to load that commit and no other."""
    if not source.startswith("hub:"):
        return None
    repo_id, _, revision = _parse_hub(source)
    try:
        return HfApi().dataset_info(repo_id, revision=revision).sha
    except _HUB_ERRORS as exc:
        raise UserError(
            f"could not look up '{source}' on the Hugging Face Hub ({exc}). Check the id, the "
            "revision (a branch, tag or commit) and the network."
        ) from None


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


def load_source(
    source: str, revision: str | None = None, columns: tuple[str, str] = ("text", "label"),
) -> tuple[DatasetDict, dict[str, Origin]]:
    """Load `data.source` as it is: splits and columns as the source has them, and for local
    files where each split's rows come from. `revision`: for a hub: source, the commit to load
    in place of the revision the source names. `columns`: the input and label columns."""
    if source.startswith("hub:"):
        return _load_hub(source, revision), {}
    if source.startswith("sklearn:"):
        return _load_sklearn(source), {}
    return load_local(Path(source), columns)


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
    names = set()
    for part in ds.values():
        names.update(str(v) for v in part.unique("label"))
    # A fixed, sorted order makes label ids the same whatever order the rows come in; integer
    # labels in numeric order (2 before 10), so that id i is label i when they run 0..n-1.
    if all(re.fullmatch(r"-?[0-9]+", n) for n in names):
        return sorted(names, key=lambda n: (int(n), n))
    return sorted(names)


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
    for name, aliases in SPLIT_ALIASES.items():
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


# What pandas and spreadsheets write for a missing value. As a label it would become a class of
# its own, holding rows whose label nobody gave.
_MISSING_MARKERS = {"nan", "-nan", "na", "n/a", "#n/a", "#na", "<na>", "null", "none"}


def _empty(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def _bad_cell(value: object, is_label: bool, class_label: bool) -> str | None:
    """Why a cell cannot be used, or None if it can."""
    if _empty(value) or (class_label and value < 0):
        return "is empty"
    if is_label and isinstance(value, str) and value.strip().lower() in _MISSING_MARKERS:
        return f"is '{value}', a missing-value marker"
    return None


def _bad_cells(part: Dataset, column: str) -> list[tuple[int, str]]:
    """(row, why) for every cell of `column` that cannot be used."""
    if column == "image":
        # Only whether each image is there: decoding every image here would be slow.
        nulls = part.with_format("arrow")[column].is_null().to_pylist()
        return [(i, "is empty") for i, null in enumerate(nulls) if null]
    class_label = isinstance(part.features[column], ClassLabel)
    return [(i, why) for i, value in enumerate(part[column])
            if (why := _bad_cell(value, column == "label", class_label))]


def _check_cells(ds: DatasetDict, origins: dict[str, Origin], columns: dict[str, str]) -> None:
    """No row without an input or a label: an empty label would become a class of its own, an
    empty text a row the tokenizer cannot read. `columns`: the prepared column -> its name in
    the source, for the message."""
    for split, part in ds.items():
        for column, source_name in columns.items():
            bad = _bad_cells(part, column)
            if not bad:
                continue
            first, why = bad[0]
            where = origins[split].row(first) if split in origins else f"split '{split}' row {first + 1}"
            more = f" (and {len(bad) - 1} more rows of split '{split}')" if len(bad) > 1 else ""
            raise UserError(f"{where}: the {column} ({source_name}) {why}{more}; fill it in or "
                            "remove the row.")


def prepare_dataset(
    cfg: DataConfig, seed: int, column: str = "text", revision: str | None = None
) -> tuple[DatasetDict, list[str]]:
    """Load the source and return (splits with columns idx, `column`, label; label names).
    `column` is the task's input: "text" or "image". `revision`: for a hub: source, the commit
    to load (source_revision's answer), so that what is recorded is what was loaded."""
    source_column = cfg.text_column if column == "text" else cfg.image_column
    ds, origins = load_source(cfg.source, revision, (source_column, cfg.label_column))
    ds = _normalise_columns(ds, cfg, column)
    _check_cells(ds, origins, {column: source_column, "label": cfg.label_column})
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


def _input_column(ds: DatasetDict) -> str:
    return "image" if "image" in ds["train"].column_names else "text"


def train_test_overlap(ds: DatasetDict) -> list[int]:
    """The test rows whose input also occurs in train (after normalising case and spaces)."""
    column = _input_column(ds)
    train_keys = {_key(x) for x in ds["train"][column]}
    return [i for i, x in enumerate(ds["test"][column]) if _key(x) in train_keys]


def data_report(
    ds: DatasetDict, names: list[str], oos_label: str | None, overlap: list[int]
) -> dict:
    """Counts, class balance and train/test overlap (train_test_overlap's answer), for
    reports/data.json."""
    column = _input_column(ds)
    train_counts = [0] * len(names)
    for label in ds["train"]["label"]:
        train_counts[label] += 1
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
        "test_rows_also_in_train": len(overlap),
        **shape,
    }
