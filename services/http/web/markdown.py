"""Markdown to safe HTML for the soulprint page: a person's text never becomes markup.

The sections and MEMORY are markdown an LLM wrote from someone's history, so
they may hold anything that person once typed, ``<script>`` included.
CommonMark with raw HTML turned off escapes every tag as text, and
markdown-it's link check refuses ``javascript:``, ``vbscript:``, ``file:`` and
``data:`` URLs; links that remain open in a new context without a referrer.
"""

from __future__ import annotations

from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table")


def _link_open(renderer, tokens, idx, options, env):
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
    return renderer.renderToken(tokens, idx, options, env)


_MD.add_render_rule("link_open", _link_open)


def render(text: str | None) -> str:
    """``text`` as HTML; every tag in it is escaped, never passed through."""
    return _MD.render(text or "")
