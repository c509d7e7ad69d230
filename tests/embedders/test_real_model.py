"""The bundled all-MiniLM-L6-v2 through ONNX Runtime gives sentence-transformers' vectors.

Marked ``model``: it exports the real model (once per cache directory) and runs both stacks on
200 varied texts. The 1,000-text check on real Debian descriptions is in benchmarks/bench_embed.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from likewise.embedders import TextEmbedder
from likewise.embedders.text import cpu_has_amx_bf16

pytestmark = pytest.mark.model

BASE = [
    "A man is playing a guitar on a quiet street corner.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "How do I reset my password if I no longer have access to my email?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "She scored twice in the second half, sealing the championship for her club.",
    "Preheat the oven to 200°C and bake the bread for 35 minutes.",
    "def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "SELECT name, count(*) FROM packages GROUP BY section ORDER BY 2 DESC;",
    "Error: connection refused (errno 111) while contacting 10.0.0.12:5432",
    "The treaty was signed in 1648, ending thirty years of war in central Europe.",
    "Le chat dort sur le canapé pendant que la pluie tombe.",
    "Der Zug nach Berlin hat zwanzig Minuten Verspätung.",
    "El museo abre a las diez de la mañana todos los días excepto el lunes.",
    "東京は日本の首都です。",
    "Ω, π and ∑ are Greek letters used throughout mathematics.",
    "lol this is sooo good 😂😂 can't stop watching",
    "Terms and conditions apply. See store for details.",
    "The patient presented with fever, cough and shortness of breath for three days.",
    "Quantum entanglement links the states of particles regardless of distance.",
    "A lightweight, fast and secure web server with a small memory footprint.",
    "Utilities for manipulating filesystem extended attributes.",
    "GNU C Library: shared libraries and the dynamic linker.",
    "Real-time strategy game of ancient warfare.",
    "The committee will reconvene next Tuesday to finalise the budget.",
    "Is it going to rain tomorrow in Vancouver?",
    "Sitcom about four friends in New York who talk about nothing.",
    "Teenage girl at a gothic boarding school solves a murder mystery.",
    "Wine bar in Boston where everybody knows your name.",
    "Install the package with pip and run the tests with pytest.",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
    "",
    "   leading and trailing spaces   ",
    "UPPERCASE TEXT SHOULD BE LOWERCASED BY THE TOKENIZER",
    "Mixed-case CamelCaseIdentifiers and snake_case_names in one line.",
    "https://example.org/path?query=vector&limit=10#section",
    "The cat sat on the mat.",
    "The mat was sat on by the cat.",
    "A dog is running through a field of tall grass.",
    "An astronaut floats weightlessly inside the space station.",
    "Backups must be tested: an untested backup is not a backup.",
]


def texts() -> list[str]:
    out = list(BASE)
    rng = np.random.default_rng(7)
    while len(out) < 194:
        k = int(rng.integers(1, 3))
        out.append(" ".join(BASE[int(i)] for i in rng.choice(len(BASE), k, replace=False)))
    # Six texts past the 256-token limit: truncation must match too.
    while len(out) < 200:
        out.append(" ".join(BASE[int(i)] for i in rng.choice(len(BASE), 22, replace=True)))
    return out


def test_onnx_matches_sentence_transformers_on_200_texts() -> None:
    import sentence_transformers as st
    data = texts()
    embedder = TextEmbedder(backend="onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = embedder.embed_batch(data)
    assert embedder.truncated >= 6
    reference = st.SentenceTransformer(str(embedder.resolved.path), device="cpu").encode(
        data, batch_size=64
    )
    cosine = (ours * reference).sum(axis=1)
    assert ours.shape == (200, 384)
    assert float(cosine.mean()) >= 0.9999
    assert float(cosine.min()) >= 0.999


@pytest.mark.skipif(not cpu_has_amx_bf16(), reason="this CPU has no AMX-BF16 (bf16 is only chosen on such CPUs)")
def test_cpu_bf16_matches_sentence_transformers_on_200_texts() -> None:
    """The default on an AMX CPU (torch, bfloat16 matrix products) stays within the fp32 goal."""
    import sentence_transformers as st
    data = texts()
    embedder = TextEmbedder()
    assert (embedder.backend, embedder.precision) == ("torch", "bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = embedder.embed_batch(data)
    reference = st.SentenceTransformer(str(embedder.resolved.path), device="cpu").encode(
        data, batch_size=64
    )
    cosine = (ours * reference).sum(axis=1)
    assert float(cosine.mean()) >= 0.9999
    assert float(cosine.min()) >= 0.999
