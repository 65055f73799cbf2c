"""The app as a Model Context Protocol (MCP) server: its public endpoints as tools for agents.

Gradio serves it at /gradio_api/mcp/ (streamable HTTP) when launched with mcp_server=True and
the `gradio[mcp]` extra (mcp<2) is installed. Each public, named endpoint becomes a tool named
after its function; the description is the function's docstring and each parameter is described
from its `Args:` entry. A file parameter takes an http(s) URL (downloaded by space.remote with
the upload's size and time bounds); output files come back as URLs.

MCP callers go through the same endpoints, queue, validation and limits as the page and
gradio_client: nothing is different for them except that Gradio's MCP server does not carry a
session's state from one call to the next.
"""

from __future__ import annotations

import inspect
import logging
import os

logger = logging.getLogger(__name__)

MCP_ENV = "DIFFCD_MCP_SERVER"
MCP_PATH = "/gradio_api/mcp/"
SESSION_TOOLS = ("stop", "extract_mesh", "evaluate", "push_checkpoint")
"""Tools that act on the caller's session model (gr.State): over MCP every call is a new session.
MCP callers re-mesh and evaluate with remesh_checkpoint and evaluate_checkpoint instead, which take
the checkpoint zip (its URL) that fit and pull_checkpoint return."""


def mcp_enabled() -> bool:
    """Whether to serve MCP: DIFFCD_MCP_SERVER=1/0 decides; unset, on in a Space (SPACE_ID), off locally."""
    value = os.environ.get(MCP_ENV, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        wanted = True
    elif value in ("0", "false", "no", "off"):
        wanted = False
    else:
        wanted = bool(os.environ.get("SPACE_ID"))
    if wanted and not mcp_available():
        logger.warning("The MCP server is off: install the gradio[mcp] extra (mcp>=1.30,<2) to serve it.")
        return False
    return wanted


def mcp_available() -> bool:
    """The mcp package in a version Gradio 6.31's MCP server works with (1.x)."""
    try:
        from importlib.metadata import version

        return int(version("mcp").split(".")[0]) == 1
    except Exception:  # not installed, or an unreadable version
        return False


def launch_option() -> dict:
    """The keyword of demo.launch() that turns the MCP server on or off (see mcp_enabled)."""
    enabled = mcp_enabled()
    if enabled:
        _patch_gradio_result_shape()
    return {"mcp_server": enabled}


_SECTIONS = ("Args:", "Arguments:", "Parameters:", "Returns:", "Raises:", "Yields:", "Examples:")


def one_line_entries(doc: str | None) -> str | None:
    """The docstring with each `Args:` entry, and the whole `Returns:` section, on one line.

    Gradio's MCP server (and its API page) reads only the first line of each argument's
    description and turns every line of `Returns:` into a separate comma-joined fragment, so
    wrapped Google-style docstrings would reach an agent cut off mid-sentence.
    """
    if not doc:
        return doc
    lines = inspect.cleandoc(doc).split("\n")
    out: list[str] = []
    section = None
    entry_indent = 0
    for line in lines:
        text = line.strip()
        if text in _SECTIONS:
            section, entry_indent = text, None
            out.append(text)
            continue
        if section is None or not text:
            out.append(line)
            continue
        indent = len(line) - len(line.lstrip())
        if out[-1].strip() == section:  # the section's first line
            entry_indent = indent
            out.append(line)
        elif section == "Returns:" or indent > entry_indent:
            out[-1] += " " + text  # a continuation line
        else:
            out.append(line)
    return "\n".join(out)


def prepare_tools(demo) -> list[str]:
    """Make the app's public endpoints read well as MCP tools; returns the names of the tools.

    Rewrites each endpoint function's docstring with one_line_entries, and keeps the endpoints
    that act on the caller's session model (SESSION_TOOLS) out of the MCP tool list: Gradio's MCP
    server starts every call in a fresh session, so they could only answer "no model yet".
    They stay API endpoints for the page and gradio_client.
    """
    tools = []
    for block_fn in demo.fns.values():
        if block_fn.fn is None or not block_fn.api_name or block_fn.api_visibility != "public":
            continue
        function = getattr(block_fn.fn, "__func__", block_fn.fn)
        try:
            function.__doc__ = one_line_entries(function.__doc__)
            if block_fn.api_name in SESSION_TOOLS:
                function._mcp_type = "session"  # Gradio lists only functions without one, or "tool"
                continue
        except (AttributeError, TypeError):  # a builtin or a lambda without a writable docstring
            continue
        tools.append(block_fn.api_name)
    return tools


def _patch_gradio_result_shape() -> None:
    """Work around Gradio 6.31: a tool call without a progress token wraps a multi-output
    endpoint's result tuple in a one-item list, so removing the gr.State output fails ("pop index
    out of range") and /fit or /pull_checkpoint answer MCP clients with that error. With a
    progress token Gradio passes the outputs as a list; this makes the other path do the same.
    """
    try:
        from gradio.mcp import GradioMCPServer
        from anyio.to_thread import run_sync
    except ImportError:  # no MCP support installed: nothing to patch
        return
    if getattr(GradioMCPServer, "_diffcd_patched", False):
        return

    async def _execute_tool_without_progress(self, job):
        result = await run_sync(job.result)
        return list(result) if isinstance(result, tuple) else [result]

    GradioMCPServer._execute_tool_without_progress = _execute_tool_without_progress
    GradioMCPServer._diffcd_patched = True
