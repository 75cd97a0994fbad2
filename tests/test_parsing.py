"""Behaviour of the streaming export parser (soulprint.domain.parsing).

Inputs are the hand-made fixtures in tests/fixtures/exports/ (see
tests/fixtures/build.py for what each holds) and small exports built in
tmp_path, so each test shows the input it judges.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from soulprint.domain.parsing import CODES, ExportError, ExportReader, ParseLimits, require_c_backend
from soulprint.domain.parsing import backend as parsing_backend
from soulprint.domain.parsing.surrogates import SurrogateScrubber
from soulprint.models.domain import Conversation

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "exports"
CLASSIC = FIXTURES / "chatgpt_classic" / "conversations.json"
SPLIT = FIXTURES / "chatgpt_split"
CLAUDE = FIXTURES / "claude" / "conversations.json"


# ----------------------------------------------------------------- helpers

def read_all(source, limits: ParseLimits | None = None) -> tuple[list[Conversation], ExportReader]:
    reader = ExportReader(source, limits=limits)
    return list(reader), reader


def expect_error(code: str, source, limits: ParseLimits | None = None) -> ExportError:
    """The export fails with ``code`` and a one-line message, at construction or while reading."""
    with pytest.raises(ExportError) as info:
        read_all(source, limits)
    err = info.value
    assert err.code == code, f"expected {code}, got {err.code}: {err}"
    assert err.code in CODES
    message = str(err)
    assert message and "\n" not in message and "\r" not in message
    assert "Traceback" not in message
    return err


def texts(conv: Conversation) -> list[str]:
    return [m.text for m in conv.messages]


def by_id(convs: list[Conversation]) -> dict[str, Conversation]:
    return {c.id: c for c in convs}


def make_zip(path: Path, members: dict[str, bytes | str], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 2, 15, 18, 30, 0))
            info.compress_type = compression
            zf.writestr(info, data.encode() if isinstance(data, str) else data)
    return path


def node(nid, parent, role=None, text=None, t=None, content=None, **meta):
    """A ChatGPT mapping node; role None means a null-message root."""
    if role is None:
        return nid, {"id": nid, "message": None, "parent": parent}
    message = {
        "id": nid,
        "author": {"role": role},
        "create_time": t,
        "content": content if content is not None else {"content_type": "text", "parts": [text]},
        "metadata": meta,
    }
    return nid, {"id": nid, "message": message, "parent": parent}


def chat(cid, nodes, current=None, title="T", t=1_700_000_000.0, **extra) -> dict:
    conv = {"id": cid, "conversation_id": cid, "title": title, "create_time": t, "update_time": t,
            "mapping": dict(nodes), "current_node": current}
    conv.update(extra)
    return conv


def simple_chat(cid, question="hello", answer="hi there", t=1_700_000_000.0) -> dict:
    return chat(cid, [node("r", None), node("u", "r", "user", question, t), node("a", "u", "assistant", answer, t + 1)],
                current="a", t=t)


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


# ----------------------------------------------------------------- backend

def test_c_backend_is_required_and_present(monkeypatch):
    require_c_backend()  # this environment has the binary wheel
    monkeypatch.setattr(parsing_backend.ijson, "backend", "python")
    with pytest.raises(ExportError) as info:
        require_c_backend()
    assert info.value.code == "no_c_backend"
    assert "yajl2_c" in str(info.value) and "binary wheel" in str(info.value)
    with pytest.raises(ExportError):
        ExportReader(CLASSIC)  # the reader checks at construction


# ----------------------------------------------------------------- classic ChatGPT

def test_classic_active_path_reasoning_and_branches():
    convs, reader = read_all(CLASSIC)
    conv = by_id(convs)["conv-a"]
    assert conv.title == "Trip planning" and conv.source == "chatgpt"
    # The edited question ("In May") and the first answer ("June is great") are
    # branches off current_node's path; thoughts/reasoning_recap are not content.
    assert texts(conv) == ["Plan a trip to Bergen", "Sure, when do you want to go?", "In June",
                           "June is lovely; book early."]
    assert [m.role for m in conv.messages] == ["user", "assistant", "user", "assistant"]
    assert [m.id for m in conv.messages] == ["a-u1", "a-a1", "a-u2", "a-a2"]
    assert conv.created_at == 1_714_000_000.0 and conv.updated_at == 1_714_000_600.0


def test_classic_summary_counts_everything():
    convs, reader = read_all(CLASSIC)
    assert [c.id for c in convs] == ["conv-a", "conv-b", "conv-e"]  # file order
    s = reader.summary
    assert s.format == "chatgpt"
    assert s.conversations == 3
    assert s.messages == sum(len(c.messages) for c in convs) == 16
    assert s.excluded == 1  # conv-c is_do_not_remember
    assert s.empty == 1  # conv-d: a system prompt and a blank message only
    assert s.hidden_messages == 3  # a-sys, a-ci (custom instructions), b-mem (saved memory)
    assert s.bytes_read == CLASSIC.stat().st_size
    assert s.newest_message_time == 1_714_003_606.0


def test_missing_current_node_takes_latest_leaf_and_ms_times():
    conv = by_id(read_all(CLASSIC)[0])["conv-b"]
    assert conv.title is None
    assert conv.created_at == 1_714_003_600.0  # milliseconds in the file
    assert conv.messages[-1].id == "b-a3"  # newer than its sibling b-a3-old
    assert "An older answer" not in texts(conv)
    assert [m.time for m in conv.messages] == [1_714_003_601.0 + i for i in range(6)]


def test_multimodal_placeholders_audio_transcription_and_tools():
    conv = by_id(read_all(CLASSIC)[0])["conv-b"]
    assert texts(conv) == [
        "[image]\nWhat is in this photo?",
        "print(1 + 1)",  # code
        "2",  # execution_output
        "It shows the number 2.",
        "tell me a joke",  # voice: the transcription stands for the recording
        "[audio]",  # a recording without transcription
    ]
    assert [m.role for m in conv.messages] == ["user", "assistant", "tool", "assistant", "user", "assistant"]


def test_browsing_quote_and_system_error_and_id_fallback():
    conv = by_id(read_all(CLASSIC)[0])["conv-e"]  # has "id" but no "conversation_id"
    assert texts(conv) == ['Who won?', 'search("final score")', "# 【0†Final score†example.org】\n3-1",
                           "Final score\nHome won 3-1.", "Browsing timed out", "Home won 3-1."]


def test_custom_instructions_and_saved_memory_go_to_hints():
    _, reader = read_all(CLASSIC)
    hints = reader.profile
    assert hints.user_profile == "I am a nurse in Oslo."  # ChatGPT's wrapper text removed
    assert hints.user_instructions == "Answer briefly."
    assert hints.saved_memory == ["[2024-05-01]. Likes hiking.", "[2024-06-01]. Has a dog named Rex."]
    all_text = " ".join(m.text for c in read_all(CLASSIC)[0] for m in c.messages)
    assert "nurse" not in all_text and "Rex" not in all_text  # hints are not turns


def test_old_style_custom_instructions_on_hidden_system_message(tmp_path):
    conv = chat("c1", [
        node("r", None),
        node("s", "r", "system", "", None, is_visually_hidden_from_conversation=True,
             is_user_system_message=True,
             user_context_message_data={"about_user_message": "I live in Tromsø.",
                                        "about_model_message": "Use metric units."}),
        node("u", "s", "user", "How cold is it?", 1.0),
        node("a", "u", "assistant", "Minus five.", 2.0),
    ], current="a")
    convs, reader = read_all(write_json(tmp_path / "c.json", [conv]))
    assert texts(convs[0]) == ["How cold is it?", "Minus five."]
    assert reader.profile.user_profile == "I live in Tromsø."
    assert reader.profile.user_instructions == "Use metric units."
    assert reader.summary.hidden_messages == 1


def test_newest_conversation_wins_for_hints(tmp_path):
    def with_ci(cid, t, about):
        return chat(cid, [node("r", None),
                          node("s", "r", "system", "", None, is_visually_hidden_from_conversation=True,
                               user_context_message_data={"about_user_message": about}),
                          node("u", "s", "user", "hi", t)], current="u", t=t)
    path = write_json(tmp_path / "c.json", [with_ci("new", 200.0, "now"), with_ci("old", 100.0, "before")])
    _, reader = read_all(path)
    assert reader.profile.user_profile == "now"


def test_visible_system_messages_and_blank_text_are_skipped(tmp_path):
    conv = chat("c", [node("r", None), node("s", "r", "system", "You are ChatGPT", 1.0),
                      node("u", "s", "user", "  \n ", 2.0), node("a", "u", "assistant", "ok", 3.0)], current="a")
    convs, reader = read_all(write_json(tmp_path / "c.json", [conv]))
    assert [(m.role, m.text) for m in convs[0].messages] == [("assistant", "ok")]
    assert reader.summary.hidden_messages == 0


def test_conversation_without_any_id_gets_a_stable_hash(tmp_path):
    conv = simple_chat("x")
    del conv["id"], conv["conversation_id"]
    path = write_json(tmp_path / "c.json", [conv])
    first = read_all(path)[0][0].id
    assert first.startswith("chatgpt-") and first == read_all(path)[0][0].id


def test_object_with_conversations_key(tmp_path):
    path = write_json(tmp_path / "wrapped.json", {"version": 2, "conversations": [simple_chat("w1"), simple_chat("w2")]})
    convs, reader = read_all(path)
    assert [c.id for c in convs] == ["w1", "w2"]
    assert reader.summary.conversations == 2


def test_single_chatgpt_conversation_object(tmp_path):
    convs, _ = read_all(write_json(tmp_path / "one.json", simple_chat("solo")))
    assert [c.id for c in convs] == ["solo"]


def test_bom_and_whitespace_before_json(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf \n" + json.dumps([simple_chat("b")]).encode())
    assert [c.id for c in read_all(path)[0]] == ["b"]


def test_zip_with_media_is_read_without_opening_media(tmp_path, monkeypatch):
    junk = os.urandom(200_000)
    path = make_zip(tmp_path / "export.zip", {
        "export/conversations.json": CLASSIC.read_bytes(),
        "export/user.json": b'{"id": "user-1"}',
        "export/dalle-generations/file-abc.webp": junk,
        "export/file-HZ6bq.png": junk,
        "export/8f2c/audio/file_0001.wav": b"RIFF" + junk,
        "export/chat.html": b"<html></html>",
    })
    opened = []
    real_open = zipfile.ZipFile.open

    def recording_open(self, name, *args, **kwargs):
        opened.append(name if isinstance(name, str) else name.filename)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    convs, reader = read_all(path)
    assert [c.id for c in convs] == ["conv-a", "conv-b", "conv-e"]
    assert set(opened) == {"export/conversations.json"}  # media, user.json and chat.html never touched
    assert reader.summary.bytes_read == CLASSIC.stat().st_size


def test_bare_json_folder_and_file_uri_agree(tmp_path):
    from_file = read_all(CLASSIC)[0]
    from_folder = read_all(CLASSIC.parent)[0]
    from_uri = read_all(CLASSIC.as_uri())[0]
    from_path_str = read_all(str(CLASSIC))[0]
    assert from_file == from_folder == from_uri == from_path_str
    spaced = tmp_path / "my export"
    spaced.mkdir()
    (spaced / "conversations.json").write_bytes(CLASSIC.read_bytes())
    assert read_all(spaced.as_uri())[0] == from_file  # percent-encoded space


def test_iterating_twice_reads_again():
    reader = ExportReader(CLASSIC)
    first = list(reader)
    assert list(reader) == first
    assert reader.summary.conversations == 3


def test_conversations_stream_before_the_end_of_the_file(tmp_path):
    path = tmp_path / "cut.json"
    full = json.dumps([simple_chat(f"c{i}") for i in range(50)]).encode()
    path.write_bytes(full[: len(full) - 40])  # the last conversation is cut off
    reader = ExportReader(path)
    seen = []
    with pytest.raises(ExportError) as info:
        for conv in reader:
            seen.append(conv.id)
    assert info.value.code == "truncated"
    assert seen[:49] == [f"c{i}" for i in range(49)]


# ----------------------------------------------------------------- 2026 split layout

def test_split_layout_folder_with_manifest():
    convs, reader = read_all(SPLIT)
    assert [c.id for c in convs] == ["split-0", "split-1", "split-2", "split-3"]
    assert texts(convs[2]) == ["question 2", "answer 2"]
    assert reader.summary.format == "chatgpt-split"
    assert reader.summary.messages == 8


def test_split_layout_zip_follows_manifest_order_and_tolerates_unknown_fields(tmp_path):
    files = {f"Export/{p.name}": p.read_bytes() for p in SPLIT.iterdir()}
    files["Export/export_manifest.json"] = json.dumps({
        "files": ["conversations-001.json", {"path": "conversations-000.json"}],
        "future": {"nested": [True, None]},
    })
    convs, reader = read_all(make_zip(tmp_path / "split.zip", files))
    assert [c.id for c in convs] == ["split-2", "split-3", "split-0", "split-1"]
    assert reader.summary.format == "chatgpt-split"


def test_split_layout_without_manifest_sorts_by_number(tmp_path):
    files = {p.name: p.read_bytes() for p in SPLIT.iterdir() if p.name != "export_manifest.json"}
    files["conversations-010.json"] = json.dumps([simple_chat("ten")])
    convs, _ = read_all(make_zip(tmp_path / "split.zip", files))
    assert [c.id for c in convs] == ["split-0", "split-1", "split-2", "split-3", "ten"]


def test_manifest_naming_a_missing_file_fails(tmp_path):
    files = {p.name: p.read_bytes() for p in SPLIT.iterdir()}
    files["export_manifest.json"] = json.dumps({"files": ["conversations-000.json", "conversations-002.json"]})
    err = expect_error("not_found", make_zip(tmp_path / "split.zip", files))
    assert "conversations-002.json" in str(err)


def test_broken_manifest_is_ignored(tmp_path):
    files = {p.name: p.read_bytes() for p in SPLIT.iterdir()}
    files["export_manifest.json"] = b'{"files": ['
    convs, _ = read_all(make_zip(tmp_path / "split.zip", files))
    assert len(convs) == 4


# ----------------------------------------------------------------- claude.ai

def test_claude_export_thinking_tools_attachments():
    convs, reader = read_all(CLAUDE)
    assert reader.summary.format == "claude"
    assert reader.summary.conversations == 1 and reader.summary.empty == 1
    conv = convs[0]
    assert conv.source == "claude" and conv.id == "claude-1" and conv.title == "Tools and thinking"
    assert conv.created_at == 1_740_823_200.0 and conv.updated_at == 1_740_823_500.5
    user, assistant, thanks = conv.messages
    assert (user.role, assistant.role, thanks.role) == ("user", "assistant", "user")
    assert user.text.startswith("What's the weather in Oslo?")
    assert "[attachment: notes.txt]\nPack an umbrella." in user.text and "[file: photo.jpg]" in user.text
    assert '[tool: weather] {"city":"Oslo","units":"metric"}' in assistant.text
    assert "Rain, 8 C" in assistant.text and assistant.text.endswith("It is raining, 8 degrees.")
    assert "call the weather tool" not in assistant.text  # thinking is not content
    assert thanks.text == "Thanks!"  # flat text when there are no content blocks
    assert user.time == 1_740_823_201.0


def test_claude_zip_ignores_users_and_projects(tmp_path):
    path = make_zip(tmp_path / "claude.zip", {
        "conversations.json": CLAUDE.read_bytes(),
        "users.json": b'[{"uuid": "u", "full_name": "X"}]',
        "projects.json": b'[{"uuid": "p", "name": "Project", "docs": []}]',
    })
    convs, reader = read_all(path)
    assert [c.id for c in convs] == ["claude-1"] and reader.summary.format == "claude"


def test_claude_single_object_follows_current_leaf(tmp_path):
    root = "00000000-0000-4000-8000-000000000000"
    conv = {
        "uuid": "web-1", "name": "Branches", "created_at": "2024-10-29T15:59:18.774635+00:00",
        "updated_at": "2024-10-29T16:02:16.623589+00:00", "current_leaf_message_uuid": "m3b",
        "chat_messages": [
            {"uuid": "m1", "sender": "human", "text": "", "content": [{"type": "text", "text": "hi"}],
             "parent_message_uuid": root, "created_at": "2024-10-29T15:59:38Z"},
            {"uuid": "m2", "sender": "assistant", "text": "", "content": [{"type": "text", "text": "hello"}],
             "parent_message_uuid": "m1", "created_at": "2024-10-29T15:59:40Z"},
            {"uuid": "m3a", "sender": "human", "text": "", "content": [{"type": "text", "text": "edited away"}],
             "parent_message_uuid": "m2", "created_at": "2024-10-29T16:00:00Z"},
            {"uuid": "m3b", "sender": "human", "text": "", "content": [{"type": "text", "text": "kept"}],
             "parent_message_uuid": "m2", "created_at": "2024-10-29T16:01:00Z"},
        ],
    }
    convs, _ = read_all(write_json(tmp_path / "web.json", conv))
    assert texts(convs[0]) == ["hi", "hello", "kept"]


def test_claude_message_with_only_thinking_is_dropped(tmp_path):
    conv = {"uuid": "c", "name": "n", "created_at": "2025-01-01T00:00:00Z", "chat_messages": [
        {"uuid": "1", "sender": "human", "text": "q", "content": []},
        {"uuid": "2", "sender": "assistant", "text": "private reasoning",
         "content": [{"type": "thinking", "thinking": "private reasoning"}]},
    ]}
    convs, _ = read_all(write_json(tmp_path / "c.json", [conv]))
    assert texts(convs[0]) == ["q"]


# ----------------------------------------------------------------- bad input

def test_not_a_zip_or_json(tmp_path):
    path = tmp_path / "sample.txt"
    path.write_text("the quick brown fox\n")
    err = expect_error("not_json", path)
    assert str(err) == "not a zip or JSON export: sample.txt"
    (tmp_path / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    expect_error("not_json", tmp_path / "pic.png")


def test_invalid_json_syntax(tmp_path):
    path = tmp_path / "conversations.json"
    path.write_text('[{"mapping": {}, "title": nope}]')
    err = expect_error("not_json", path)
    assert "conversations.json" in str(err)


def test_truncated_json(tmp_path):
    data = CLASSIC.read_bytes()
    path = tmp_path / "conversations.json"
    path.write_bytes(data[:1234])
    err = expect_error("truncated", path)
    assert str(err) == "truncated JSON in conversations.json after 1,234 bytes"


def test_corrupted_zip_member(tmp_path):
    good = make_zip(tmp_path / "good.zip", {"conversations.json": CLASSIC.read_bytes()})
    raw = good.read_bytes()
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("conversations.json")
    # Keep the central directory but cut the deflate stream short by zeroing its tail.
    start = info.header_offset + 30 + len(info.filename)
    cut = bytearray(raw)
    cut[start + info.compress_size // 2: start + info.compress_size] = bytes(info.compress_size - info.compress_size // 2)
    (tmp_path / "cut.zip").write_bytes(bytes(cut))
    with pytest.raises(ExportError) as exc:
        read_all(tmp_path / "cut.zip")
    assert exc.value.code == "bad_zip" and "\n" not in str(exc.value)
    assert str(exc.value).startswith("corrupt zip member conversations.json in cut.zip")


@pytest.mark.parametrize("value", [42, "a string", True, None, {"foo": 1}, [1, 2], ["x"], [[]],
                                   {"conversations": 5}, [{"neither": "format"}]])
def test_wrong_top_level_shape(tmp_path, value):
    expect_error("bad_shape", write_json(tmp_path / "conversations.json", value))


def test_malformed_conversation_structure(tmp_path):
    conv = simple_chat("m")
    conv["mapping"]["u"] = "not a node"
    err = expect_error("bad_shape", write_json(tmp_path / "c.json", [conv]))
    assert "item 1" in str(err)


def test_empty_exports(tmp_path):
    expect_error("empty", write_json(tmp_path / "a.json", []))
    expect_error("empty", write_json(tmp_path / "b.json", {"conversations": []}))
    (tmp_path / "zero.json").write_bytes(b"")
    expect_error("empty", tmp_path / "zero.json")
    private = simple_chat("p")
    private["is_do_not_remember"] = True
    blank = simple_chat("b", question=" ", answer="")
    reader = ExportReader(write_json(tmp_path / "c.json", [private, blank]))
    with pytest.raises(ExportError) as info:
        list(reader)
    assert info.value.code == "empty"
    assert reader.summary.excluded == 1 and reader.summary.empty == 1  # filled before the error
    assert "1 empty" in str(info.value)


def test_not_found(tmp_path):
    expect_error("not_found", tmp_path / "missing.zip")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "users.json").write_text("{}")
    expect_error("not_found", tmp_path / "folder")
    err = expect_error("not_found", make_zip(tmp_path / "x.zip", {"chat.html": "<html/>", "user.json": "{}"}))
    assert str(err) == "no conversations.json in the zip x.zip"
    expect_error("not_found", "s3://bucket/export.zip")


def test_corrupt_zip(tmp_path):
    path = tmp_path / "bad.zip"
    path.write_bytes(b"PK\x03\x04" + os.urandom(300))
    expect_error("bad_zip", path)


def test_zip_bomb_by_ratio(tmp_path):
    # 50 MB of whitespace inside valid JSON deflates ~1000:1.
    payload = b"[" + b" " * (50 << 20) + b"]"
    path = make_zip(tmp_path / "bomb.zip", {"conversations.json": payload})
    err = expect_error("zip_bomb", path, ParseLimits(max_compression_ratio=100))
    with pytest.raises(ExportError):  # refused from the central directory, before inflating a byte
        ExportReader(path, limits=ParseLimits(max_compression_ratio=100))
    assert "conversations.json" in str(err) and "max_compression_ratio" in str(err)


def test_zip_bomb_by_total_size(tmp_path):
    path = make_zip(tmp_path / "big.zip", {"conversations.json": CLASSIC.read_bytes()})
    err = expect_error("zip_bomb", path, ParseLimits(max_uncompressed_bytes=10_000))
    assert "max_uncompressed_bytes" in str(err)


def test_actual_bytes_are_capped_even_when_sizes_checked_up_front_lied(tmp_path):
    # Sizes are checked when the reader is built; the bytes actually read are
    # counted again while parsing (zip headers can lie, files can grow).
    for i in range(3):
        write_json(tmp_path / f"conversations-00{i}.json", [simple_chat(f"c{i}")])
    reader = ExportReader(tmp_path, ParseLimits(max_uncompressed_bytes=7_000))
    for i in range(3):
        write_json(tmp_path / f"conversations-00{i}.json", [simple_chat(f"c{i}", answer="x" * 3000)])
    with pytest.raises(ExportError) as info:
        list(reader)
    assert info.value.code == "too_large" and "max_uncompressed_bytes" in str(info.value)


def test_capped_reader_checks_the_actual_compression_ratio():
    import io

    from soulprint.domain.parsing.capped import Budget, CappedReader

    limits = ParseLimits(max_compression_ratio=10)
    raw = io.BytesIO(b" " * (3 << 20))
    reader = CappedReader(raw, "m.json in x.zip", limits, Budget(1 << 40, "zip_bomb", "x.zip"), compressed_size=1000)
    with pytest.raises(ExportError) as info:
        while reader.read(65536):
            pass
    assert info.value.code == "zip_bomb" and "m.json in x.zip" in str(info.value)


def test_one_conversation_too_large(tmp_path):
    path = write_json(tmp_path / "c.json", [simple_chat("ok"), simple_chat("big", answer="y" * 200_000)])
    err = expect_error("too_large", path, ParseLimits(max_conversation_bytes=100_000))
    assert "max_conversation_bytes" in str(err)


@pytest.mark.parametrize("name", ["../evil.json", "/etc/passwd", "C:/Windows/x.json", "..\\..\\x.json",
                                  "export/../../conversations.json", "a/b/../../../c"])
def test_unsafe_zip_member_names(tmp_path, name):
    path = make_zip(tmp_path / "evil.zip", {"conversations.json": CLASSIC.read_bytes(), name: b"x"})
    err = expect_error("unsafe_zip", path)
    assert str(err) == f"zip member name is unsafe: {name!r}"


def test_backslash_names_without_dotdot_are_fine(tmp_path):
    path = make_zip(tmp_path / "win.zip", {"export\\conversations.json": CLASSIC.read_bytes()})
    assert len(read_all(path)[0]) == 3


def test_cyclic_parent_links(tmp_path):
    conv = chat("loop", [node("a", "b", "user", "x", 1.0), node("b", "a", "assistant", "y", 2.0)],
                current="a", title="Loopy")
    err = expect_error("cyclic_tree", write_json(tmp_path / "c.json", [conv]))
    assert "Loopy" in str(err) and "loop" in str(err)
    del conv["current_node"]  # no leaf at all to start from
    expect_error("cyclic_tree", write_json(tmp_path / "d.json", [conv]))


def test_longer_cycle_above_a_valid_leaf(tmp_path):
    conv = chat("loop2", [node("a", "c", "user", "x", 1.0), node("b", "a", "assistant", "y", 2.0),
                          node("c", "b", "user", "z", 3.0), node("leaf", "c", "assistant", "w", 4.0)],
                current="leaf")
    expect_error("cyclic_tree", write_json(tmp_path / "c.json", [conv]))


def test_dangling_parent(tmp_path):
    conv = chat("dang", [node("u", "ghost", "user", "x", 1.0), node("a", "u", "assistant", "y", 2.0)],
                current="a", title="Ghost parent")
    err = expect_error("dangling_parent", write_json(tmp_path / "c.json", [conv]))
    assert "Ghost parent" in str(err) and "'ghost'" in str(err)


def test_message_too_large(tmp_path):
    conv = simple_chat("huge", answer="z" * 5000)
    conv["title"] = "Huge answer"
    err = expect_error("message_too_large", write_json(tmp_path / "c.json", [conv]), ParseLimits(max_message_chars=1000))
    assert "Huge answer" in str(err) and "5,000" in str(err)


def test_invalid_utf8(tmp_path):
    (tmp_path / "a.json").write_bytes(b'[{"a":"\xff"}]')
    expect_error("invalid_utf8", tmp_path / "a.json")
    good = json.dumps([simple_chat("u", answer="caf\u00e9")], ensure_ascii=False).encode()
    (tmp_path / "b.json").write_bytes(good.replace("caf\u00e9".encode(), b"caf\xc3\x28"))
    expect_error("invalid_utf8", tmp_path / "b.json")


@pytest.mark.parametrize("depth", [100_000, 1_000_000])
def test_very_deep_nesting_fails_fast(tmp_path, depth):
    path = tmp_path / "deep.json"
    path.write_bytes(b"[" * depth + b"]" * depth)
    err = expect_error("too_deep", path)  # refused before ijson, which would take minutes to forever
    assert "JSON nesting deeper than 1024 levels" in str(err)


def test_deep_nesting_inside_a_conversation(tmp_path):
    deep = '{"x":' * 50_000 + "1" + "}" * 50_000
    path = tmp_path / "deep.json"
    path.write_text('[{"mapping": {}, "extra": ' + deep + "}]")
    expect_error("too_deep", path)
    # Spread over many chunks, with filler between the opens.
    slow = "".join('{"pad": "' + "p" * 300 + '", "x":' for _ in range(3000)) + "1" + "}" * 3000
    path.write_text('[{"mapping": {}, "extra": ' + slow + "}]")
    expect_error("too_deep", path)


def test_moderate_nesting_and_brackets_in_text_are_fine(tmp_path):
    # Brackets inside strings are counted (conservatively), so 400 unbalanced
    # ones plus 300 real levels stay under 1000; the count restarts for every
    # conversation, so brackets spread over many conversations never add up.
    conv = simple_chat("n", answer="[" * 400 + " unbalanced brackets in text")
    conv["metadata_blob"] = json.loads('{"x":' * 300 + "1" + "}" * 300)
    others = [simple_chat(f"k{i}", answer="x" * 2000 + "[[[[[ [0, 1) {") for i in range(400)]
    convs, _ = read_all(write_json(tmp_path / "c.json", [conv] + others))
    assert len(convs) == 401


def test_nesting_limit_is_configurable(tmp_path):
    conv = simple_chat("n")
    conv["blob"] = json.loads("[" * 40 + "]" * 40)
    path = write_json(tmp_path / "c.json", [conv])
    expect_error("too_deep", path, ParseLimits(max_nesting_depth=30))
    assert len(read_all(path, ParseLimits(max_nesting_depth=60))[0]) == 1


def test_parse_limits_defaults_and_validation():
    limits = ParseLimits()
    assert limits.max_uncompressed_bytes == 8 << 30
    assert limits.max_compression_ratio == 200
    assert limits.max_conversation_bytes == 16 << 20
    assert limits.max_message_chars == 2_000_000
    assert limits.max_nesting_depth == 1024
    with pytest.raises(Exception):
        limits.max_nesting_depth = 5  # frozen
    with pytest.raises(ValueError):
        ParseLimits(max_message_chars=0)


def test_export_error_is_one_line_and_picklable():
    import pickle

    err = ExportError("not_json", "bad\nname\r\nhere")
    assert str(err) == "bad name here" and err.code == "not_json"
    again = pickle.loads(pickle.dumps(err))
    assert again.code == "not_json" and str(again) == "bad name here"
    assert str(ExportError("io_error", "x" * 2000)) == "x" * 499 + "…"  # models.text.one_line's cap


def test_truncated_json_inside_a_zip(tmp_path):
    path = make_zip(tmp_path / "cut.zip", {"conversations.json": json.dumps([simple_chat("a")] * 2000)[:-3000]})
    err = expect_error("truncated", path)
    assert "conversations.json in cut.zip" in str(err)


def test_zip_member_that_is_not_json(tmp_path):
    err = expect_error("not_json", make_zip(tmp_path / "x.zip", {"conversations.json": "<html>oops</html>"}))
    assert str(err) == "conversations.json in x.zip is not JSON"


def test_export_error_constructors():
    assert ExportError("too_deep", "deep").code == "too_deep"
    err = ExportError("message only", code="empty")
    assert (err.code, str(err)) == ("empty", "message only")
    assert ExportError("bare").code == "error"


HIDDEN_NESTING = b'{"mapping": {}, "x": ' + b'["]",' * 3000 + b"0" + b"]" * 3000 + b"}"


def test_nesting_hidden_behind_brackets_in_strings(tmp_path):
    # A list of conversations is parsed element by element by orjson, which
    # counts real nesting and stops at 1,024 levels.
    path = tmp_path / "crafted.json"
    path.write_bytes(b"[" + HIDDEN_NESTING + b"]")
    expect_error("too_deep", path)


def test_nesting_hidden_in_a_wrapped_list(tmp_path):
    # {"conversations": [...]} is framed the same way.
    path = tmp_path / "crafted.json"
    path.write_bytes(b'{"conversations": [' + HIDDEN_NESTING + b"]}")
    expect_error("too_deep", path)


def test_claude_timestamps():
    from soulprint.domain.parsing.claude import iso_seconds

    assert iso_seconds("2025-01-01T00:00:05Z") == 1_735_689_605.0
    assert iso_seconds("2025-01-01T01:00:05+01:00") == 1_735_689_605.0
    assert iso_seconds("2025-01-01T00:00:05") == 1_735_689_605.0  # naive: UTC
    assert iso_seconds("yesterday") is None and iso_seconds(None) is None
    assert iso_seconds(1_735_689_605_000) == 1_735_689_605.0  # milliseconds


# ----------------------------------------------------------------- NUL characters

CHATGPT_NUL = FIXTURES / "chatgpt_nul" / "conversations.json"
CLAUDE_NUL = FIXTURES / "claude_nul" / "conversations.json"


def emitted_strings(convs: list[Conversation], reader: ExportReader) -> list[str]:
    """Every text the parser hands on, the profile hints included."""
    out = [reader.profile.user_profile or "", reader.profile.user_instructions or "", *reader.profile.saved_memory]
    for c in convs:
        out += [c.id, c.title or ""]
        for m in c.messages:
            out += [m.id, m.role, m.text]
    return out


def test_nul_in_an_old_chatgpt_message_is_stripped_and_counted():
    assert "\\u0000" in CHATGPT_NUL.read_text()  # the JSON escape, as exports write it
    convs, reader = read_all(CHATGPT_NUL)
    old = by_id(convs)["conv-nul"]
    assert old.title == "Old terminal"
    assert [(m.id, m.text) for m in old.messages] == [
        ("n-u1", "pasted from a terminal: ls -la"), ("n-a1", "That lists files.")]  # "\x00" alone: nothing left
    assert texts(by_id(convs)["conv-clean"]) == ["A clean question"]
    assert reader.profile.user_profile == "I keep bees."
    assert not any("\x00" in s for s in emitted_strings(convs, reader))
    # title 1, conversation id 1, message text 2, message id 1, the NUL-only message 1, profile 1
    assert reader.summary.nul_stripped == 7
    assert reader.summary.messages == 3


def test_nul_in_a_claude_export_is_stripped_and_counted():
    convs, reader = read_all(CLAUDE_NUL)
    (conv,) = convs
    assert (conv.id, conv.title) == ("claude-nul", "Binary")
    assert [(m.id, m.text) for m in conv.messages] == [
        ("cm1", "ab"), ("cm2", "ok\n\n[attachment: dump.bin]\nxy")]
    assert not any("\x00" in s for s in emitted_strings(convs, reader))
    assert reader.summary.nul_stripped == 5  # uuid, name, text, message uuid, attachment


def _nul_chat(cid: str) -> dict:
    return simple_chat(cid, question="before\x00after")


@pytest.mark.parametrize("shape", ["list", "wrapped", "single", "hand_off", "zip"])
def test_nul_is_stripped_on_every_parse_path(tmp_path, shape):
    # list / wrapped: framed for orjson; single: ijson; hand_off: a lone
    # surrogate makes orjson refuse and ijson reads the rest; zip: streamed.
    convs = [simple_chat("a"), _nul_chat("b"), _nul_chat("c")]
    if shape == "hand_off":
        convs[0] = simple_chat("a", answer="odd \ud800 text")
    value = {"list": convs, "wrapped": {"conversations": convs}, "single": convs[1]}.get(shape, convs)
    data = json.dumps(value)
    if shape == "zip":
        path = make_zip(tmp_path / "e.zip", {"conversations.json": data})
    else:
        path = tmp_path / "conversations.json"
        path.write_text(data, encoding="utf-8", errors="surrogatepass")
    got, reader = read_all(path)
    nul_convs = [c for c in got if c.id in ("b", "c")]
    assert nul_convs and all(texts(c)[0] == "beforeafter" for c in nul_convs)
    assert reader.summary.nul_stripped == len(nul_convs)


# ----------------------------------------------------------------- lone surrogates

def _claude_chat(cid: str, text: str) -> dict:
    return {"uuid": cid, "name": "C", "created_at": "2024-01-01T10:00:00Z", "updated_at": "2024-01-01T10:00:00Z",
            "chat_messages": [{"uuid": "m1", "sender": "human", "text": "",
                               "content": [{"type": "text", "text": text}]}]}


@pytest.mark.parametrize("escape, expected, replaced", [
    ("\\ud800", "a\ufffdb", 1),          # a high surrogate alone (yajl made it "?")
    ("\\udc00", "a\ufffdb", 1),          # a low one alone (yajl's bytes failed the import as invalid UTF-8)
    ("\\uD83D\\u0041", "a\ufffdAb", 1),  # a high one before a plain escape (yajl merged the two)
    ("\\ud83d\\ude00", "a\U0001f600b", 0),  # a pair is a character: left alone
    ("\\\\ud800", "a\\ud800b", 0),       # an escaped backslash, then text
])
@pytest.mark.parametrize("shape", ["list", "wrapped", "single", "zip", "claude"])
def test_lone_surrogates_are_replaced_and_counted_on_every_parse_path(tmp_path, shape, escape, expected, replaced):
    # list / wrapped / claude: framed for orjson, which refuses the string and
    # hands off to ijson; single: ijson throughout; zip: streamed from a member.
    if shape == "claude":
        convs = [_claude_chat("a", "before"), _claude_chat("b", "aQQQb"), _claude_chat("c", "after")]
    else:
        convs = [simple_chat("a"), simple_chat("b", question="aQQQb"), simple_chat("c")]
    value = {"wrapped": {"conversations": convs}, "single": convs[1]}.get(shape, convs)
    data = json.dumps(value).replace("QQQ", escape)
    if shape == "zip":
        path = make_zip(tmp_path / "e.zip", {"conversations.json": data})
    else:
        path = tmp_path / "conversations.json"
        path.write_text(data, encoding="ascii")
    got, reader = read_all(path)
    assert texts(by_id(got)["b"])[0] == expected
    assert [c.id for c in got] == (["b"] if shape == "single" else ["a", "b", "c"])
    assert reader.summary.surrogates_replaced == replaced
    for text in emitted_strings(got, reader):
        text.encode("utf-8")  # what Postgres and Kafka need: no surrogate left


def test_a_lone_surrogate_split_across_reads_is_still_found():
    data = b'["x\\ud800", "\\ud83d\\ude00", "\\\\ud800", "\\udfff\\udfff", "\\\\\\udc00"]'
    whole = SurrogateScrubber().feed(data, final=True)
    assert whole == (data.replace(b"x\\ud800", b"x\\ufffd").replace(b"\\udfff", b"\\ufffd")
                     .replace(b"\\\\\\udc00", b"\\\\\\ufffd"), 4)
    for size in range(1, 14):
        scrubber, out, replaced = SurrogateScrubber(), b"", 0
        for i in range(0, len(data), size):
            part, n = scrubber.feed(data[i:i + size])
            out, replaced = out + part, replaced + n
        part, n = scrubber.feed(b"", final=True)
        assert (out + part, replaced + n) == whole, size


def test_a_raw_nul_byte_is_invalid_json(tmp_path):
    # Only the escape is JSON; a raw control byte in a string is refused in one line.
    path = tmp_path / "conversations.json"
    path.write_bytes(json.dumps([simple_chat("a", question="QQ")]).encode().replace(b"QQ", b"Q\x00Q"))
    expect_error("not_json", path)


# ----------------------------------------------------------------- files that are not regular files

@pytest.fixture
def no_hang():
    """Fails a test that blocks (on opening a FIFO, say) instead of hanging the suite."""
    import signal

    def hung(signum, frame):
        raise AssertionError("the parser blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def folder_export(root: Path) -> Path:
    root.mkdir()
    write_json(root / "conversations.json", [simple_chat("a")])
    return root


@pytest.mark.parametrize("name", ["conversations.json", "export_manifest.json"])
def test_a_fifo_in_a_folder_export_is_refused(tmp_path, no_hang, name):
    root = folder_export(tmp_path / "export")
    (root / name).unlink(missing_ok=True)
    os.mkfifo(root / name)
    err = expect_error("not_regular", root)
    assert str(err) == f"{name} in export is not a regular file (a FIFO)"


def test_a_fifo_that_is_not_read_is_left_alone(tmp_path, no_hang):
    root = folder_export(tmp_path / "export")
    os.mkfifo(root / "users.json")
    convs, _ = read_all(root)
    assert [c.id for c in convs] == ["a"]


def test_symlinks_in_a_folder_export_stay_inside_it(tmp_path, no_hang):
    root = folder_export(tmp_path / "export")
    (root / "data").mkdir()
    (root / "conversations.json").rename(root / "data" / "chats.json")
    (root / "conversations.json").symlink_to(Path("data") / "chats.json")
    convs, _ = read_all(root)  # a link to a file inside the export is followed
    assert [c.id for c in convs] == ["a"]
    outside = write_json(tmp_path / "elsewhere.json", [simple_chat("b")])
    (root / "conversations.json").unlink()
    (root / "conversations.json").symlink_to(outside)
    err = expect_error("not_regular", root)
    assert str(err) == "conversations.json in export is a symlink out of the export folder"
    (root / "conversations.json").unlink()
    (root / "conversations.json").symlink_to("/dev/zero")
    expect_error("not_regular", root)


def test_a_fifo_or_device_as_the_export_is_not_a_regular_file(tmp_path, no_hang):
    fifo = tmp_path / "export.zip"
    os.mkfifo(fifo)
    err = expect_error("not_regular", fifo)
    assert str(err) == f"export {fifo} is not a regular file or folder (a FIFO)"
    err = expect_error("not_regular", "/dev/zero")
    assert str(err) == "export /dev/zero is not a regular file or folder (a character device)"
    link = tmp_path / "link.json"
    link.symlink_to("/dev/zero")
    assert "(a character device)" in str(expect_error("not_regular", link))


def test_a_file_swapped_for_a_fifo_after_the_scan_is_refused_on_open(tmp_path, no_hang):
    from soulprint.domain.parsing.source import open_regular

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ExportError) as info:
        open_regular(str(tmp_path / "fifo"), "conversations.json in export")
    assert info.value.code == "not_regular"
    assert str(info.value) == "conversations.json in export is not a regular file (a FIFO)"
