import re
import uuid

import pytest

from soulprint.domain.chunking import NAMESPACE, ChunkingConfig, chunk_conversation, chunk_id
from soulprint.domain.tokens import estimate_tokens
from soulprint.models.domain import TIERS, Conversation, Message

DAY = 86_400.0
T0 = 1_700_000_000.0


def make_conv(conv_id="c1", texts=(), *, title="Trip planning", roles=None, times=None, created=T0, updated=None):
    roles = roles or ["user" if i % 2 == 0 else "assistant" for i in range(len(texts))]
    times = times if times is not None else [T0 + i * 60 for i in range(len(texts))]
    messages = [Message(f"{conv_id}-m{i}", role, text, t) for i, (role, text, t) in enumerate(zip(roles, texts, times))]
    return Conversation(conv_id, title, created, updated, "chatgpt", messages)


def sentence(n, words=10):
    """A numbered sentence, unique so we can check nothing is lost."""
    return "Sentence %05d says " % n + " ".join(["word"] * (words - 3)) + "."


def by_tier(chunks, tier):
    return [c for c in chunks if c.tier == tier]


def body_lines(chunk):
    """Content lines without the title header."""
    lines = chunk.content.split("\n")
    return lines[1:] if lines[0].startswith("Conversation: ") else lines


# -- identity and determinism ----------------------------------------------


def test_chunk_id_is_a_uuid5_of_user_conversation_tier_and_index():
    cid = chunk_id("u1", "c1", "medium", 3)
    assert cid == str(uuid.uuid5(NAMESPACE, "u1\x1fc1\x1fmedium\x1f3"))
    assert uuid.UUID(cid).version == 5
    others = {chunk_id("u2", "c1", "medium", 3), chunk_id("u1", "c2", "medium", 3),
              chunk_id("u1", "c1", "macro", 3), chunk_id("u1", "c1", "medium", 4)}
    assert cid not in others and len(others) == 4


def test_same_input_gives_same_ids_and_contents():
    conv = make_conv(texts=[" ".join(sentence(i) for i in range(k * 50, k * 50 + 50)) for k in range(12)])

    first = chunk_conversation("u1", conv)
    second = chunk_conversation("u1", conv)

    assert [(c.id, c.tier, c.index, c.content, c.message_ids, c.newest_time) for c in first] == [
        (c.id, c.tier, c.index, c.content, c.message_ids, c.newest_time) for c in second
    ]
    for c in first:
        assert c.id == chunk_id("u1", conv.id, c.tier, c.index)
    assert len({c.id for c in first}) == len(first)


def test_ids_depend_on_the_user():
    conv = make_conv(texts=["Hello there. I live in Lisbon."])
    ids_a = {c.id for c in chunk_conversation("alice", conv)}
    ids_b = {c.id for c in chunk_conversation("bob", conv)}
    assert ids_a.isdisjoint(ids_b)


def test_every_tier_is_present_and_indexed_from_zero():
    conv = make_conv(texts=[" ".join(sentence(i) for i in range(300))])
    chunks = chunk_conversation("u1", conv)
    for tier in TIERS:
        assert [c.index for c in by_tier(chunks, tier)] == list(range(len(by_tier(chunks, tier))))
        assert by_tier(chunks, tier), tier


def test_chunks_never_cross_conversations():
    a = make_conv("a", [sentence(i) for i in range(200)])
    b = make_conv("b", [sentence(i) for i in range(200, 400)])

    for conv, other in ((a, b), (b, a)):
        own_ids = {m.id for m in conv.messages}
        for chunk in chunk_conversation("u1", conv):
            assert chunk.conversation_id == conv.id
            assert set(chunk.message_ids) <= own_ids
        # and none of the other conversation's text leaks in
        other_text = {m.text for m in other.messages}
        assert not any(t in c.content for c in chunk_conversation("u1", conv) for t in other_text)


def test_empty_and_blank_conversations_give_no_chunks():
    assert chunk_conversation("u1", make_conv(texts=[])) == []
    assert chunk_conversation("u1", make_conv(texts=["   ", "\n\t"])) == []


# -- micro -----------------------------------------------------------------


def test_micro_chunks_are_about_200_chars_and_cut_at_sentence_ends():
    text = " ".join(sentence(i, words=8) for i in range(40))  # ~50 chars each
    conv = make_conv(texts=[text])

    micro = by_tier(chunk_conversation("u1", conv), "micro")

    assert len(micro) > 5
    for chunk in micro:
        assert chunk.content.startswith("User: ")
        assert len(chunk.content) <= 200
        assert chunk.content.endswith(".")  # whole sentences only
        assert chunk.message_ids == ["c1-m0"]
    # Packed, not one sentence each: all but the last are close to the limit.
    assert all(len(c.content) > 150 for c in micro[:-1])
    # Nothing lost, nothing repeated.
    joined = " ".join(c.content.removeprefix("User: ") for c in micro)
    assert joined == text


def test_micro_splits_at_newlines_too():
    conv = make_conv(texts=["Name: Ana Souza\nBorn: 1990-04-02\nCity: Porto"], title=None)
    micro = by_tier(chunk_conversation("u1", conv, ChunkingConfig(micro_chars=30)), "micro")
    assert [c.content for c in micro] == ["User: Name: Ana Souza", "User: Born: 1990-04-02", "User: City: Porto"]


def test_micro_never_mixes_two_messages():
    conv = make_conv(texts=["Short one.", "Short two.", "Short three."])
    micro = by_tier(chunk_conversation("u1", conv), "micro")
    assert [c.content for c in micro] == ["User: Short one.", "Assistant: Short two.", "User: Short three."]
    assert [c.message_ids for c in micro] == [["c1-m0"], ["c1-m1"], ["c1-m2"]]


def test_a_sentence_longer_than_the_micro_limit_is_cut_at_whitespace():
    words = [f"w{i:04d}" for i in range(300)]  # one 1,800-char sentence, no full stop
    conv = make_conv(texts=[" ".join(words)])

    micro = by_tier(chunk_conversation("u1", conv), "micro")

    assert len(micro) >= 9
    pieces = [c.content.removeprefix("User: ") for c in micro]
    assert all(len(c.content) <= 200 for c in micro)
    assert " ".join(pieces).split() == words  # no word was broken


def test_text_without_whitespace_is_hard_cut():
    blob = "x" * 1000
    conv = make_conv(texts=[blob])
    micro = by_tier(chunk_conversation("u1", conv), "micro")
    assert "".join(c.content.removeprefix("User: ") for c in micro) == blob
    assert all(len(c.content) <= 200 for c in micro)


def test_micro_covers_user_and_assistant_but_not_tool_or_blank_messages():
    conv = make_conv(
        texts=["I am a nurse.", "Nice to meet you.", '{"result": 42}', "   "],
        roles=["user", "assistant", "tool", "user"],
    )
    chunks = chunk_conversation("u1", conv)
    assert [c.content for c in by_tier(chunks, "micro")] == ["User: I am a nurse.", "Assistant: Nice to meet you."]
    # The tool output still belongs to the conversation's larger chunks.
    assert 'Tool: {"result": 42}' in by_tier(chunks, "medium")[0].content


# -- medium ----------------------------------------------------------------


def test_medium_chunks_are_about_2000_tokens_and_overlap_by_about_200():
    # 150 messages of ~100 tokens each: about 15,000 tokens in all.
    conv = make_conv(texts=[" ".join(sentence(i * 10 + k, words=10) for k in range(7)) for i in range(150)])

    medium = by_tier(chunk_conversation("u1", conv), "medium")

    assert 7 <= len(medium) <= 11
    for chunk in medium:
        assert chunk.token_count == estimate_tokens(chunk.content)
        assert chunk.token_count <= 2000
    assert all(c.token_count >= 1700 for c in medium[:-1])

    for prev, nxt in zip(medium, medium[1:]):
        prev_lines, next_lines = body_lines(prev), body_lines(nxt)
        # The next chunk starts with the tail of the previous one: maybe the
        # closing sentences of a message (marked "…"), then whole messages...
        partial = next_lines[0] if "\u2026" in next_lines[0] else None
        rest = next_lines[1:] if partial else next_lines
        whole = [line for line in rest if line in prev_lines]
        assert whole == rest[: len(whole)] == prev_lines[len(prev_lines) - len(whole):]
        overlap = whole
        if partial:
            label, _, tail = partial.partition(": \u2026")
            before = prev_lines[len(prev_lines) - len(whole) - 1]
            assert before.startswith(label + ": ") and before.endswith(tail)
            overlap = [partial, *whole]
        # ...worth about 200 tokens, never more.
        assert 150 <= estimate_tokens("\n".join(overlap)) <= 200
        assert prev.message_ids[-len(overlap):] == nxt.message_ids[: len(overlap)]

    # Every message is covered, in order.
    covered = list(dict.fromkeys(mid for c in medium for mid in c.message_ids))
    assert covered == [m.id for m in conv.messages]


def test_medium_packs_whole_messages_and_starts_with_the_title():
    conv = make_conv(texts=["Where should I stay in Lisbon?", "Alfama is lovely.", "Booked it!"])
    medium = by_tier(chunk_conversation("u1", conv), "medium")
    assert len(medium) == 1
    assert medium[0].content == (
        "Conversation: Trip planning\n"
        "User: Where should I stay in Lisbon?\n"
        "Assistant: Alfama is lovely.\n"
        "User: Booked it!"
    )
    assert medium[0].message_ids == ["c1-m0", "c1-m1", "c1-m2"]


def test_a_giant_single_message_is_cut_at_sentences_with_overlap():
    sentences = [sentence(i, words=12) for i in range(3000)]  # ~200k chars, ~50k tokens
    conv = make_conv(texts=["hi", " ".join(sentences), "thanks"], roles=["user", "user", "assistant"])

    medium = by_tier(chunk_conversation("u1", conv), "medium")

    assert 25 <= len(medium) <= 35
    for chunk in medium:
        assert chunk.token_count <= 2000
        assert chunk.content.startswith("Conversation: Trip planning\n")
        assert all(line.startswith(("User: ", "Assistant: ")) for line in body_lines(chunk))
    middle = medium[1:-1]
    assert all(c.message_ids == ["c1-m1"] for c in middle)
    assert all(c.token_count >= 1600 for c in middle)
    # The overlap is the closing sentences of the previous piece, marked as a tail.
    for prev, nxt in zip(middle, middle[1:]):
        tail = body_lines(nxt)[0]
        assert tail.startswith("User: \u2026Sentence ")
        assert prev.content.endswith(tail.removeprefix("User: \u2026"))
        assert estimate_tokens(tail) <= 200
    # Every sentence survives whole somewhere.
    everything = "\n".join(c.content for c in medium)
    assert all(s in everything for s in sentences)
    assert medium[0].message_ids[0] == "c1-m0" and medium[-1].message_ids[-1] == "c1-m2"


def test_a_giant_message_without_sentences_is_cut_at_whitespace_then_hard():
    words = " ".join(f"w{i:05d}" for i in range(5000))  # 35k chars, no punctuation
    blob = "z" * 20_000  # no whitespace at all
    conv = make_conv(texts=[words, blob], title=None)

    medium = by_tier(chunk_conversation("u1", conv), "medium")

    assert all(c.token_count <= 2000 for c in medium)
    user_pieces = [line for c in medium for line in body_lines(c) if line.startswith("User: ") and "\u2026" not in line]
    assert " ".join(p.removeprefix("User: ") for p in user_pieces).split() == words.split()
    zs = [line for c in medium for line in body_lines(c) if line.startswith("Assistant: z")]
    assert "".join(z.removeprefix("Assistant: ") for z in zs) == blob


# -- macro -----------------------------------------------------------------


def test_macro_chunks_are_about_5000_chars_without_overlap():
    conv = make_conv(texts=[" ".join(sentence(i * 10 + k) for k in range(5)) for i in range(120)])

    macro = by_tier(chunk_conversation("u1", conv), "macro")

    assert len(macro) >= 5
    assert all(len(c.content) <= 5000 for c in macro)
    assert all(len(c.content) >= 4500 for c in macro[:-1])
    assert all(c.token_count == estimate_tokens(c.content) for c in macro)
    # No overlap: the bodies laid end to end are exactly the conversation.
    lines = [line for c in macro for line in body_lines(c)]
    expected = [("User: " if i % 2 == 0 else "Assistant: ") + m.text for i, m in enumerate(conv.messages)]
    assert lines == expected
    all_ids = [mid for c in macro for mid in c.message_ids]
    assert all_ids == [m.id for m in conv.messages]


def test_macro_cuts_a_large_message_into_pieces():
    text = " ".join(sentence(i) for i in range(500))  # ~28k chars
    macro = by_tier(chunk_conversation("u1", make_conv(texts=[text])), "macro")
    assert len(macro) >= 6
    assert all(len(c.content) <= 5000 and c.message_ids == ["c1-m0"] for c in macro)
    assert " ".join(line.removeprefix("User: ") for c in macro for line in body_lines(c)) == text


# -- bookkeeping -----------------------------------------------------------


def test_newest_time_is_the_newest_message_covered():
    texts = [" ".join(sentence(i * 10 + k) for k in range(40)) for i in range(10)]
    times = [T0 + i * DAY for i in range(10)]
    times[3] = None
    chunks = chunk_conversation("u1", make_conv(texts=texts, times=times))
    time_of = {f"c1-m{i}": t for i, t in enumerate(times)}
    for chunk in chunks:
        known = [time_of[m] for m in chunk.message_ids if time_of[m] is not None]
        # A chunk of only the undated message falls back on the conversation.
        assert chunk.newest_time == (max(known) if known else T0)
    assert any(c.message_ids == ["c1-m3"] for c in chunks)


@pytest.mark.parametrize(
    ("created", "updated", "expected"),
    [(T0, T0 + DAY, T0 + DAY), (T0, None, T0), (None, None, None)],
)
def test_newest_time_falls_back_on_the_conversation_times(created, updated, expected):
    conv = make_conv(texts=["Hello. I am Ana."], times=[None], created=created, updated=updated)
    assert {c.newest_time for c in chunk_conversation("u1", conv)} == {expected}


def test_message_ids_are_ordered_and_unique():
    conv = make_conv(texts=[" ".join(sentence(i * 100 + k) for k in range(k_count)) for i, k_count in
                            enumerate([3, 400, 2, 900, 5, 1])])
    for chunk in chunk_conversation("u1", conv):
        assert len(chunk.message_ids) == len(set(chunk.message_ids))
        positions = [int(re.sub(r".*-m", "", m)) for m in chunk.message_ids]
        assert positions == sorted(positions)


def test_the_title_header_is_one_line_and_only_on_medium_and_macro():
    conv = make_conv(texts=["I adopted a cat named Miso."], title="  Pets\nand   more ")
    chunks = chunk_conversation("u1", conv)
    assert by_tier(chunks, "micro")[0].content == "User: I adopted a cat named Miso."
    for tier in ("medium", "macro"):
        assert by_tier(chunks, tier)[0].content == "Conversation: Pets and more\nUser: I adopted a cat named Miso."


def test_config_rejects_overlap_larger_than_half_the_chunk():
    with pytest.raises(ValueError):
        ChunkingConfig(medium_tokens=300, medium_overlap_tokens=200)
