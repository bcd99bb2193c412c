import os

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

# Nothing in the tests may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"

LABELS = ["balance", "oos", "transfer"]


def tiny_bert(layers: int = 4, num_labels: int = len(LABELS), seed: int = 0):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels,
        id2label=dict(enumerate(LABELS[:num_labels])),
        label2id={n: i for i, n in enumerate(LABELS[:num_labels])},
    )
    return BertForSequenceClassification(config).eval()


@pytest.fixture
def teacher4():
    return tiny_bert(layers=4)
