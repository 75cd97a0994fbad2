"""bench/generate_export.py: deterministic, valid, and as awkward as real exports.

Small outputs only (<= 2 MB); no timing assertions.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_generator():
    # bench/ is not a package: load the script as a module.  It must be in
    # sys.modules while it runs, for its dataclasses to resolve annotations.
    name = "soulprint_bench_generate_export"
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "generate_export.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def run(out: Path, *args: str) -> Path:
    assert gen.main(["--out", str(out), "--quiet", *args]) == 0
    return out


def walk(conv: dict) -> list[dict]:
    """Nodes from the root to current_node, following parent links."""
    mapping = conv["mapping"]
    path = []
    node_id = conv["current_node"]
    seen = set()
    while node_id is not None:
        assert node_id not in seen, "cycle in parent links"
        seen.add(node_id)
        node = mapping[node_id]
        path.append(node)
        node_id = node["parent"]
    return path[::-1]


@pytest.fixture(scope="module")
def classic(tmp_path_factory) -> list[dict]:
    out = run(tmp_path_factory.mktemp("classic") / "conversations.json", "--size-mb", "2", "--seed", "1")
    return json.loads(out.read_bytes())


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory) -> Path:
    return run(tmp_path_factory.mktemp("split") / "export", "--size-mb", "1.5", "--layout", "split",
               "--split-mb", "0.5", "--media-mb", "0.05", "--seed", "1")


def messages(convs):
    for conv in convs:
        for node in conv["mapping"].values():
            if node["message"] is not None:
                yield conv, node, node["message"]


# ---------------------------------------------------------------- determinism

def test_same_seed_same_bytes(tmp_path):
    for layout_args in (["--zip", "--media-mb", "0.05"], ["--layout", "split", "--split-mb", "0.3"]):
        a = run(tmp_path / "a" / "x.zip" if "--zip" in layout_args else tmp_path / "a" / "x",
                "--size-mb", "0.6", "--seed", "3", *layout_args)
        b = run(tmp_path / "b" / "x.zip" if "--zip" in layout_args else tmp_path / "b" / "x",
                "--size-mb", "0.6", "--seed", "3", *layout_args)
        if a.is_file():
            assert a.read_bytes() == b.read_bytes()
        else:
            names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
            assert names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
            for name in names:
                assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_other_seed_other_person(tmp_path):
    one = run(tmp_path / "1.json", "--conversations", "30", "--seed", "1").read_bytes()
    two = run(tmp_path / "2.json", "--conversations", "30", "--seed", "2").read_bytes()
    assert one != two
    assert b"Lisbon" in one and b"Manchester" in two


def test_conversation_count_is_exact(tmp_path):
    out = run(tmp_path / "c.json", "--conversations", "17")
    assert len(json.loads(out.read_bytes())) == 17


# ---------------------------------------------------------------- classic layout

def test_classic_is_one_array_of_conversations(classic):
    assert isinstance(classic, list) and len(classic) > 40
    keys = {"title", "create_time", "update_time", "mapping", "moderation_results", "current_node", "plugin_ids",
            "conversation_id", "id", "is_archived", "default_model_slug", "is_do_not_remember"}
    for conv in classic:
        assert keys <= conv.keys()
        assert conv["current_node"] in conv["mapping"]
        path = walk(conv)
        assert path[0]["parent"] is None and path[0]["message"] is None  # null-message root
        for node in conv["mapping"].values():
            assert "children" in node
            for child in node["children"]:
                assert conv["mapping"][child]["parent"] == node["id"]


def test_newest_first_over_about_two_years(classic):
    times = [c["create_time"] / (1000 if c["create_time"] > 1e11 else 1) for c in classic]
    assert times == sorted(times, reverse=True)
    assert times[0] <= gen.END_TIME
    span_days = (times[0] - times[-1]) / 86400
    assert 400 < span_days < 1100


def test_has_the_awkward_parts(classic):
    content_types = Counter(m["content"]["content_type"] for _, _, m in messages(classic))
    for ct in ("text", "multimodal_text", "code", "execution_output", "user_editable_context",
               "thoughts", "reasoning_recap"):
        assert content_types[ct] > 0, ct
    hidden = [m for _, _, m in messages(classic) if m["metadata"].get("is_visually_hidden_from_conversation")]
    assert any(m["author"]["role"] == "system" for m in hidden)
    part_types = Counter(p["content_type"] for _, _, m in messages(classic)
                         if m["content"]["content_type"] == "multimodal_text"
                         for p in m["content"]["parts"] if isinstance(p, dict))
    assert part_types["image_asset_pointer"] > 0 and part_types["audio_transcription"] > 0
    code = [m for _, _, m in messages(classic) if m["content"]["content_type"] == "code"]
    assert any(m["recipient"] == "python" for m in code)
    outputs = [m for _, _, m in messages(classic) if m["content"]["content_type"] == "execution_output"]
    assert all(m["author"] == {"role": "tool", "name": "python", "metadata": {}} for m in outputs)
    ci = [m for _, _, m in messages(classic) if m["content"]["content_type"] == "user_editable_context"]
    assert all("user_profile" in m["content"] and "user_instructions" in m["content"] for m in ci)
    assert any("data engineer" in m["content"]["user_profile"] for m in ci)


def test_branches_and_current_node(classic):
    edited = regenerated = 0
    for conv in classic:
        on_path = {node["id"] for node in walk(conv)}
        for node in conv["mapping"].values():
            if len(node["children"]) < 2:
                continue
            roles = {conv["mapping"][c]["message"]["author"]["role"] for c in node["children"]}
            edited += roles == {"user"}
            regenerated += roles == {"assistant"}
            if node["id"] in on_path:
                # current_node follows exactly one of the alternatives
                assert sum(c in on_path for c in node["children"]) == 1
    assert edited > 0 and regenerated > 0


def test_message_sizes_are_realistic(classic):
    user = sorted(len(m["content"]["parts"][0]) for _, _, m in messages(classic)
                  if m["author"]["role"] == "user" and m["content"]["content_type"] == "text")
    assistant = [len(m["content"]["parts"][0]) for _, _, m in messages(classic)
                 if m["author"]["role"] == "assistant" and m["content"]["content_type"] == "text"
                 and m["recipient"] == "all"]
    assert user[0] < 40 and user[len(user) // 2] < 400  # mostly short
    assert sum(assistant) / len(assistant) > 300


def test_persona_reads_like_one_person(classic):
    user_text = " ".join(m["content"]["parts"][0] for _, _, m in messages(classic)
                         if m["author"]["role"] == "user" and m["content"]["content_type"] == "text")
    hits = [fact[1] for fact in gen.MAYA["facts"] if fact[1] in user_text]
    assert len(hits) >= 5
    assert "Manchester" not in user_text  # another seed's person


# ---------------------------------------------------------------- split layout

def test_split_layout_has_manifest_and_no_children(split_dir):
    manifest = json.loads((split_dir / "export_manifest.json").read_bytes())
    assert manifest["version"] == 2
    assert len(manifest["files"]) >= 2
    total = 0
    for name in manifest["files"]:
        path = split_dir / name
        assert path.stat().st_size <= 0.5 * 1024 * 1024 or len(json.loads(path.read_bytes())) == 1
        convs = json.loads(path.read_bytes())
        assert isinstance(convs, list)
        total += len(convs)
        for conv in convs:
            assert conv["current_node"] in conv["mapping"]
            for node in conv["mapping"].values():
                assert "children" not in node
            walk(conv)
    assert total == manifest["conversation_count"]
    assert sorted(p.name for p in split_dir.glob("conversations-*.json")) == manifest["files"]


def test_split_layout_drops_optional_message_keys(split_dir):
    convs = [c for name in json.loads((split_dir / "export_manifest.json").read_bytes())["files"]
             for c in json.loads((split_dir / name).read_bytes())]
    missing = Counter(key for _, _, m in messages(convs)
                      for key in ("recipient", "status", "weight", "metadata") if key not in m)
    assert all(missing[key] > 0 for key in ("recipient", "status", "weight", "metadata"))
    # ... but never the flag that hides a message
    for _, _, m in messages(convs):
        if m["content"]["content_type"] == "user_editable_context":
            assert m["metadata"]["is_visually_hidden_from_conversation"] is True


# ---------------------------------------------------------------- zip and claude

def test_zip_holds_conversations_media_and_extras(tmp_path):
    out = run(tmp_path / "export.zip", "--conversations", "40", "--zip", "--media-mb", "0.02")
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert {"conversations.json", "user.json", "chat.html"} <= set(names)
        media = [n for n in names if n.endswith((".png", ".jpeg", ".webp", ".wav"))]
        assert media and sum(zf.getinfo(n).file_size for n in media) == int(0.02 * 1024 * 1024)
        assert len(json.loads(zf.read("conversations.json"))) == 40


def test_claude_format(tmp_path):
    out = run(tmp_path / "claude.json", "--conversations", "25", "--format", "claude")
    convs = json.loads(out.read_bytes())
    assert len(convs) == 25
    for conv in convs:
        assert {"uuid", "name", "created_at", "updated_at", "chat_messages"} <= conv.keys()
        senders = [m["sender"] for m in conv["chat_messages"]]
        assert senders[0] == "human" and set(senders) <= {"human", "assistant"}
        assert conv["created_at"].endswith("Z")
