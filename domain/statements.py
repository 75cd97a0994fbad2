"""When two statements about a person say the same thing.

Consolidation, MEMORY and the v2 sections all ask it, at two strengths:

- :func:`similarity`: the lexical restatement test (same words, or nearly the
  same characters) that consolidation has always used within one subject;
- :class:`Statement` and :func:`restates`: the test the rendered documents use
  across lists. It also sees through what differs between MEMORY's
  third-person bullets and the first-person lines read from a conversation
  ("I don't regret it" / "they don't regret it"), articles, plurals, and a
  statement that is another one with more said after it;
- :func:`adds_nothing` and :func:`names_agree`: the guards a vector match must
  pass as well. Sentence vectors cannot tell "prefers dark mode" from
  "prefers light mode" (cosine 0.86 with the default model) or "British
  English" from "American English"; these two checks can.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

JACCARD_DUPLICATE = 0.8  # token sets this similar say the same thing
RATIO_DUPLICATE = 0.9  # ... or characters this similar (typos, plurals, punctuation)
# Below this Jaccard two statements cannot reach RATIO_DUPLICATE either (they
# share too few words); lower than JACCARD_DUPLICATE so the difflib test also
# sees near-misses in token terms ("answer"/"answers").
CANDIDATE_JACCARD = 0.5
# A statement repeated inside a longer one counts as a repeat only from this
# many words on: "Python" inside "Prefers Python for scripts" is a label, not
# a repeated statement.
MIN_CONTAINED_WORDS = 4

_WORD = re.compile(r"[^\W_]+")
# First person (a conversation's words) read as the third person (MEMORY's):
# the tokens of "I'm" are "i" and "m", of "they're" "they" and "re".
_PERSON = {"i": "they", "me": "them", "my": "their", "mine": "theirs", "myself": "themselves", "we": "they",
           "us": "them", "our": "their", "ours": "theirs", "am": "are", "m": "re"}
# One stance in the words of different lists: MEMORY's "Dislikes long
# preambles" is AGENTS' "Avoid long preambles".
_STANCE = {"dislike": "avoid", "hate": "avoid"}
_ARTICLES = frozenset({"a", "an", "the"})
# Words that carry no content of their own: a statement that adds only these
# to another adds nothing.
_FUNCTION_WORDS = frozenset(
    "they them their theirs themselves he she it its is are was were be been re s t ve ll d and or but so to of in "
    "on at for with by from as that this these those there then than also just still really very oh well "
    "honestly actually always".split())
_BULLET_PREFIX = re.compile(r"^\s*(?:[-*•·]+|\d+[.)])\s*")
# Names and numbers: a word with a digit, or a capitalised word that does not
# start a sentence (or a clause after a colon).
_NAME = re.compile(r"(?<![.:!?]\s)(?<!^)\b(?:[A-Z][\w'’-]*|\w*\d[\w-]*)")


def normalise_text(text: str) -> str:
    """Case-folded words only: "Prefers concise answers!" == "prefers  concise answers"."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def similarity(norm_a: str, tokens_a: frozenset[str], norm_b: str, tokens_b: frozenset[str]) -> float | None:
    """How alike two normalised statements are, or None when they are not near-duplicates."""
    if norm_a == norm_b:
        return 1.0
    j = _jaccard(tokens_a, tokens_b)
    if j >= JACCARD_DUPLICATE:
        return j
    if j < CANDIDATE_JACCARD:
        # Character-level near-duplicates share most of their words too; this
        # cheap gate keeps difflib for the few pairs that can still pass.
        return None
    la, lb = len(norm_a), len(norm_b)
    # A ratio >= 0.9 needs lengths within ~20% of each other; checking that
    # first keeps the quadratic SequenceMatcher off most pairs.
    if not la or not lb or min(la, lb) / max(la, lb) < RATIO_DUPLICATE:
        return None
    sm = difflib.SequenceMatcher(None, norm_a, norm_b, autojunk=False)
    if sm.real_quick_ratio() < RATIO_DUPLICATE or sm.quick_ratio() < RATIO_DUPLICATE:
        return None
    r = sm.ratio()
    return r if r >= RATIO_DUPLICATE else None


def _stem(word: str) -> str:
    # Enough for "prefers"/"prefer" and "answers"/"answer"; applied to both
    # sides alike, so a wrong stem ("does" -> "doe") still compares equal.
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _subjectless(words: tuple[str, ...]) -> tuple[str, ...]:
    # MEMORY's bullets leave the person out ("Is building Harbor", "Prefers
    # tea"); "I'm building Harbor" and "They prefer tea" say the same.
    if words[:1] != ("they",):
        return words
    rest = words[1:]
    return ("is",) + rest[1:] if rest[:1] in (("re",), ("are",)) else rest


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement as the comparisons see it: person, case, articles and plurals levelled."""

    words: tuple[str, ...]
    norm: str  # the words, space-separated
    tokens: frozenset[str]
    content: frozenset[str]  # tokens that carry content (not function words)
    names: frozenset[str]  # see :func:`names`

    @classmethod
    def of(cls, text: str) -> "Statement":
        text = _BULLET_PREFIX.sub("", text)
        levelled = (_PERSON.get(w, w) for w in _WORD.findall(unicodedata.normalize("NFKC", text).casefold()))
        stems = (_stem(w) for w in levelled if w not in _ARTICLES)
        words = _subjectless(tuple(_STANCE.get(w, w) for w in stems))
        tokens = frozenset(words)
        return cls(words, " ".join(words), tokens, tokens - _FUNCTION_WORDS, names(text))


def _contains(longer: Statement, shorter: Statement) -> bool:
    n = len(shorter.words)
    return n >= MIN_CONTAINED_WORDS and f" {shorter.norm} " in f" {longer.norm} "


def restates(a: Statement, b: Statement) -> bool:
    """True when one statement repeats the other: the same words, a lexical
    near-duplicate, or one said word for word inside the other; never when
    they disagree on a name or number ("bullet 1" is not "bullet 2")."""
    if not a.words or not b.words or not _nested(a.names, b.names):
        return False
    if similarity(a.norm, a.tokens, b.norm, b.tokens) is not None:
        return True
    shorter, longer = sorted((a, b), key=lambda s: (len(s.words), s.norm))
    return _contains(longer, shorter)


def adds_nothing(a: Statement, b: Statement) -> bool:
    """True when the shorter statement says nothing the longer does not: every
    content word of it is in the other ("Decided to move the pipeline to
    Dagster" and "... in March and they don't regret it")."""
    shorter, longer = sorted((a, b), key=lambda s: (len(s.content), s.norm))
    return bool(shorter.content) and shorter.content <= longer.tokens


def names(text: str) -> frozenset[str]:
    """The names and numbers a statement mentions, case-folded."""
    found = (m.group(0).casefold() for m in _NAME.finditer(text))
    return frozenset(w for w in found if w != "i" and not w.startswith(("i'", "i’")))


def names_agree(a: str, b: str) -> bool:
    """True unless each statement names someone, somewhere or some number the
    other does not (one may name more: it says more about the same thing)."""
    return _nested(names(a), names(b))


def _nested(a: frozenset[str], b: frozenset[str]) -> bool:
    return a <= b or b <= a


class StatementSet:
    """The statements already written, in order; :meth:`add` refuses a repeat."""

    def __init__(self) -> None:
        self._seen: list[Statement] = []

    def add(self, text: str) -> bool:
        """Record ``text`` and return True, or return False when it repeats one already written."""
        s = Statement.of(text)
        if not s.words or any(restates(s, seen) for seen in self._seen):
            return False
        self._seen.append(s)
        return True
