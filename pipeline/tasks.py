"""What differs between text and image classification: the input column, how raw inputs become
model inputs, and the Auto class of the models. The stages, the loss, the tracking and the
reports are the same for both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

# transformers is imported where it is used: the prepare stage needs only the input column, and
# importing transformers would quadruple its start-up time.
if TYPE_CHECKING:
    from datasets import DatasetDict
    from PIL import Image
    from transformers import BaseImageProcessor, BatchFeature, PreTrainedTokenizerBase

# Tokenizer or image processor: whatever turns raw inputs into model inputs.
Processor: TypeAlias = "PreTrainedTokenizerBase | BaseImageProcessor"

LENGTH = "length"


@dataclass(frozen=True)
class TextTask:
    name: str = "text-classification"
    column: str = "text"
    # Batches of similar lengths pad little; the sampler reads the `length` column.
    group_by_length: bool = True

    @property
    def auto_model(self) -> type:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def encode(self, ds: DatasetDict, processor: Processor, max_length: int) -> DatasetDict:
        def encode(batch: dict) -> dict:
            enc = processor(batch["text"], truncation=True, max_length=max_length)
            enc[LENGTH] = [len(ids) for ids in enc["input_ids"]]
            return enc

        # keep_in_memory: the prepared data is a DVC output; cache files written beside it
        # would change that output behind DVC's back.
        return ds.map(encode, batched=True, remove_columns=["text"], keep_in_memory=True)

    def batch(self, processor: Processor, inputs: Sequence[Any], max_length: int) -> BatchFeature:
        return processor(list(inputs), truncation=True, max_length=max_length, padding=True,
                         return_tensors="pt")

    def order(self, inputs: Sequence[Any]) -> np.ndarray:
        """Rows by length, so that inference batches pad little."""
        return np.argsort([len(t) for t in inputs], kind="stable")


def _mode_for(processor: Processor) -> str:
    mean = processor.image_mean
    return "L" if isinstance(mean, (list, tuple)) and len(mean) == 1 else "RGB"


@dataclass(frozen=True)
class ImageTask:
    name: str = "image-classification"
    column: str = "image"
    group_by_length: bool = False

    @property
    def auto_model(self) -> type:
        from transformers import AutoModelForImageClassification

        return AutoModelForImageClassification

    def batch(self, processor: Processor, inputs: Sequence[Any], max_length: int) -> BatchFeature:
        # Grayscale data meets RGB Hub models (and the reverse): convert to what the processor
        # normalises, one mean per channel.
        mode = _mode_for(processor)
        images = [im if im.mode == mode else im.convert(mode) for im in inputs]
        return processor(images=images, return_tensors="pt")

    def encode(self, ds: DatasetDict, processor: Processor, max_length: int) -> DatasetDict:
        def encode(batch: dict) -> dict:
            return {"pixel_values": self.batch(processor, batch["image"], max_length)
                    ["pixel_values"].numpy()}

        return ds.map(encode, batched=True, remove_columns=["image"], keep_in_memory=True)

    def order(self, inputs: Sequence[Any]) -> np.ndarray:
        return np.arange(len(inputs))


TASKS = {task.name: task for task in (TextTask(), ImageTask())}


def get_task(name: str) -> TextTask | ImageTask:
    return TASKS[name]


def image_shape(image: Image.Image) -> dict[str, Any]:
    """The config keys a built-in image model takes from the data."""
    return {"image_size": [image.height, image.width], "num_channels": len(image.getbands())}
