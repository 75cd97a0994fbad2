import math

import pytest

from soulprint.domain.sampling import (
    ConversationSampler,
    SampleConfig,
    SampledConversation,
    build_excerpt,
    normalise_title,
    render_sample,
)
from soulprint.domain.tokens import estimate_tokens
from soulprint.models.domain import Conversation, Message

DAY = 86_400.0
NOW = 1_750_000_000.0


def conv(conv_id, user_words=50, *, days_ago=0.0, title=None, assistant_words=20, turns=1):
    """A conversation whose user turns hold ``user_words`` words in all."""
    t = NOW - days_ago * DAY
    per_turn = max(user_words // turns, 0)
    messages = []
    for i in range(turns):
        turn_time = t - (turns - 1 - i) * 60  # the last reply is at t
        messages.append(Message(f"{conv_id}-u{i}", "user", " ".join([f"me{i}"] * per_turn), turn_time - 30))
        messages.append(Message(f"{conv_id}-a{i}", "assistant", " ".join(["reply"] * assistant_words), turn_time))
    return Conversation(conv_id, title if title is not None else f"Topic {conv_id}", t - 3600, t, "claude", messages)


def ids(samples):
    return [s.conversation_id for s in samples]


def sampler_with(convs, **config):
    sampler = ConversationSampler(SampleConfig(**config))
    for c in convs:
        sampler.add(c)
    return sampler


# -- who gets picked ---------------------------------------------------------


def test_keeps_the_conversations_with_the_most_of_the_persons_words():
    convs = [conv(f"c{i}", user_words=10 * (i + 1), title=f"t{i}") for i in range(30)]
    sample = sampler_with(convs, max_conversations=5).result(NOW)
    assert sorted(ids(sample)) == sorted(f"c{i}" for i in range(25, 30))


def test_assistant_words_do_not_count():
    chatty = conv("chatty", user_words=5, assistant_words=5000)
    personal = conv("personal", user_words=300, assistant_words=5)
    sample = sampler_with([chatty, personal], max_conversations=1).result(NOW)
    assert ids(sample) == ["personal"]
    assert sample[0].user_words == 300


def test_newer_conversations_win_at_equal_words():
    convs = [conv(f"c{d}", user_words=200, days_ago=d) for d in (900, 30, 400, 1, 2000, 90)]
    sample = sampler_with(convs, max_conversations=3).result(NOW)
    assert ids(sample) == ["c1", "c30", "c90"]


def test_one_giant_paste_does_not_dominate():
    # 100,000 pasted words two years ago against a real chat last week.
    paste = conv("paste", user_words=100_000, days_ago=730)
    recent = conv("recent", user_words=300, days_ago=7)
    sample = sampler_with([paste, recent], max_conversations=1).result(NOW)
    assert ids(sample) == ["recent"]


def test_score_is_log_words_halved_every_half_life():
    sample = sampler_with([conv("c", user_words=99, days_ago=180)]).result(NOW)
    assert sample[0].score == pytest.approx(math.log1p(99) * 0.5)


def test_newest_time_defaults_to_the_newest_conversation_seen():
    convs = [conv("old", days_ago=360), conv("new", days_ago=0)]
    sampler = sampler_with(convs)
    assert [s.score for s in sampler.result()] == [s.score for s in sampler.result(NOW)]


def test_conversations_without_the_persons_words_are_skipped():
    sampler = sampler_with([conv("silent", user_words=0), conv("talks", user_words=3)])
    assert ids(sampler.result(NOW)) == ["talks"]
    assert len(sampler) == 1


def test_undated_conversations_rank_last():
    undated = Conversation("undated", "x", None, None, "chatgpt", [Message("m", "user", "lots of words " * 100, None)])
    dated = conv("dated", user_words=10, days_ago=10)
    assert ids(sampler_with([undated, dated], max_conversations=1).result(NOW)) == ["dated"]
    both = sampler_with([undated, dated]).result(NOW)
    assert ids(both) == ["dated", "undated"]  # newest first, undated last


# -- variety -------------------------------------------------------------------


def test_at_most_two_conversations_share_a_normalised_title():
    standups = [conv(f"s{i}", user_words=500, title=title)
                for i, title in enumerate(["Daily standup", "daily standup #2", "Daily Standup 3", "Standup, daily"])]
    others = [conv(f"o{i}", user_words=40) for i in range(3)]
    sample = sampler_with(standups + others, max_conversations=10).result(NOW)
    assert [i for i in ids(sample) if i.startswith("s")] == ["s0", "s1"]
    assert {"o0", "o1", "o2"} <= set(ids(sample))


def test_default_titles_are_not_treated_as_duplicates():
    untitled = [conv(f"n{i}", user_words=100, title="New chat") for i in range(5)]
    assert len(sampler_with(untitled).result(NOW)) == 5


def test_title_normalisation():
    assert normalise_title("Help with Python") == normalise_title("python help!") == "python"
    assert normalise_title("Day 3: leg workout") == normalise_title("day 4 - Leg Workout")
    assert normalise_title("Taxes 2023") != normalise_title("Travel 2023")


# -- budget and memory ---------------------------------------------------------


def test_the_rendered_sample_fits_the_token_budget():
    convs = [conv(f"c{i}", user_words=2_000 + i, turns=4, assistant_words=800) for i in range(300)]
    config = SampleConfig(token_budget=20_000, per_conversation_tokens=1_500)
    sampler = ConversationSampler(config)
    for c in convs:
        sampler.add(c)

    sample = sampler.result(NOW)

    assert estimate_tokens(render_sample(sample)) <= config.token_budget
    assert estimate_tokens(render_sample(sample)) > config.token_budget * 0.9  # and uses it
    assert all(estimate_tokens(s.excerpt) <= config.per_conversation_tokens for s in sample)


def test_smaller_excerpts_fill_what_the_big_ones_leave():
    big = [conv(f"big{i}", user_words=5_000) for i in range(3)]
    small = [conv(f"small{i}", user_words=20, days_ago=1) for i in range(3)]
    sample = sampler_with(big + small, token_budget=2_000, per_conversation_tokens=1_000).result(NOW)
    assert {"small0", "small1", "small2"} <= set(ids(sample))
    assert sum(i.startswith("big") for i in ids(sample)) == 1


def test_memory_stays_bounded_on_a_huge_export():
    sampler = ConversationSampler(SampleConfig(max_conversations=50, per_conversation_tokens=300))
    largest = 0
    for i in range(20_000):
        sampler.add(conv(f"c{i}", user_words=1 + i % 997, days_ago=(i * 7) % 1500))
        largest = max(largest, len(sampler))
    assert largest == sampler.capacity == 100
    assert len(sampler.result(NOW)) == 50


def test_the_heap_loses_nothing_the_final_ranking_wants():
    # The provisional key orders like the final score, whatever the newest time.
    convs = [conv(f"c{i}", user_words=1 + (i * 37) % 500, days_ago=(i * 53) % 1000) for i in range(2_000)]
    bounded = sampler_with(convs, max_conversations=20).result(NOW + 400 * DAY)
    unbounded = sampler_with(convs, max_conversations=20, candidate_factor=1000).result(NOW + 400 * DAY)
    assert ids(bounded) == ids(unbounded)


def test_result_is_deterministic_and_repeatable():
    convs = [conv(f"c{i}", user_words=1 + (i * 31) % 300, days_ago=i % 50, title=f"t{i % 7}") for i in range(500)]
    a = sampler_with(convs, max_conversations=20)
    b = sampler_with(convs, max_conversations=20)
    assert a.result(NOW) == b.result(NOW) == a.result(NOW)


def test_result_is_ordered_newest_first():
    convs = [conv(f"c{d}", user_words=100 + d, days_ago=d) for d in (5, 50, 1, 20, 3)]
    sample = sampler_with(convs).result(NOW)
    assert ids(sample) == ["c1", "c3", "c5", "c20", "c50"]


# -- excerpts and rendering ----------------------------------------------------


def test_the_excerpt_puts_the_persons_words_first():
    c = Conversation("c", "Moving", NOW, NOW, "chatgpt", [
        Message("1", "user", "I am moving to Porto next month.", NOW),
        Message("2", "assistant", "Exciting! Do you need help?", NOW),
        Message("3", "user", "Yes, with   the\npaperwork.", NOW),
        Message("4", "tool", "search results", NOW),
    ])
    assert build_excerpt(c, 3_000) == (
        "User: I am moving to Porto next month.\n"
        "User: Yes, with the paperwork.\n"
        "Assistant: Exciting! Do you need help?"
    )


def test_a_small_excerpt_budget_keeps_the_persons_words():
    c = conv("c", user_words=400, turns=8, assistant_words=400)
    excerpt = build_excerpt(c, 200)
    assert estimate_tokens(excerpt) <= 200
    assert excerpt.startswith("User: ")
    assert "Assistant:" not in excerpt


def test_a_giant_message_is_clipped_so_others_are_heard():
    c = Conversation("c", "x", NOW, NOW, "chatgpt", [
        Message("1", "user", "paste " * 50_000, NOW),
        Message("2", "user", "And that is my thesis.", NOW),
    ])
    excerpt = build_excerpt(c, 3_000)
    assert estimate_tokens(excerpt) <= 3_000
    assert "User: And that is my thesis." in excerpt.split("\n")
    assert "\u2026" in excerpt.split("\n")[0]


def test_render_sample():
    samples = [
        SampledConversation("a", "Moving to Porto", NOW, NOW, "User: hi", 1, 1.0, newest_time=1_700_000_000.0),
        SampledConversation("b", None, None, None, "User: yo", 1, 0.5),
    ]
    assert render_sample(samples) == "### Moving to Porto (2023-11-14)\nUser: hi\n\n### Untitled (undated)\nUser: yo"
    assert render_sample([]) == ""
