"""Documents: read files, cut them into chunks, and keep an index in sync with a folder.

``ingest(idx, paths)`` walks files and folders of ``.txt .md .html .pdf .json .jsonl``, reads each
into blocks (headings and paragraphs), packs the blocks into chunks under a token budget with an
overlap, and upserts the chunks through the index's text model with their metadata
(``source``, ``position``, ``heading``) and text (kept for keyword search and snippets).

Re-running is a sync: a file whose content hash is unchanged is skipped, a changed file replaces
its chunks, a file that disappeared from an ingested folder loses its chunks. Unreadable or binary
files are reported and skipped, never fatal. Ranking of the chunks lives in :mod:`likewise.search`.
"""

from __future__ import annotations

import hashlib
import html.parser
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from .errors import InvalidArgumentError, MissingDependencyError

if TYPE_CHECKING:
    from .index import Index

__all__ = ["Block", "Chunk", "IngestReport", "SUPPORTED", "read_blocks", "chunk_blocks", "ingest"]

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".json", ".jsonl")
WORD = re.compile(r"\S+")
MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Block:
    """A paragraph of text under a heading path (``("Guide", "Install")``)."""

    text: str
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A piece of a document small enough to embed well."""

    text: str
    position: int
    heading: str


@dataclass
class IngestReport:
    """What an ingest did."""

    files: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0


def _tokens(text: str) -> int:
    # Word pieces of English run about 1.3 per whitespace word; exactness does not matter here,
    # the budget only has to keep chunks well under the model's limit.
    return int(len(WORD.findall(text)) * 1.3) + 1


# -- readers -------------------------------------------------------------------------------------


def _paragraph_blocks(text: str, markdown: bool) -> list[Block]:
    blocks: list[Block] = []
    headings: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            joined = " ".join(line.strip() for line in para).strip()
            if joined:
                blocks.append(Block(joined, tuple(headings)))
            para.clear()

    for line in text.splitlines():
        heading = MD_HEADING.match(line) if markdown else None
        if heading:
            flush()
            level = len(heading.group(1))
            del headings[level - 1 :]
            headings.append(heading.group(2))
        elif not line.strip():
            flush()
        else:
            para.append(line)
    flush()
    return blocks


class _HtmlBlocks(html.parser.HTMLParser):
    BLOCK = {"p", "div", "li", "tr", "section", "article", "blockquote", "pre", "br", "td", "dd", "dt"}
    SKIP = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.headings: list[str] = []
        self.text: list[str] = []
        self.skipping = 0
        self.heading_level = 0

    def _flush(self) -> None:
        joined = " ".join("".join(self.text).split())
        self.text = []
        if not joined:
            return
        if self.heading_level:
            del self.headings[self.heading_level - 1 :]
            self.headings.append(joined)
        else:
            self.blocks.append(Block(joined, tuple(self.headings)))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading_level = int(tag[1])
        elif tag in self.BLOCK:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading_level = 0
        elif tag in self.BLOCK:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.text.append(data)


def _pdf_blocks(path: Path) -> list[Block]:
    try:
        from pypdf import PdfReader
    except ImportError as exc:
        raise MissingDependencyError("reading PDF files needs pypdf: pip install 'likewise[docs]'") from exc
    blocks: list[Block] = []
    for number, page in enumerate(PdfReader(str(path)).pages, 1):
        for block in _paragraph_blocks(page.extract_text() or "", markdown=False):
            blocks.append(Block(block.text, (f"page {number}",)))
    return blocks


def _json_blocks(records: Iterable[Any], fields: Sequence[str] | None) -> list[Block]:
    blocks: list[Block] = []
    for number, rec in enumerate(records):
        if isinstance(rec, dict):
            title_key = next((k for k in ("title", "name", "id") if k in rec), None)
            title = str(rec[title_key]) if title_key is not None else f"record {number}"
            keys = fields or [k for k, v in rec.items() if isinstance(v, str) and k != title_key]
            parts = [str(rec[k]) for k in keys if isinstance(rec.get(k), (str, int, float)) and str(rec[k]).strip()]
        elif isinstance(rec, str):
            parts, title = [rec], f"record {number}"
        else:
            continue
        if parts:
            blocks.append(Block("\n".join(parts), (title,)))
    return blocks


def read_blocks(path: Path, fields: Sequence[str] | None = None) -> list[Block]:
    """Read one file into blocks. Raises ``ValueError`` for content that is not text."""
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return _pdf_blocks(path)
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise ValueError("binary content")
    text = raw.decode("utf-8")
    if suffix in (".html", ".htm"):
        parser = _HtmlBlocks()
        parser.feed(text)
        parser.close()
        parser._flush()
        return parser.blocks
    if suffix == ".json":
        data = json.loads(text)
        return _json_blocks(data if isinstance(data, list) else [data], fields)
    if suffix == ".jsonl":
        return _json_blocks((json.loads(line) for line in text.splitlines() if line.strip()), fields)
    return _paragraph_blocks(text, markdown=suffix in (".md", ".markdown"))


# -- chunking ------------------------------------------------------------------------------------


def _split_long(text: str, budget: int) -> list[str]:
    """Cut a paragraph longer than the budget at sentence ends (or, failing that, words)."""
    sentences = re.split(r"(?<=[.!?])\s+", text)
    pieces: list[str] = []
    current: list[str] = []
    for sentence in sentences:
        if _tokens(sentence) > budget:
            words = sentence.split()
            step = max(1, int(budget / 1.3))
            sentence_parts = [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
        else:
            sentence_parts = [sentence]
        for part in sentence_parts:
            if current and _tokens(" ".join(current + [part])) > budget:
                pieces.append(" ".join(current))
                current = []
            current.append(part)
    if current:
        pieces.append(" ".join(current))
    return pieces


def chunk_blocks(blocks: Sequence[Block], max_tokens: int = 200, overlap: int = 40) -> list[Chunk]:
    """Pack blocks into chunks of at most ``max_tokens``, never across a change of heading.

    Each chunk after the first of a section starts with the last ``overlap`` tokens of the one
    before, so that a sentence cut at a boundary is still whole in one of them. The heading path is
    prefixed to the chunk text ("Guide › Install: …"), which gives short chunks their context.
    """
    if max_tokens < 16:
        raise InvalidArgumentError("max_tokens must be at least 16")
    if not 0 <= overlap < max_tokens // 2:
        raise InvalidArgumentError("overlap must be between 0 and half of max_tokens")
    chunks: list[Chunk] = []

    def emit(parts: list[str], headings: tuple[str, ...]) -> None:
        heading = " › ".join(headings)
        body = " ".join(parts).strip()
        if body:
            chunks.append(Chunk(f"{heading}: {body}" if heading else body, len(chunks), heading))

    current: list[str] = []
    current_headings: tuple[str, ...] | None = None
    for block in blocks:
        if current_headings is not None and block.headings != current_headings:
            emit(current, current_headings)
            current = []
        current_headings = block.headings
        for piece in _split_long(block.text, max_tokens - overlap) if _tokens(block.text) > max_tokens else [block.text]:
            if current and _tokens(" ".join(current + [piece])) > max_tokens:
                emit(current, current_headings)
                tail = " ".join(current).split()
                keep = int(overlap / 1.3)
                current = [" ".join(tail[-keep:])] if keep else []
            current.append(piece)
    if current_headings is not None:
        emit(current, current_headings)
    return chunks


# -- ingest --------------------------------------------------------------------------------------


def _walk(paths: Sequence[str | Path], report: IngestReport) -> tuple[list[Path], list[Path]]:
    """Files to read, and the folders they were found under (whose vanished files get deleted)."""
    files: list[Path] = []
    roots: list[Path] = []
    for raw in paths:
        path = Path(raw).resolve()
        if path.is_dir():
            roots.append(path)
            for child in sorted(path.rglob("*")):
                if child.is_file() and not any(part.startswith(".") for part in child.relative_to(path).parts):
                    if child.suffix.lower() in SUPPORTED:
                        files.append(child)
        elif path.is_file():
            files.append(path)
        else:
            report.skipped.append((str(path), "no such file or folder"))
    return list(dict.fromkeys(files)), roots


def _chunk_id(source: str, position: int) -> str:
    return f"{hashlib.sha1(source.encode()).hexdigest()[:20]}:{position}"


def ingest(
    idx: "Index",
    paths: Sequence[str | Path],
    *,
    fields: Sequence[str] | None = None,
    max_tokens: int = 200,
    overlap: int = 40,
    batch_size: int = 64,
    progress: Callable[[str, int, int], None] | None = None,
) -> IngestReport:
    """Sync files and folders into ``idx`` (an index bound to a text model); returns a report.

    ``fields`` chooses the fields of JSON records to embed (default: every string field).
    ``progress(path, files_done, chunks_done)`` is called after each file.
    """
    report = IngestReport()
    started = time.perf_counter()
    store, index_id = idx._store, idx._row.id
    known = store.sources(index_id)
    files, roots = _walk(paths, report)
    for number, path in enumerate(files, 1):
        source = str(path)
        report.files += 1
        try:
            raw = path.read_bytes()
            digest = hashlib.sha256(raw).hexdigest()
            previous = known.get(source)
            if previous is not None and previous[0] == digest:
                report.unchanged += 1
                continue
            chunks = chunk_blocks(read_blocks(path, fields), max_tokens, overlap)
        except MissingDependencyError:
            raise
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            report.skipped.append((source, f"{type(exc).__name__}: {exc}"))
            continue
        except Exception as exc:  # a malformed PDF can raise anything; report it, keep going
            report.skipped.append((source, f"unreadable: {type(exc).__name__}: {exc}"))
            continue
        for start in range(0, len(chunks), batch_size):
            part = chunks[start : start + batch_size]
            idx.upsert_texts(
                [
                    (_chunk_id(source, c.position), c.text, {"source": source, "position": c.position, "heading": c.heading})
                    for c in part
                ]
            )
        if previous is not None and previous[1] > len(chunks):
            idx.delete_by_ids([_chunk_id(source, p) for p in range(len(chunks), previous[1])])
        store.set_source(index_id, source, digest, len(chunks))
        report.chunks += len(chunks)
        if previous is None:
            report.added += 1
        else:
            report.updated += 1
        if progress is not None:
            progress(source, number, report.chunks)
    seen = {str(p) for p in files}
    for source, (_, count) in known.items():
        if source in seen or not any(Path(source).is_relative_to(root) for root in roots):
            continue
        if not Path(source).exists():
            idx.delete_by_ids([_chunk_id(source, p) for p in range(count)])
            store.delete_source(index_id, source)
            report.deleted += 1
    report.seconds = time.perf_counter() - started
    return report


def iter_files(paths: Sequence[str | Path]) -> Iterator[Path]:
    """The files an ingest of ``paths`` would read (for progress totals)."""
    files, _ = _walk(paths, IngestReport())
    yield from files
