"""The app's code stays readable: each tab lays itself out and binds its own events, the app only
composes the tabs, and no function in space/ is longer than a screen."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPACE = ROOT / "space"
MAX_FUNCTION_LINES = 80
EVENTS = {"click", "change", "input", "upload", "clear", "select", "submit", "success", "then"}


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_in_space_is_longer_than_a_screen():
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} has {node.end_lineno - node.lineno + 1} lines"
            for path in sorted(SPACE.glob("*.py")) for node in _functions(path)
            if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_the_app_composes_tabs_and_binds_no_component_events():
    """ui.py binds only the page's own events (load, unload); the tabs bind theirs."""
    tree = ast.parse((SPACE / "ui.py").read_text())
    bound = [f"ui.py:{node.lineno} .{node.func.attr}(...)" for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in EVENTS]
    assert not bound, bound


@pytest.mark.parametrize("module", ["fit_tab", "compare_tab", "hub_tab", "model_tab", "inputs"])
def test_each_tab_module_lays_out_and_binds(module):
    text = (SPACE / f"{module}.py").read_text()
    assert "def layout(" in text and "def bind(" in text


def test_updates_are_named_in_the_order_of_the_outputs():
    import gradio as gr

    from diffcd_space.compare_tab import COMPARE_OUTPUTS, MAX_VIEWERS, compare_update
    from diffcd_space.fit_tab import FIT_OUTPUTS, fit_update

    update = fit_update(status="s", current={"x": 1})
    assert update[FIT_OUTPUTS.index("status")] == "s" and update[-1] == {"x": 1}
    assert sum(value == gr.skip() for value in update) == len(FIT_OUTPUTS) - 2
    update = compare_update(views={1: "b.glb"}, legend="<p>")
    assert len(update) == MAX_VIEWERS + len(COMPARE_OUTPUTS)
    assert update[1] == "b.glb" and update[0] == gr.skip() and update[-1] == "<p>"
    with pytest.raises(TypeError, match="no output"):
        fit_update(surfce="typo")


def test_the_api_page_lists_the_endpoints_tab_by_tab(tmp_path):
    from diffcd_space import build_app

    demo = build_app(session_root=tmp_path)
    assert list(demo.get_api_info()["named_endpoints"]) == [
        "/load_example", "/preview_cloud", "/fit", "/stop", "/compare", "/stop_compare", "/extract_mesh", "/evaluate",
        "/remesh_checkpoint", "/evaluate_checkpoint", "/list_checkpoints", "/pull_checkpoint", "/push_checkpoint"]
