"""Small image classifiers as `transformers` models: an MLP and a CNN.

Being PreTrainedModels, they train with the Trainer, save with `save_pretrained` and load with
`AutoModelForImageClassification` like any Hub model. This file imports only torch and
transformers, because `save_pretrained` copies it into every model folder: whoever loads a
published folder outside this project does so with `trust_remote_code=True`.
"""

from __future__ import annotations

import math

import torch
from PIL import Image
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    BatchFeature,
    PretrainedConfig,
    PreTrainedModel,
    ViTImageProcessorPil,
)
from transformers.modeling_outputs import ImageClassifierOutput


def _as_pair(size: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class MLPImageConfig(PretrainedConfig):
    """A feed-forward net over the flattened pixels (Hinton et al. 2015's MNIST nets)."""

    model_type = "distill_mlp"
    # What params may set (config_overrides); the input shape comes from the data.
    architecture_keys = ("hidden_sizes", "dropout", "input_dropout")

    def __init__(
        self,
        hidden_sizes: list[int] = (800, 800),
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        image_size: int | list[int] = 28,
        num_channels: int = 1,
        **kwargs,
    ) -> None:
        self.hidden_sizes = list(hidden_sizes)
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.image_size = image_size
        self.num_channels = num_channels
        super().__init__(**kwargs)

    def describe(self) -> str:
        return f"MLP ({'-'.join(map(str, self.hidden_sizes))} hidden units)"


class CNNImageConfig(PretrainedConfig):
    """Conv 3x3 + ReLU + 2x2 max-pool blocks, then one hidden dense layer."""

    model_type = "distill_cnn"
    architecture_keys = ("channels", "hidden_size", "dropout")

    def __init__(
        self,
        channels: list[int] = (32, 64),
        hidden_size: int = 256,
        dropout: float = 0.25,
        image_size: int | list[int] = 28,
        num_channels: int = 1,
        **kwargs,
    ) -> None:
        self.channels = list(channels)
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.image_size = image_size
        self.num_channels = num_channels
        super().__init__(**kwargs)

    def describe(self) -> str:
        return f"CNN ({'-'.join(map(str, self.channels))} channels, {self.hidden_size} hidden units)"


class _ImageClassifier(PreTrainedModel):
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                nn.init.uniform_(module.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> ImageClassifierOutput:
        logits = self.net(pixel_values)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)


class MLPForImageClassification(_ImageClassifier):
    config_class = MLPImageConfig

    def __init__(self, config: MLPImageConfig) -> None:
        super().__init__(config)
        height, width = _as_pair(config.image_size)
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(config.input_dropout)]
        width_in = config.num_channels * height * width
        for size in config.hidden_sizes:
            layers += [nn.Linear(width_in, size), nn.ReLU(), nn.Dropout(config.dropout)]
            width_in = size
        layers.append(nn.Linear(width_in, config.num_labels))
        self.net = nn.Sequential(*layers)
        self.post_init()


class CNNForImageClassification(_ImageClassifier):
    config_class = CNNImageConfig

    def __init__(self, config: CNNImageConfig) -> None:
        super().__init__(config)
        height, width = _as_pair(config.image_size)
        layers: list[nn.Module] = []
        channels_in = config.num_channels
        for channels in config.channels:
            layers += [nn.Conv2d(channels_in, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels_in = channels
            height, width = height // 2, width // 2
        if height < 1 or width < 1:
            raise ValueError(
                f"{len(config.channels)} pooling blocks shrink a {config.image_size} image to "
                "nothing; use fewer channels entries"
            )
        layers += [
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(channels_in * height * width, config.hidden_size),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_size, config.num_labels),
        ]
        self.net = nn.Sequential(*layers)
        self.post_init()


class PixelImageProcessor(ViTImageProcessorPil):
    """ViT's resize / rescale / normalise, after converting every PIL image to `image_mode`.

    `transformers.pipeline` opens every image as RGB; a grayscale model (digits, MNIST) needs
    it as "L", one channel, as it was trained.
    """

    def __init__(self, image_mode: str = "RGB", **kwargs) -> None:
        self.image_mode = image_mode
        super().__init__(**kwargs)

    def preprocess(self, images, *args, **kwargs) -> BatchFeature:
        if isinstance(images, Image.Image):
            images = [images]
        images = [im.convert(self.image_mode)
                  if isinstance(im, Image.Image) and im.mode != self.image_mode else im
                  for im in images]
        return super().preprocess(images, *args, **kwargs)


for _config, _model in ((MLPImageConfig, MLPForImageClassification),
                        (CNNImageConfig, CNNForImageClassification)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModelForImageClassification.register(_config, _model, exist_ok=True)
    AutoImageProcessor.register(_config, slow_image_processor_class=PixelImageProcessor,
                                exist_ok=True)
    # Saved folders carry this file and an auto_map, so they load outside this project too.
    _config.register_for_auto_class()
    _model.register_for_auto_class("AutoModelForImageClassification")
PixelImageProcessor.register_for_auto_class("AutoImageProcessor")
