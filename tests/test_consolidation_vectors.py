"""Consolidation with vectors: facts that say the same thing in other words are one fact.

The fixed-vector tests pin the rules (what merges, what a merged fact keeps,
order independence). The pairs below are where the thresholds in
``PARAPHRASE_COSINE`` come from: the shipped sample's restatements and
hand-written paraphrases and near-misses, run through the real local models.
"""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from soulprint.domain.consolidation import PARAPHRASE_COSINE, consolidate, paraphrase_texts, paraphrase_threshold
from soulprint.models.facts import Fact, fact_id
from soulprint.services.embeddings import DEFAULT_LOCAL_MODEL as DEFAULT_MODEL

DAY = 86_400.0
T0 = 1_700_000_000.0

_seq = itertools.count(1)


def fact(text: str, *, subject: str = "s", category: str = "preferences", t: float | None = T0) -> Fact:
    n = next(_seq)
    return Fact(fact_id=fact_id(f"chunk-{n}", 0), user_id="u", job_id="j", chunk_id=f"chunk-{n}",
                conversation_id=f"conv-{n}", message_ids=[f"m-{n}a", f"m-{n}b"], category=category, text=text,
                subject=subject, message_time=t)


def rows(facts) -> list[dict]:
    return [f.to_dict() for f in facts]


# --------------------------------------------------------------------------- the rules, with fixed vectors

# Two near-parallel directions (cosine 0.9) and one far from both.
CLOSE_A, CLOSE_B, FAR = [1.0, 0.0, 0.0], [0.9, 0.43589, 0.0], [0.0, 0.0, 1.0]


def test_paraphrases_in_one_subject_merge_keeping_every_mention_source_and_date():
    old = fact("Lives in Berlin.", subject="home city", t=T0)
    new = fact("Is based in Berlin.", subject="home city", t=T0 + 100 * DAY)
    vectors = {"Lives in Berlin.": CLOSE_A, "Is based in Berlin.": CLOSE_B}

    without = consolidate([old, new])
    assert len(without) == 1 and without[0].history  # lexically a different statement: a contradiction

    [merged] = consolidate([old, new], vectors, threshold=0.85)
    assert merged.text == "Is based in Berlin."  # the latest wording
    assert merged.mentions == 2 and merged.history == []
    assert (merged.first_seen, merged.last_seen) == (T0, T0 + 100 * DAY)
    assert {(s["chunk_id"], tuple(s["message_ids"])) for s in merged.sources} == {
        (f.chunk_id, tuple(f.message_ids)) for f in (old, new)}

    # Below the threshold they stay what the lexical rules make of them.
    assert rows(consolidate([old, new], vectors, threshold=0.95)) == rows(without)


def test_across_subjects_only_a_statement_that_adds_nothing_merges():
    short = fact("Decided to move the pipeline to Dagster.", subject="decision: pipeline dagster", category="decisions",
                 t=T0)
    longer = fact("Decided to move the pipeline to Dagster in March and they don't regret it.",
                  subject="decision: pipeline dagster march", category="decisions", t=T0 + 60 * DAY)
    [merged] = consolidate([short, longer], {short.text: CLOSE_A, longer.text: CLOSE_B}, threshold=0.85)
    assert merged.text == longer.text and merged.mentions == 2
    assert merged.first_seen == T0 and merged.last_seen == T0 + 60 * DAY

    # Close vectors, but each says something the other does not: two facts.
    dark = fact("Prefers dark mode in every app.", subject="prefers: dark mode")
    light = fact("Prefers light mode in every app.", subject="prefers: light mode")
    assert len(consolidate([dark, light], {dark.text: CLOSE_A, light.text: CLOSE_B}, threshold=0.85)) == 2


def test_names_and_numbers_must_agree():
    a = fact("Wants answers in British English.", subject="spelling", t=T0)
    b = fact("Wants answers in American English.", subject="spelling", t=T0 + DAY)
    [f] = consolidate([a, b], {a.text: CLOSE_A, b.text: CLOSE_A}, threshold=0.85)
    assert f.text == b.text and [h["text"] for h in f.history] == [a.text]  # a change, not a restatement


def test_categories_never_merge_and_missing_vectors_fall_back_to_the_lexical_rules():
    a = fact("Moved the pipeline to Dagster.", category="decisions", subject="x")
    b = fact("Moved the pipeline to Dagster.", category="projects", subject="y")
    c = fact("Uses Dagster at work.", category="decisions", subject="z")
    out = consolidate([a, b, c], {a.text: CLOSE_A, c.text: CLOSE_A}, threshold=0.85)
    assert sorted((f.category, f.text) for f in out) == [
        ("decisions", a.text), ("decisions", c.text), ("projects", b.text)]  # c adds "uses", "work"
    assert rows(consolidate([a, b, c], {}, threshold=0.85)) == rows(consolidate([a, b, c]))


def test_merging_does_not_depend_on_the_order_of_the_facts():
    rng = random.Random(7)
    words = ["Berlin", "Lisbon", "Dagster", "Airflow", "tea", "coffee"]
    facts, vectors = [], {}
    for i in range(120):
        w = rng.choice(words)
        text = rng.choice([f"Likes {w}.", f"Really likes {w}.", f"Likes {w} a lot."])
        facts.append(fact(text, subject=rng.choice([f"likes {w}", f"{w}", f"{w} fan"]), t=T0 + rng.randrange(50) * DAY))
        base = [0.0] * len(words)
        base[words.index(w)] = 1.0
        vectors[text] = [x + rng.random() * 0.05 for x in base]
    assert sorted(vectors) == sorted(paraphrase_texts(facts))
    expected = rows(consolidate(facts, vectors, threshold=0.9))
    for _ in range(5):
        rng.shuffle(facts)
        assert rows(consolidate(facts, dict(reversed(list(vectors.items()))), threshold=0.9)) == expected
    assert len(expected) == len(words)  # each word's wordings became one fact


def test_five_thousand_distinct_statements_group_quickly():
    """The worst case: no two alike, so every statement starts a group and meets every earlier one
    (20,000 take about 4 s on this machine: the work grows with the square)."""
    rng = random.Random(3)
    vocabulary = [f"w{i}" for i in range(5_000)]
    facts, vectors = [], {}
    for i in range(5_000):
        text = " ".join(rng.sample(vocabulary, 6)) + f" {i}."
        facts.append(fact(text, subject=f"s{i % 50}"))
        vectors[text] = [rng.gauss(0, 1) for _ in range(64)]
    assert len(consolidate(facts, vectors, threshold=0.8)) == 50  # one per subject, the rest history


def test_only_measured_models_have_a_threshold():
    assert paraphrase_threshold("local", DEFAULT_MODEL) == 0.80
    assert paraphrase_threshold("hash", "hash") is None  # feature hashing sees words, not meaning
    assert paraphrase_threshold("bedrock-titan", "amazon.titan-embed-text-v2:0") is None  # not measured here


# --------------------------------------------------------------------------- measured pairs, real models

# (category, a, b): the same thing said twice. The first four are the shipped
# sample's restatements (tests/test_memory_quality.py sees them end to end).
PARAPHRASES = [
    ("decisions", "Decided to move the pipeline to Dagster.",
     "Decided to move the pipeline to Dagster in March and they don't regret it."),
    ("dates", "Noted 2025-09-14: We're getting married on 14 September 2025 in Sintra.",
     "Noted 2025-09-14: Oh and we're getting married on 14 September 2025 in Sintra with about 70 guests."),
    ("dates", "Noted 2025-09-14: We're getting married on 14 September 2025 in Sintra.",
     "Noted 2025-09-14: We're getting married on 14 September 2025 in Sintra with about 70 guests."),
    ("dates", "Noted 2025-03-03: Following up on the invoice from 3 March: it still shows the wrong amount.",
     "Noted 2025-03-03: …\"Following up on the invoice from 3 March: it still shows the wrong amount."),
    ("projects", "Is building Harbor, a shipment-tracking pipeline.",
     "Works on Harbor, the pipeline that tracks shipments."),
    ("decisions", "Decided to use Postgres for Harbor.", "Decided on Postgres as Harbor's database."),
    ("preferences", "Works at Tidewater as a data engineer.", "Is a data engineer at Tidewater."),
    ("preferences", "Has a dog named Pixel.", "Their dog is called Pixel."),
    ("preferences", "Prefers dark mode in every app.", "Prefers dark mode everywhere."),
    ("preferences", "Prefers Python for scripting.", "Prefers Python when writing scripts."),
    ("preferences", "Lives in Berlin with their partner.", "Lives with their partner in Berlin."),
    ("preferences", "Dislikes long preambles, please just get to the point.", "Dislikes long preambles."),
    ("decisions", "Decided to stop using Jira for personal tasks.",
     "Decided to stop using Jira for personal tasks because it is too heavy."),
    ("projects", "Is planning a trip to Japan in April.", "Is planning a trip to Japan in April with their sister."),
    ("beliefs", "Believes data contracts matter more than whichever orchestrator you pick.",
     "Still believes data contracts matter more than the orchestrator."),
    ("preferences", "Is learning Portuguese.", "Is studying Portuguese."),
    ("preferences", "Lives in Berlin.", "Is based in Berlin."),
    # Below wordllama's threshold: other words for the same thing (a limit of a static model).
    ("preferences", "Prefers concise answers.", "Wants answers to be brief."),
    ("preferences", "Uses VS Code as their editor.", "Writes code in VS Code."),
    ("preferences", "Prefers tea over coffee.", "Would rather drink tea than coffee."),
]
# Different facts of one category, however alike they look.
DIFFERENT = [
    ("decisions", "Decided to move the pipeline to Dagster.", "Decided to move the pipeline to Airflow."),
    ("decisions", "Decided to use Postgres for Harbor.", "Decided to use MongoDB for Harbor."),
    ("decisions", "Decided to move the pipeline to Dagster.", "Decided to learn Portuguese before the wedding."),
    ("dates", "Noted 2025-09-14: We're getting married on 14 September 2025 in Sintra.",
     "Noted 2024-11-03: they're training for their first marathon, Porto on 3 November."),
    ("preferences", "Wants answers in British English.", "Wants answers in American English."),
    ("preferences", "Prefers Python for scripting.", "Prefers Go for scripting."),
    ("preferences", "Has a dog named Pixel.", "Has a cat named Pixel."),
    ("preferences", "Works at Tidewater as a data engineer.", "Works at Tidewater as a product manager."),
    ("preferences", "Prefers concise answers.", "Prefers concise commit messages."),
    ("preferences", "Lives in Berlin.", "Lives in Munich."),
    ("preferences", "Their manager is Sam.", "Their manager is Alex."),
    ("preferences", "Uses VS Code as their editor.", "Uses Neovim as their editor."),
    ("projects", "Is building Harbor, a shipment-tracking pipeline.", "Is building Lighthouse, a photo-sharing app."),
    ("beliefs", "Believes data contracts matter more than the orchestrator.",
     "Believes tests matter more than documentation."),
    # Swapped antonyms: vectors put these at 0.82-0.87 (wordllama); only the
    # different-subject guard keeps them apart (see the test below).
    ("preferences", "Prefers dark mode in every app.", "Prefers light mode in every app."),
    ("beliefs", "Believes remote work makes teams more productive.",
     "Believes office work makes teams more productive."),
    ("preferences", "Likes hiking in the mountains.", "Likes hiking by the sea."),
    ("preferences", "Prefers working early in the morning.", "Prefers working late at night."),
]
ANTONYMS = DIFFERENT[-4:]
# Paraphrases each model must find (its recall on PARAPHRASES is asserted too).
MUST_MERGE = {DEFAULT_MODEL: PARAPHRASES[:4]}
MIN_RECALL = {DEFAULT_MODEL: 0.8, "use-multilingual-v3": 0.4, "multilingual-e5-small-q4": 0.3}


def local_embedder(model: str):
    from soulprint.services.embeddings import EmbeddingError, LocalEmbedder

    try:
        return LocalEmbedder(model)
    except EmbeddingError as exc:  # an optional model's package is not installed
        pytest.skip(str(exc))


def merged(category: str, a: str, b: str, vectors, threshold: float, *, same_subject: bool) -> bool:
    facts = [fact(a, category=category, subject="one" if same_subject else "first", t=T0),
             fact(b, category=category, subject="one" if same_subject else "second", t=T0 + DAY)]
    out = consolidate(facts, vectors, threshold)
    return len(out) == 1 and not out[0].history


@pytest.mark.parametrize("model", [
    # The optional models take seconds to load: the integration lane runs them.
    m if m == DEFAULT_MODEL else pytest.param(m, marks=pytest.mark.integration)
    for m in sorted(m for p, m in PARAPHRASE_COSINE if p == "local")])
def test_measured_pairs_with_the_real_model(model):
    embedder = local_embedder(model)
    threshold = paraphrase_threshold("local", model)
    texts = sorted({t for _, a, b in PARAPHRASES + DIFFERENT for t in (a, b)})
    vectors = dict(zip(texts, asyncio.run(embedder.embed_all(texts, "document"))))

    for same_subject in (True, False):
        wrong = [(a, b) for c, a, b in DIFFERENT
                 if merged(c, a, b, vectors, threshold, same_subject=same_subject)
                 and (same_subject is False or (c, a, b) not in ANTONYMS)]
        assert wrong == [], f"{model} merged different facts (same subject: {same_subject})"
    found = [(c, a, b) for c, a, b in PARAPHRASES if merged(c, a, b, vectors, threshold, same_subject=True)]
    assert all(p in found for p in MUST_MERGE.get(model, ())), model
    assert len(found) >= MIN_RECALL[model] * len(PARAPHRASES), (model, len(found))


def test_within_one_subject_a_swapped_antonym_still_shows_the_newest_statement():
    """The price of the same-subject threshold: dark/light mode fold into one
    fact instead of a change with history, but what MEMORY says is the same."""
    embedder = local_embedder(DEFAULT_MODEL)
    texts = [t for _, a, b in ANTONYMS for t in (a, b)]
    vectors = dict(zip(texts, asyncio.run(embedder.embed_all(texts, "document"))))
    for category, a, b in ANTONYMS:
        facts = [fact(a, category=category, subject="one", t=T0), fact(b, category=category, subject="one",
                                                                      t=T0 + DAY)]
        [with_vectors] = consolidate(facts, vectors, paraphrase_threshold("local", DEFAULT_MODEL))
        [lexical] = consolidate(facts)
        assert with_vectors.text == lexical.text == b
