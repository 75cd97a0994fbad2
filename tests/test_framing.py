"""The framer: a top-level JSON list cut into elements, each parsed by orjson.

Whatever the bytes, the framer must yield exactly what parsing the whole
document would, or raise an ExportError; never a wrong cut.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import orjson
import pytest

from soulprint.domain.parsing import framing
from soulprint.domain.parsing.capped import Budget, CappedReader
from soulprint.domain.parsing.errors import ExportError
from soulprint.domain.parsing.framing import ArrayItems
from soulprint.domain.parsing.limits import ParseLimits

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def framer(data: bytes, limits: ParseLimits | None = None, wrapped: bool = False) -> ArrayItems:
    reader = CappedReader(io.BytesIO(data), "test.json", limits or ParseLimits(), Budget(1 << 40, "too_large", "t"))
    return ArrayItems(reader, wrapped=wrapped)


def frame(data: bytes, limits: ParseLimits | None = None, wrapped: bool = False) -> list:
    return list(framer(data, limits, wrapped))


@pytest.fixture(params=[7, 64, 1 << 18], ids=["read7", "read64", "read256k"])
def read_size(request, monkeypatch):
    """Tiny reads make every boundary straddle a refill at some point."""
    monkeypatch.setattr(framing, "READ_SIZE", request.param)
    return request.param


def conversation(i: int, text: str = "hello") -> dict:
    return {"title": f"chat {i}", "create_time": 1_700_000_000.5 + i,
            "mapping": {"r": {"id": "r", "message": None, "parent": None, "children": ["a"]},
                        "a": {"id": "a", "message": {"content": {"parts": [text]}}, "parent": "r", "children": []}},
            "current_node": "a"}


def test_a_minified_export_is_cut_at_its_boundaries(read_size):
    convs = [conversation(i) for i in range(50)]
    f = framer(orjson.dumps(convs))
    assert list(f) == convs
    assert f.boundary == b'},{"title":' and not f.handed_off


def test_pretty_printed_export(read_size):
    convs = [conversation(i) for i in range(20)]
    f = framer(json.dumps(convs, indent=2).encode())
    assert list(f) == convs
    assert f.boundary == b'},\n  {\n    "title":' and not f.handed_off


def test_text_that_looks_like_a_boundary_is_not_one(read_size):
    tricky = ['},{"title": "fake"}', "]]]] {{{{ [[", 'say \\"},{"title":\\" twice', "\\", '"', "\u00e9\u00e8 \u2713 \U0001F600",
              "}" * 40, "[" * 40 + '"},{"title":']
    convs = [conversation(i, text=tricky[i % len(tricky)]) for i in range(40)]
    f = framer(orjson.dumps(convs))
    assert list(f) == convs
    assert not f.handed_off


def test_non_ascii_first_element_is_measured_in_bytes(read_size):
    # orjson reports error positions in characters; the cut is in bytes.
    convs = [conversation(0, text="\u00e9" * 300 + "\u2713" * 100), conversation(1)]
    assert frame(orjson.dumps(convs)) == convs


def test_nested_objects_with_the_same_first_key(read_size):
    # claude.ai: conversations and their messages both start with "uuid".
    convs = [{"uuid": f"c{i}", "chat_messages": [{"uuid": f"m{i}.{j}", "text": "[ unbalanced"} for j in range(5)]}
             for i in range(30)]
    f = framer(orjson.dumps(convs))
    assert list(f) == convs
    assert f.boundary == b'},{"uuid":' and f.second_key == b',"chat_messages":'
    assert f.short_elements == 0  # message boundaries are told apart by their second key


def test_a_second_key_that_changes_is_still_found(read_size):
    items = [{"title": "a", "x": 1}, {"title": "b", "y": 2}, {"title": "c", "x": 3}, {"title": "d", "y": 4},
             {"title": "e\\\"", "z": 5}, {"title": None, "x": 6}]
    f = framer(orjson.dumps(items))
    assert list(f) == items
    assert f.second_key == b',"y":' and not f.handed_off


def test_elements_that_differ_in_keys_and_spacing(read_size):
    items = [{"title": "a"}, {"id": 1, "title": "b"}, {}, {"title": "c"}, {"x": [1, {"title": "d"}]}]
    data = b'[ {"title":"a"} ,\n{"id":1,"title":"b"},{}  ,  {"title":"c"},{"x":[1,{"title":"d"}]}\n]\n'
    assert frame(data) == items


def test_unbalanced_brackets_in_text_still_find_the_end(read_size, monkeypatch):
    # The balance is blind to strings; past the probe threshold orjson finds the end.
    monkeypatch.setattr(framing, "_PROBE", 256)
    convs = [conversation(i, text="[" * (i % 3)) for i in range(30)]
    assert frame(orjson.dumps(convs)) == convs


def test_a_read_that_ends_inside_a_character_is_not_a_refusal(read_size):
    # A probe of a large element ends where the last read did, often inside a
    # multi-byte character: that is more to read, not invalid UTF-8 for ijson.
    convs = [conversation(0), conversation(1, text="café 🙂 日本語 " * 30_000), conversation(2)]
    f = framer(orjson.dumps(convs))
    assert list(f) == convs
    assert not f.handed_off


@pytest.mark.parametrize("tail, cut", [(b"ab", 2), (b"a\xc3", 1), (b"a\xc3\xa9", 3), (b"a\xf0\x9f\x99", 1),
                                       (b"a\xf0\x9f\x99\x82", 5), (b"a\xe6\x97", 1), (b"\x82", 1)])
def test_whole_chars_drops_only_a_cut_character(tail, cut):
    assert framing.whole_chars(bytearray(tail)) == cut


def test_a_lone_surrogate_hands_the_rest_to_ijson(read_size):
    data = b'[{"title":"a"},{"title":"b \\ud800 c"},{"title":"d"}]'
    f = framer(data)
    items = list(f)
    assert f.handed_off
    assert [i["title"][0] for i in items] == ["a", "b", "d"]


def test_a_balanced_cut_inside_an_element_is_retried(read_size):
    # A string's "]]" makes the balance zero at a nested boundary: orjson
    # refuses that cut (too short) and the search goes on to the real end.
    data = b'[{"title":0},{"title":9,"x":[{"title":1,"s":"]]"},{"title":2}]},{"title":3}]'
    f = framer(data)
    assert list(f) == orjson.loads(data)
    assert not f.handed_off


def test_many_balanced_cuts_hand_the_rest_to_ijson(read_size):
    # Crafted so that every nested boundary balances: rather than one failed
    # parse per boundary (quadratic), ijson takes the rest of the stream.
    nested = b",".join(b'{"title":%d}' % i for i in range(2, 40))
    data = b'[{"title":0},{"title":9,"x":[{"title":1,"s":"]]"},' + nested + b']},{"title":3}]'
    f = framer(data)
    assert list(f) == orjson.loads(data)
    assert f.handed_off


def test_elements_that_are_not_objects_are_passed_through(read_size):
    assert frame(b'[{"title":1}, 2, {"title":3}]') == [{"title": 1}, 2, {"title": 3}]


def test_empty_list():
    assert frame(b"  [ ]  ") == []


@pytest.mark.parametrize("data, code", [
    (b'[{"title":1},{"title":2}', "truncated"),
    (b'[{"title":1},{"title":2', "truncated"),
    (b'[{"title":1},', "truncated"),
    (b'[{"title":1}', "truncated"),
    (b'[{"title":1}] x', "not_json"),
    (b'[{"title":1} {"title":2}]', "not_json"),
    (b'[{"title":"\xff"}]', "invalid_utf8"),
])
def test_bad_lists_fail_with_a_code(data, code):
    with pytest.raises(ExportError) as info:
        frame(data)
    assert info.value.code == code
    assert "\n" not in str(info.value)


def test_every_truncation_fails_and_never_yields_a_wrong_element(read_size):
    convs = [conversation(i, text="x},{\"title\":" * (i % 2)) for i in range(4)]
    data = orjson.dumps(convs)
    for cut in range(1, len(data) - 1):
        got = []
        with pytest.raises(ExportError):
            for item in framer(data[:cut]):
                got.append(item)
        assert got == convs[:len(got)]


def test_random_documents_match_orjson(read_size):
    rng = random.Random(7)
    for _ in range(60):
        items = [random_object(rng, 0) for _ in range(rng.randint(1, 12))]
        for data in (orjson.dumps(items), json.dumps(items, indent=rng.choice([None, 1, 4])).encode()):
            assert frame(data) == orjson.loads(data)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")
def test_genuine_exports_match_orjson():
    files = [p for p in SHARED.rglob("*.json") if p.read_bytes().lstrip()[:1] == b"["]
    assert files
    for path in files:
        data = path.read_bytes()
        assert frame(data) == orjson.loads(data), path.name


def test_depth_past_the_limit_is_refused():
    deep = b'[{"title":1,"x":' + b"[" * 40 + b"]" * 40 + b"}]"
    with pytest.raises(ExportError) as info:
        frame(deep, ParseLimits(max_nesting_depth=30))
    assert info.value.code == "too_deep"
    assert frame(deep, ParseLimits(max_nesting_depth=60))[0]["title"] == 1


_ATOMS = ["", "a", "},{", '"', "\\", "]", "[", "{", "}", "\u00e9", "\U0001F600", "\n", ":", ","]


def random_object(rng: random.Random, depth: int) -> dict:
    keys = ["title", "uuid", "x", "mapping", rng.choice(_ATOMS)]
    return {rng.choice(keys) + str(i): random_value(rng, depth + 1) for i in range(rng.randint(0, 5))}


def random_value(rng: random.Random, depth: int):
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return "".join(rng.choice(_ATOMS) for _ in range(rng.randint(0, 8)))
    if kind == 1:
        return rng.choice([0, -3, 2.5, 1e300, True, False, None])
    if kind == 2:
        return rng.randint(-10**12, 10**12)
    if kind == 3:
        return "plain text"
    if kind == 4:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return random_object(rng, depth)


def test_whitespace_is_skipped_in_bulk(read_size):
    # JSON allows any amount of it between tokens; the skip runs in C, not per byte.
    data = b"\n[" + b" " * 5000 + b'{"title":1}' + b" \t\r\n" * 2000 + b"," + b" " * 3000 + b'{"title":2}' + b" " * 4000 + b"]"
    assert frame(data + b" " * 7000) == [{"title": 1}, {"title": 2}]


# ---------------------------------------------------------------- {"conversations": [...]}

@pytest.mark.parametrize("indent", [None, 2])
def test_a_wrapped_list_with_members_around_it(read_size, indent):
    doc = {"user": {"conversations": [1, 2], "id": "u"}, "note": "\"conversations\": [",
           "conversations": [conversation(i) for i in range(12)], "after": {"x": [1, {"y": None}]}}
    f = framer(json.dumps(doc, indent=indent).encode(), wrapped=True)
    assert list(f) == doc["conversations"]
    assert not f.handed_off  # the nested "conversations" key was told apart from the member


def test_an_empty_wrapped_list():
    assert frame(b'{"conversations": [] }', wrapped=True) == []


@pytest.mark.parametrize("data, code", [
    (b'{"conversations":[{"title":1}], "x": }', "not_json"),
    (b'{"conversations":[{"title":1}]', "truncated"),
    (b'{"conversations":[{"title":1}]} []', "not_json"),
    (b'{"conversations":[{"title":1}] "x"}', "not_json"),
])
def test_a_bad_wrapper_fails_with_a_code(data, code):
    with pytest.raises(ExportError) as info:
        frame(data, wrapped=True)
    assert info.value.code == code


def test_a_member_found_late_is_left_to_ijson(monkeypatch):
    monkeypatch.setattr(framing, "_WRAPPED_SCAN", 16)
    monkeypatch.setattr(framing, "READ_SIZE", 8)
    doc = {"padding": "p" * 100, "conversations": [conversation(1), conversation(2)]}
    f = framer(orjson.dumps(doc), wrapped=True)
    assert list(f) == doc["conversations"]
    assert f.handed_off


# ----------------------------------------------------------------- memory held for the caller

def test_no_reference_to_an_element_stays_behind_once_handed_out():
    # The caller may free a large conversation's tree as soon as it is done with it.
    # (ijson's own builder keeps its last item until the next one starts.)
    import sys

    for item in framer(orjson.dumps([conversation(i) for i in range(3)])):
        assert sys.getrefcount(item) == 2  # this loop's variable and getrefcount's argument


@pytest.mark.parametrize("last", [False, True])
def test_a_large_elements_bytes_are_dropped_before_it_is_handed_out(last):
    big = conversation(0, text="x" * (3 << 20))
    items = [conversation(1), big] if last else [conversation(1), big, conversation(2)]
    f = framer(orjson.dumps(items))
    got = []
    for item in f:
        if item["title"] == "chat 0":
            assert len(f.buf) <= framing.READ_SIZE  # not the 3 MB just parsed
        got.append(item)
    assert got == items and not f.handed_off


def test_the_last_element_is_cut_before_the_closing_bracket(monkeypatch):
    # No boundary follows the last element; cutting before "]" spares a parse
    # that fails "after document" (its error holds a str copy of the element).
    errors = []
    real = framing.orjson

    class Counting:
        JSONDecodeError = real.JSONDecodeError

        @staticmethod
        def loads(data):
            try:
                return real.loads(data)
            except real.JSONDecodeError as e:
                if len(data) > 1 << 20:  # the first element is found by such a parse, on purpose
                    errors.append(e.msg)
                raise

    monkeypatch.setattr(framing, "orjson", Counting)
    for wrapped in (False, True):
        items = [conversation(1), conversation(0, text="y" * (1 << 20))]
        data = orjson.dumps({"conversations": items} if wrapped else items)
        assert frame(data + b"\n", wrapped=wrapped) == items
    assert not [m for m in errors if m.startswith("unexpected content after document")]


def test_the_reader_drops_a_conversation_before_parsing_the_next(monkeypatch):
    import sys

    from soulprint.domain.parsing import ExportReader
    from soulprint.domain.parsing.chatgpt import ChatGPTConverter

    seen = []
    convert = ChatGPTConverter.convert

    def watching(self, conv):
        if seen:
            seen.append(sys.getrefcount(seen[0]))  # while the next one is converted
        return convert(self, conv)

    monkeypatch.setattr(ChatGPTConverter, "convert", watching)
    it = iter(ExportReader(Path(__file__).resolve().parent / "fixtures" / "exports" / "chatgpt_classic"))
    seen.append(next(it))
    held = sys.getrefcount(seen[0])  # seen's and the argument's, and the reader's until it resumes
    next(it)
    assert seen[1] == held - 1  # the reader let go of it before parsing on
