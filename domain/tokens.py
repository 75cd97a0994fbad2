"""A deliberately crude token estimator.

Budgets in the pipeline (chunk sizes, the quick pass's prompt size) only need
to be right to within ~20%, and they are checked on every conversation of a
300 MB export, so we trade accuracy for speed and zero dependencies: no
tokenizer package, no model-specific vocabulary. English prose averages about
four characters per token for Claude- and GPT-class tokenizers; code, CJK text
and long numbers run denser, which is why callers keep a margin under any hard
model limit.
"""

from __future__ import annotations

# Heuristic ratio, shared so that code converting a token budget into a
# character budget (e.g. when cutting text) agrees exactly with the estimate.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Heuristic token count: ``ceil(len(text) / 4)``, and 0 for empty text.

    Rounding up means a non-empty string never costs 0 tokens, and a text of at
    most ``4 * n`` characters is guaranteed to estimate at most ``n`` tokens,
    which the chunker relies on to turn token budgets into character cuts.
    """
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
