"""TextEmbedder on a tiny random BERT: shapes, order, pooling, truncation, ONNX vs torch, export cache."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from likewise.embedders import EmbeddingCache, TextEmbedder
from likewise.errors import InvalidArgumentError, InvalidInputError

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A short one.",
    "",
    "Vectors for every text, in the order given, whatever their length bucket.",
    "Réseau de neurones 神经网络 12345",
    "dog",
    "The quick brown fox jumps over the lazy dog.",  # a duplicate
]


@pytest.fixture(scope="module")
def tiny(tiny_text_model: Path) -> TextEmbedder:
    return TextEmbedder(str(tiny_text_model), backend="onnx", batch_size=3).load()


def test_shape_dtype_and_unit_rows(tiny: TextEmbedder) -> None:
    vectors = tiny.embed_batch(TEXTS)
    assert vectors.shape == (len(TEXTS), 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[-1])
    assert tiny.embed_batch([]).shape == (0, 32)


def test_bucketing_keeps_the_callers_order(tiny: TextEmbedder) -> None:
    together = tiny.embed_batch(TEXTS)
    alone = np.stack([tiny.embed(t) for t in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_onnx_matches_torch(tiny_text_model: Path, tiny: TextEmbedder) -> None:
    torch_side = TextEmbedder(str(tiny_text_model), backend="torch", device="cpu", precision="fp32")
    a, b = tiny.embed_batch(TEXTS), torch_side.embed_batch(TEXTS)
    assert float((a * b).sum(1).min()) > 0.9999


def test_cls_pooling_differs_and_matches_torch(tiny_text_model: Path) -> None:
    cls_onnx = TextEmbedder(str(tiny_text_model), pooling="cls", backend="onnx")
    cls_torch = TextEmbedder(str(tiny_text_model), pooling="cls", backend="torch", device="cpu", precision="fp32")
    mean = TextEmbedder(str(tiny_text_model), backend="onnx")
    a, b, m = (e.embed_batch(TEXTS[:4]) for e in (cls_onnx, cls_torch, mean))
    assert float((a * b).sum(1).min()) > 0.9999
    assert float((a * m).sum(1).max()) < 0.999
    assert cls_onnx.cache_key != mean.cache_key


def test_same_vectors_as_sentence_transformers(tiny_text_model: Path, tiny: TextEmbedder) -> None:
    import sentence_transformers as st
    reference = st.SentenceTransformer(str(tiny_text_model), device="cpu").encode(TEXTS)
    assert float((tiny.embed_batch(TEXTS) * reference).sum(1).min()) > 0.9999


def test_truncation_is_warned_once_and_counted(tiny_text_model: Path) -> None:
    embedder = TextEmbedder(str(tiny_text_model))
    long_text = "word " * 100  # far past the 32-token limit
    with pytest.warns(UserWarning, match="limit of 32 tokens"):
        first = embedder.embed_batch([long_text, "short"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder.embed_batch([long_text + "more words after the cut"])
    assert embedder.truncated == 2
    # Only the first 32 tokens count, so text past the cut changes nothing.
    np.testing.assert_allclose(first[0], embedder.embed(long_text + " extra tail"), atol=1e-6)


def test_export_is_cached_and_reused(
    tiny_text_model: Path, likewise_cache_dir: Path, tiny: TextEmbedder
) -> None:
    exports = [
        meta.parent / "model.onnx"
        for meta in (likewise_cache_dir / "onnx").glob("*/meta.json")
        if json.loads(meta.read_text())["source"] == str(tiny_text_model.resolve())
    ]
    assert len(exports) == 1
    stamp = exports[0].stat().st_mtime_ns
    TextEmbedder(str(tiny_text_model), backend="onnx").load()
    assert exports[0].stat().st_mtime_ns == stamp
    assert not [p for p in (likewise_cache_dir / "onnx").iterdir() if p.name.startswith(".")]


def test_embedder_with_cache(tiny_text_model: Path, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    embedder = TextEmbedder(str(tiny_text_model), cache=cache)
    first = embedder.embed_batch(TEXTS)
    assert (cache.hits, cache.misses) == (0, len(TEXTS))
    second = embedder.embed_batch(TEXTS)
    assert (cache.hits, cache.misses) == (len(TEXTS), len(TEXTS))
    np.testing.assert_array_equal(first, second)


def test_bad_inputs(tiny: TextEmbedder, tiny_text_model: Path) -> None:
    with pytest.raises(InvalidInputError, match="text 1"):
        tiny.embed_batch(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="list of texts"):
        tiny.embed_batch("a string")
    with pytest.raises(InvalidArgumentError):
        TextEmbedder(str(tiny_text_model), pooling="max")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        TextEmbedder(str(tiny_text_model), backend="onnx", device="cuda")


def test_to_dict_round_trip(tiny_text_model: Path) -> None:
    from likewise.embedders import embedder_from_dict

    original = TextEmbedder(str(tiny_text_model), pooling="cls", max_length=16)
    state = json.loads(json.dumps(original.to_dict()))
    again = embedder_from_dict(state, backend="torch", device="cpu")
    assert isinstance(again, TextEmbedder)
    assert (again.model_id, again.pooling, again.max_length) == (original.model_id, "cls", 16)
    assert again.cache_key == original.cache_key
    with pytest.raises(InvalidArgumentError, match="unknown embedder format"):
        embedder_from_dict({"format": "nope/1"})


def test_count_tokens_sees_past_the_limit(tiny: TextEmbedder) -> None:
    counts = tiny.count_tokens(["dog", "word " * 100, ""])
    assert counts == [3, 102, 2]  # [CLS] … [SEP]; the long one is counted in full
    assert counts[1] > tiny.max_length


def test_precision_auto_takes_bf16_only_where_the_cpu_has_amx(
    tiny_text_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from likewise.embedders import text

    monkeypatch.setattr(text, "cpu_has_amx_bf16", lambda: False)
    plain = TextEmbedder(str(tiny_text_model))
    assert (plain.backend, plain.precision) == ("onnx", "fp32")
    monkeypatch.setattr(text, "cpu_has_amx_bf16", lambda: True)
    fast = TextEmbedder(str(tiny_text_model))
    assert (fast.backend, fast.precision, fast.device) == ("torch", "bf16", "cpu")
    assert fast.cache_key != plain.cache_key  # bf16 vectors are close to fp32's, not equal
    exact = TextEmbedder(str(tiny_text_model), precision="fp32")
    assert (exact.backend, exact.precision) == ("onnx", "fp32") and exact.cache_key == plain.cache_key
    assert TextEmbedder(str(tiny_text_model), backend="onnx").precision == "fp32"


def test_bf16_vectors_are_close_to_fp32(tiny_text_model: Path, tiny: TextEmbedder) -> None:
    bf16 = TextEmbedder(str(tiny_text_model), backend="torch", device="cpu", precision="bf16")
    a, b = tiny.embed_batch(TEXTS), bf16.embed_batch(TEXTS)
    cosine = (a * b).sum(1)
    assert float(cosine.min()) > 0.999
    assert not np.array_equal(a, b)  # it really ran in bfloat16


def test_bad_precision(tiny_text_model: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="precision must be auto, fp32, bf16 or fp16"):
        TextEmbedder(str(tiny_text_model), precision="int8")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="fp16.*CUDA GPU"):
        TextEmbedder(str(tiny_text_model), device="cpu", precision="fp16")
    with pytest.raises(InvalidArgumentError, match="bf16.*runs on torch"):
        TextEmbedder(str(tiny_text_model), backend="onnx", precision="bf16")


def test_gpu_settings_are_chosen_at_construction(tiny_text_model: Path) -> None:
    # Construction only (the model loads on first use), so this runs without a GPU.
    gpu = TextEmbedder(str(tiny_text_model), device="cuda")
    assert (gpu.backend, gpu.precision, gpu.batch_size) == ("torch", "fp16", 1024)
    assert gpu.cache_key.endswith("|cuda-fp16")
    bf16 = TextEmbedder(str(tiny_text_model), device="cuda", precision="bf16", batch_size=100)
    assert (bf16.precision, bf16.batch_size) == ("bf16", 100)
    assert bf16.cache_key.endswith("|cuda-bf16")
    exact = TextEmbedder(str(tiny_text_model), device="cuda", precision="fp32")
    cpu = TextEmbedder(str(tiny_text_model), precision="fp32")
    assert exact.cache_key == cpu.cache_key and cpu.batch_size == 64
    bf16_cpu = TextEmbedder(str(tiny_text_model), backend="torch", device="cpu", precision="bf16")
    assert (bf16_cpu.batch_size, bf16_cpu._pad_to) == (32, 16)


def test_batches_are_length_sorted_padded_and_capped(tiny: TextEmbedder) -> None:
    tiny.load()
    tokenizer = tiny._tokenizer
    assert tokenizer is not None
    texts = ["word " * n for n in (3, 40, 0, 12, 12, 7, 25)]
    encodings, _ = tokenizer.encode(texts)
    longest = max(len(e.ids) for e in encodings)
    cap = 2 * longest - 1  # the longest texts go one per batch, shorter ones up to three
    batches = tokenizer.batches(encodings, batch_size=3, max_tokens=cap)
    seen: list[int] = []
    for b in batches[:-1]:
        assert len(b.rows) == min(3, max(1, cap // b.ids.shape[1]))
    for b in batches:
        width = b.ids.shape[1]
        for r, i in enumerate(b.rows):
            ids = encodings[i].ids
            assert b.ids[r, : len(ids)].tolist() == ids  # each row holds its own text
            assert b.mask[r].tolist() == [1] * len(ids) + [0] * (width - len(ids))
            assert set(b.ids[r, len(ids) :].tolist()) <= {tokenizer.pad_id}
        seen.extend(b.rows.tolist())
    assert sorted(seen) == list(range(len(texts)))
    lengths = [len(encodings[i].ids) for i in seen]
    assert lengths == sorted(lengths, reverse=True)
    assert len(batches[0].rows) == 1 and max(len(b.rows) for b in batches) == 3


def test_fp16_overflow_switches_to_bf16(tiny_text_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from likewise.embedders import text

    class Overflowing:
        def pool_into(self, batches: object, out: np.ndarray) -> None:
            raise text._Overflow()

    made: list[str] = []

    class Replacement:
        def __init__(self, path: Path, pooling: str, device: str, threads: object, precision: str):
            made.append(precision)

        def pool_into(self, batches: list, out: np.ndarray) -> None:
            for b in batches:
                out[b.rows] = 1.0

    embedder = TextEmbedder(str(tiny_text_model), device="cuda")
    embedder._tokenizer = text._Tokenizer(embedder.resolved.path, embedder.config, embedder.max_length)
    embedder._runner = Overflowing()  # as if loaded on a GPU
    monkeypatch.setattr(text, "_TorchRunner", Replacement)
    monkeypatch.setattr(text, "_cuda_bf16", lambda: True)
    with pytest.warns(UserWarning, match="overflowed in fp16.*switching to bf16"):
        vectors = embedder.embed_batch(["a", "b", "c"])
    assert made == ["bf16"] and embedder.precision == "bf16"
    assert embedder.cache_key.endswith("|cuda-bf16")
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_batch_widths_round_up_to_the_padding_multiple(tiny: TextEmbedder) -> None:
    tiny.load()
    tokenizer = tiny._tokenizer
    assert tokenizer is not None
    texts = ["word " * n for n in (0, 1, 5, 9, 200)]
    plain = TextEmbedder(str(tiny.resolved.path), backend="onnx", batch_size=1)
    encodings, _ = tokenizer.encode(texts)
    widths = [b.ids.shape[1] for b in tokenizer.batches(encodings, 1, pad_to=8)]
    assert all(w % 8 == 0 or w == tiny.max_length for w in widths) and max(widths) == tiny.max_length
    padded = TextEmbedder(str(tiny.resolved.path), backend="onnx", batch_size=1)
    padded._pad_to = 8  # masked padding: the same vectors
    with pytest.warns(UserWarning, match="truncated"):  # the 200-word text is over the model's limit
        got, expected = padded.embed_batch(texts), plain.embed_batch(texts)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_gpu_batch_path_gives_the_cpu_vectors(tiny_text_model: Path) -> None:
    # CI has no GPU: run the runner's GPU branch (mask built from lengths on the device, rows
    # gathered on the device, one copy back, widths rounded to 16) with CPU tensors standing in.
    import torch
    texts = ["a", "a longer text with more words in it", "", "mid length text"] * 3
    reference = TextEmbedder(str(tiny_text_model), backend="torch", device="cpu", precision="fp32")
    gpu_like = TextEmbedder(str(tiny_text_model), backend="torch", device="cpu", precision="fp32", batch_size=5)
    gpu_like.load()
    runner = gpu_like._runner
    assert runner is not None
    runner._cuda = True  # type: ignore[attr-defined]
    runner._upload = torch.from_numpy  # type: ignore[attr-defined]
    gpu_like._pad_to, gpu_like._max_tokens = 16, 64
    np.testing.assert_allclose(gpu_like.embed_batch(texts), reference.embed_batch(texts), atol=1e-6)
