"""Documents: reading, chunking, sync ingest, keyword/vector/hybrid search, and the semantic cache."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import likewise
from likewise import errors as E
from likewise.cli import main
from likewise.documents import Block, chunk_blocks, read_blocks
from likewise.semantic_cache import SemanticCache

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def tiny_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` (hand-made, so the test needs no PDF writer)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


def test_markdown_headings_and_paragraphs(tmp_path: Path) -> None:
    f = tmp_path / "g.md"
    f.write_text("# Guide\n\nIntro line one\nline two.\n\n## Install\n\nRun pip.\n\n# Other\n\nText.\n")
    assert read_blocks(f) == [
        Block("Intro line one line two.", ("Guide",)),
        Block("Run pip.", ("Guide", "Install")),
        Block("Text.", ("Other",)),
    ]


def test_html_skips_scripts_and_keeps_headings(tmp_path: Path) -> None:
    f = tmp_path / "p.html"
    f.write_text("<html><head><title>t</title><script>var x=1;</script></head><body><h2>Cats</h2>"
                 "<p>Cats <b>purr</b>.</p><div>Dogs bark.</div></body></html>")
    assert read_blocks(f) == [Block("Cats purr .", ("Cats",)), Block("Dogs bark.", ("Cats",))] or read_blocks(f) == [
        Block("Cats purr.", ("Cats",)), Block("Dogs bark.", ("Cats",))]


def test_json_fields_and_pdf(tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text('{"title": "Rust", "body": "Systems language", "n": 3}\n{"title": "Py", "body": "Dynamic"}\n')
    assert read_blocks(f, ["body"]) == [Block("Systems language", ("Rust",)), Block("Dynamic", ("Py",))]
    pdf = tmp_path / "d.pdf"
    pdf.write_bytes(tiny_pdf("Hello from a PDF file"))
    assert read_blocks(pdf) == [Block("Hello from a PDF file", ("page 1",))]


def test_chunks_respect_budget_overlap_and_headings() -> None:
    sentence = "word " * 30
    blocks = [Block(f"Paragraph {i}. " + sentence, ("A",)) for i in range(6)] + [Block("Short.", ("B",))]
    chunks = chunk_blocks(blocks, max_tokens=100, overlap=20)
    assert all(len(c.text.split()) * 1.3 <= 100 + 40 for c in chunks)
    assert chunks[-1].text == "B: Short." and chunks[-1].heading == "B"
    assert all(c.heading == "A" for c in chunks[:-1])
    first_tail = chunks[0].text.split()[-10:]
    assert chunks[1].text.split()[1 : 1 + len(first_tail)] == first_tail or " ".join(first_tail[-5:]) in chunks[1].text
    assert [c.position for c in chunks] == list(range(len(chunks)))
    long = chunk_blocks([Block("x " * 1000)], max_tokens=64, overlap=8)
    assert len(long) > 10
    with pytest.raises(E.InvalidArgumentError):
        chunk_blocks(blocks, max_tokens=100, overlap=80)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "install.md").write_text("# Install\n\nInstall likewise with pip install likewise. It needs Python 3.11.\n")
    (d / "cats.html").write_text("<h1>Cats</h1><p>Kittens sleep most of the day and purr when content.</p>")
    (d / "langs.jsonl").write_text('{"title": "Rust", "body": "A systems programming language without a garbage collector."}\n')
    (d / "blob.txt").write_bytes(b"\x00\x01\x02 binary")
    (d / "notes.pdf").write_bytes(tiny_pdf("Quarterly revenue grew by twelve percent"))
    return d


@pytest.mark.model
def test_ingest_is_a_sync_and_search_modes(tmp_path: Path, folder: Path) -> None:
    with likewise.open(tmp_path / "data") as db:
        idx = db.create_index("docs", model=MODEL)
        report = likewise.ingest(idx, [folder])
        assert (report.files, report.added, report.chunks) == (5, 4, 4)
        assert [Path(p).name for p, _ in report.skipped] == ["blob.txt"]
        again = likewise.ingest(idx, [folder])
        assert (again.unchanged, again.added, again.chunks) == (4, 0, 0)

        kw = idx.search("garbage collector", mode="keyword", top_k=3)
        assert kw.hits[0].source.endswith("langs.jsonl") and "[garbage]" in kw.hits[0].snippet
        vec = idx.search("young cats napping", mode="vector", top_k=1)
        assert vec.hits[0].source.endswith("cats.html") and vec.hits[0].position == 0
        hyb = idx.search("how do I install it with pip", top_k=2)
        assert hyb.mode == "hybrid" and hyb.hits[0].source.endswith("install.md")
        assert hyb.hits[0].text.startswith("Install: Install likewise")
        only_pdf = idx.search("money", top_k=5, filter={"source": str(folder / "notes.pdf")})
        assert [h.source for h in only_pdf.hits] == [str(folder / "notes.pdf")]

        (folder / "install.md").write_text("# Install\n\nUse the package manager uv to add likewise.\n")
        (folder / "cats.html").unlink()
        sync = likewise.ingest(idx, [folder])
        assert (sync.updated, sync.deleted, sync.unchanged) == (1, 1, 2)
        assert idx.info().vector_count == 3
        assert all(not (h.source or "").endswith("cats.html") for h in idx.search("kittens", top_k=5).hits)
        assert "uv" in idx.search("package manager", mode="keyword").hits[0].text


@pytest.mark.model
def test_cli_ingest_and_search(tmp_path: Path, folder: Path) -> None:
    data = str(tmp_path / "data")
    result = CliRunner().invoke(main, ["ingest", str(folder), "--index", "kb", "--data", data, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["chunks"] == 4 and out["skipped"][0]["path"].endswith("blob.txt")
    result = CliRunner().invoke(main, ["search", "purring kittens", "-i", "kb", "--data", data, "--json", "-k", "1"])
    hit = json.loads(result.stdout)["hits"][0]
    assert hit["source"].endswith("cats.html") and hit["score"] > 0


@pytest.mark.model
def test_semantic_cache(tmp_path: Path) -> None:
    with likewise.open(tmp_path / "data") as db:
        cache = SemanticCache(db, "answers", threshold=0.9, ttl=3)
        cache.set("What is the capital of France?", {"text": "Paris"}, {"model": "llm-x"})
        hit = cache.lookup("Which city is the capital of France?")
        assert hit is not None and hit.answer == {"text": "Paris"} and hit.similarity >= 0.9
        assert hit.metadata == {"model": "llm-x"}
        assert cache.get("What is the capital of Germany?") is None
        assert cache.get("How do I bake bread?", default="miss") == "miss"
        stats = cache.stats()
        assert (stats.hits, stats.misses, stats.entries) == (1, 2, 1) and stats.hit_rate == pytest.approx(1 / 3)
        big = "x" * 50_000  # answers are not bound by the 10 KiB metadata limit
        cache.set("Tell me a long story", big)
        assert cache.get("Tell me a long story") == big
        time.sleep(3.1)
        assert cache.get("What is the capital of France?") is None  # expired
        assert cache.purge_expired() == 2
    with likewise.open(tmp_path / "data") as db:
        with pytest.raises(E.InvalidArgumentError, match="below 0.85"):
            SemanticCache(db, "answers", threshold=0.6)
        with pytest.warns(UserWarning):
            SemanticCache(db, "answers", threshold=0.6, allow_unsafe=True)
