"""Pulled metadata as safe text: what a repo's config.json, metrics.json or model card says, made
harmless to show in Markdown (no remote images or tracking pixels, no raw HTML, no links dressed up
as something else, no layout-breaking control characters), and short.

A pulled repo is written by anyone; the app shows its metadata to every visitor who pulls it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

__all__ = ["plain_text", "escape_markdown", "card_plain_text", "pull_summary"]

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>=:])")
_FRONT_MATTER = re.compile(r"\A---\s*\n.*?\n---\s*(\n|\Z)", re.DOTALL)
_HTML_COMMENT = re.compile(r"<!--.*?(-->|\Z)", re.DOTALL)
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>?")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_REF_IMAGE = re.compile(r"!\[([^\]]*)\]\[[^\]]*\]")
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]*)[^)]*\)")
_REF_DEF = re.compile(r"^\s*\[[^\]]+\]:\s*\S+.*$", re.MULTILINE)


def plain_text(value: Any, max_chars: int = 200) -> str:
    """`value` (any JSON value) as one line of printable text, at most `max_chars` characters.

    Control and format characters (including bidirectional overrides) are dropped, whitespace
    runs become one space.
    """
    text = value if isinstance(value, str) else repr(value)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text[: max_chars * 4])
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def escape_markdown(value: Any, max_chars: int = 200) -> str:
    """`plain_text(value)` that Markdown shows literally: no emphasis, link, image, HTML or table."""
    text = plain_text(value, max_chars)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def card_plain_text(card: str, max_chars: int = 4000) -> str:
    """The prose of a pulled model card (README.md), safe to show as Markdown.

    The YAML front matter, HTML comments and tags are removed; an image becomes "[image: alt]"
    (never fetched), a link becomes its text followed by its address in plain text; everything
    left is escaped, one paragraph per line.
    """
    text = _FRONT_MATTER.sub("", card[: max_chars * 8])
    text = _HTML_COMMENT.sub(" ", text)
    text = _IMAGE.sub(lambda m: f"[image: {m.group(1)}]", text)
    text = _REF_IMAGE.sub(lambda m: f"[image: {m.group(1)}]", text)
    text = _LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})" if m.group(2) else m.group(1), text)
    text = _REF_DEF.sub("", text)
    text = _HTML_TAG.sub(" ", text)
    paragraphs = [p for p in (" ".join(block.split()) for block in re.split(r"\n\s*\n", text)) if p]
    lines, used = [], 0
    for paragraph in paragraphs:
        if used >= max_chars:
            break
        line = escape_markdown(paragraph, max_chars - used)
        used += len(paragraph)
        lines.append(line)
    return "\n\n".join(lines)


def pull_summary(repo_id: str, commit_sha: str, revision: str, config: dict[str, Any],
                 metrics: dict[str, Any] | None = None) -> str:
    """Markdown describing a pulled checkpoint (repo, commit, method, network, steps, seed,
    published metrics), every value from the repo escaped."""
    from hub._common import method_label

    config = config if isinstance(config, dict) else {}
    network = config.get("network") if isinstance(config.get("network"), dict) else {}
    method = config.get("method")
    label = method_label(method) if isinstance(method, str) else "?"
    lines = [f"**{escape_markdown(repo_id, 100)}** @ `{escape_markdown(commit_sha[:12], 12)}` "
             f"({escape_markdown(revision, 100)})",
             f"{escape_markdown(label, 40)} · {escape_markdown(network.get('hidden_layers', '?'), 12)}×"
             f"{escape_markdown(network.get('width', '?'), 12)} network · "
             f"{escape_markdown(config.get('steps', '?'), 20)} steps · seed {escape_markdown(config.get('seed', '?'), 20)}"]
    scores = (metrics or {}).get("eval") if isinstance(metrics, dict) else None
    if isinstance(scores, dict) and scores:
        shown = [f"{escape_markdown(k, 40)} {escape_markdown(f'{v:.4g}' if isinstance(v, float) else v, 20)}"
                 for k, v in list(scores.items())[:12]]
        lines.append("Published metrics: " + ", ".join(shown))
    return "\n\n".join(lines)
