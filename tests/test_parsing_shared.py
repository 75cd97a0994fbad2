"""The parser on the genuine export samples in shared/data (see each SOURCE.md).

The facts asserted come from those SOURCE.md files (node, role and content
type counts), translated into what the parser must emit: the active path only,
no hidden or system messages, no reasoning, hints out of the turns.
"""

from __future__ import annotations

import collections
import zipfile
from pathlib import Path

import pytest

from soulprint.domain.parsing import ExportError, ExportReader

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    pytest.skip(f"shared samples not found at {DATA}", allow_module_level=True)

CHATGPT = DATA / "chatgpt"
CLAUDE = DATA / "claude"


def read(path):
    reader = ExportReader(path)
    return list(reader), reader


def roles(conv) -> collections.Counter:
    return collections.Counter(m.role for m in conv.messages)


def test_code_interpreter_conversation():
    # 45 nodes: a null root, 2 hidden system messages, 8 user, 23 assistant
    # (11 of them `code`), 11 tool `execution_output`; linear.
    convs, reader = read(CHATGPT / "chatgpt2graph_code_interpreter" / "conversations.json")
    assert len(convs) == 1
    conv = convs[0]
    assert conv.title == "Average Distance in U(0,1)"
    assert conv.id == "966da5c4-5bb7-4e4d-ab6d-a7316b96266e"
    assert roles(conv) == {"user": 8, "assistant": 23, "tool": 11}
    assert reader.summary.messages == 42 and reader.summary.hidden_messages == 2
    code = [m.text for m in conv.messages if m.text.startswith(("from sympy", "import numpy"))]
    assert len(code) >= 2  # `code` content is kept
    outputs = [m.text for m in conv.messages if m.role == "tool"]
    assert outputs[:3] == ["0", "0", "1/3"]  # execution_output is kept
    assert conv.messages[0].text.startswith("given two random independent variables x,y in U(0,1)")
    # The old custom-instructions slot is present but empty: no hints.
    assert reader.profile.is_empty()


def test_custom_instructions_sample():
    # client-created-root, a hidden system message, a hidden user_editable_context,
    # then 5 user / 5 assistant turns; is_do_not_remember is false.
    convs, reader = read(CHATGPT / "openwebui_importer_custom_instructions" / "gpt_example.json")
    conv = convs[0]
    assert conv.title == "How photosynthesis works"
    assert roles(conv) == {"user": 5, "assistant": 5}
    assert conv.messages[0].text == "Can you explain how photosynthesis works in simple terms?"
    assert reader.summary.hidden_messages == 2 and reader.summary.excluded == 0
    hints = reader.profile
    assert hints.user_instructions.startswith("Please keep the initial response to 1 to 2 paragraphs")
    assert "The user provided" not in hints.user_instructions
    assert hints.user_profile is None  # empty in the export
    assert not any("1 to 2 paragraphs" in m.text for m in conv.messages)


def test_branches_edited_and_regenerated_are_excluded():
    # 13 nodes, 8 on the current_node path (root, hidden system, 6 turns), 5 off it.
    convs, reader = read(CHATGPT / "librechat_fixtures" / "chatgpt-tree.json")
    conv = convs[0]
    assert [m.text.split("\n")[0] for m in conv.messages] == [
        "hi there", "Hello! How can I assist you today?", "hi again",
        "Hey! Welcome back. What's on your mind?", "tell me a joke", "Sure, here's one for you:",
    ]
    assert conv.messages[-1].id == "f63b8e17-aa5c-4ca6-a1bf-d4d285e269b8"  # current_node, the regenerated answer
    all_text = " ".join(m.text for m in conv.messages)
    assert "so cool bro" not in all_text and "tell me a story" not in all_text  # the other branches
    assert reader.summary.hidden_messages == 1


def test_web_browsing_tool_flow():
    convs, reader = read(CHATGPT / "librechat_fixtures" / "chatgpt-export.json")
    assert [c.title for c in convs] == ["Conversation 1. Web Search", "Conversation 2"]
    first, second = convs
    # 16 message nodes minus the hidden system one: 3 user, 7 assistant (4 `code`
    # browser calls), 5 tool (2 browsing displays, 3 quotes).
    assert roles(first) == {"user": 3, "assistant": 7, "tool": 5}
    assert roles(second) == {"user": 2, "assistant": 2}
    assert reader.summary.messages == 19 and reader.summary.hidden_messages == 2
    assert first.messages[1].text.startswith('search("Volkswagen Transporter')
    assert first.messages[2].text.startswith("# 【0†Volkswagen Transporter MPG")  # tether_browsing_display result
    assert any(any("\u0400" <= ch <= "\u04ff" for ch in m.text) for m in first.messages)  # the Cyrillic result


def test_citations_fragment_fails_with_dangling_parent():
    # A hand-cut fragment: 2 nodes, no root, current_node outside the mapping.
    with pytest.raises(ExportError) as info:
        read(CHATGPT / "librechat_fixtures" / "chatgpt-citations.json")
    assert info.value.code == "dangling_parent"
    assert "Citation Convo" in str(info.value) and "\n" not in str(info.value)


def test_claude_bulk_export_85_conversations():
    convs, reader = read(CLAUDE / "openwebui_importer" / "claude_example.json")
    s = reader.summary
    # 85 conversations; the privacy export kept text for one of them only (10
    # messages); the other 84, two with no messages at all, are empty.
    assert s.conversations + s.empty == 85
    assert (s.conversations, s.empty, s.messages) == (1, 84, 10)
    assert s.format == "claude"
    conv = convs[0]
    assert conv.title == "How Photosynthesis Works" and conv.source == "claude"
    assert roles(conv) == {"user": 5, "assistant": 5}
    assert conv.messages[0].text.startswith("Can you explain how photosynthesis works")


def test_claude_thinking_is_excluded():
    convs, _ = read(CLAUDE / "openwebui_importer" / "claude_thinking_example.json")
    conv = convs[0]
    assert conv.title == "Thinking Demo"
    assert [(m.role, m.text) for m in conv.messages] == [
        ("user", "Can you greet me?"),
        ("assistant", "Hello there! It's great to hear from you."),
    ]
    assert conv.messages[1].time == 1_735_689_605.0  # 2025-01-01T00:00:05Z


def test_claude_single_object_web_app_shape():
    convs, reader = read(CLAUDE / "osteele_claude_chat_viewer" / "claude-bakery-chat.json")
    assert len(convs) == 1 and reader.summary.format == "claude"
    conv = convs[0]
    assert conv.title == "Interactive Bakery Comparison Visualization"
    assert [m.role for m in conv.messages] == ["user", "assistant", "user", "assistant"]
    assert conv.messages[0].text.startswith("Make an interactive visualization")
    assert conv.messages[0].text.endswith("[file: image]")  # the attached image
    assert conv.messages[2].text == "What are your ideas for extending this?"


def test_all_chatgpt_samples_in_one_zip_with_claude_extras(tmp_path):
    # The three good ChatGPT samples concatenated as one export's conversations.json.
    parts = [CHATGPT / "chatgpt2graph_code_interpreter" / "conversations.json",
             CHATGPT / "openwebui_importer_custom_instructions" / "gpt_example.json",
             CHATGPT / "librechat_fixtures" / "chatgpt-tree.json",
             CHATGPT / "librechat_fixtures" / "chatgpt-export.json"]
    bodies = [p.read_bytes().strip()[1:-1].strip() for p in parts]  # drop each file's [ ]
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("conversations.json", b"[" + b",".join(bodies) + b"]")
        zf.writestr("dalle-generations/file-1.webp", b"\x00" * 1000)
    convs, reader = read(path)
    assert len(convs) == 5
    assert reader.summary.messages == 42 + 10 + 6 + 19
    assert reader.profile.user_instructions.startswith("Please keep the initial response")
