"""Deploy the app as a Hugging Face Space with GPU hardware, with JAX's CUDA build.

    python -m diffcd_space.deploy OUT_DIR [--push OWNER/NAME] [--private] [--hardware l4x1] [--token TOKEN]

writes OUT_DIR, a folder that is the Space: app.py, the packages under their import names
(diffcd/, diffcd_hub/ from hub/, diffcd_space/ from space/, as pyproject.toml's package-dir maps
them), the built-in examples, docs/ (the README's pictures and the pages it links), README.md
(its YAML header is the Space's configuration), a requirements.txt: pyproject.toml's
dependencies with jax[cuda12] in place of jax, and the `poisson` extra (Open3D's CPU build, for
Screened Poisson), and packages.txt: the Debian libraries Open3D loads, which a Space installs
with apt. A Space installs
that requirements.txt before its files are copied in, so it cannot install the project itself;
app.py imports the packages from the Space's root instead. With --push it also creates the Space
(Gradio SDK) if needed and uploads the folder in one commit (HF_ENDPOINT chooses the Hub, as for
`python -m diffcd_hub`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
FILES = ("app.py", "README.md", "LICENSE", "packages.txt")
"""packages.txt: the system libraries Open3D needs (libGL, libEGL, ...), which a Space apt-installs."""
EXAMPLES = "examples"
DOCS = "docs"
"""The README's pictures (docs/images/) and the pages it links, so that both work on the Space's page."""
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.partial", "*.pyi")
CPU_JAX = re.compile(r"^jax\s*(?=[<>=!~;]|$)")
SPACE_EXTRAS = ("poisson",)
"""Optional dependencies a Space installs too: Screened Poisson (Open3D) is one of the app's methods."""

__all__ = ["packages", "space_requirements", "write_space", "push_space", "main"]


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise SystemExit("error: deploying needs Python 3.11 or later (it reads pyproject.toml with tomllib)")
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def packages() -> dict[str, str]:
    """Import name -> folder of the repository, from pyproject.toml's package-dir."""
    return dict(_pyproject()["tool"]["setuptools"]["package-dir"])


def space_requirements() -> str:
    """requirements.txt of the Space: pyproject.toml's dependencies with JAX's CUDA 12 build, then the
    extras of SPACE_EXTRAS (Open3D for Screened Poisson)."""
    project = _pyproject()["project"]
    body = [CPU_JAX.sub("jax[cuda12]", line) for line in project["dependencies"]]
    if not any(line.startswith("jax[cuda12]") for line in body):
        raise SystemExit(f"error: {PYPROJECT} lists no jax dependency to replace with jax[cuda12]")
    for extra in SPACE_EXTRAS:
        body += project["optional-dependencies"][extra]
    header = ["# Written by `python -m diffcd_space.deploy` from pyproject.toml's dependencies:",
              "# the app's requirements with JAX's CUDA 12 build, for a Space with GPU hardware,",
              f"# and the extras {', '.join(SPACE_EXTRAS)} (Open3D's CPU build: Screened Poisson)."]
    return "\n".join(header + body) + "\n"


def _readme(hardware: str | None) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    if hardware:
        text, count = re.subn(r"(?m)^suggested_hardware:.*$", f"suggested_hardware: {hardware}", text, count=1)
        if not count:
            raise SystemExit("error: README.md has no suggested_hardware line in its YAML header")
    return text


def write_space(out: str | os.PathLike, *, hardware: str | None = None, overwrite: bool = False) -> Path:
    """Write the Space folder; returns its path. Refuses a non-empty folder unless overwrite."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SystemExit(f"error: {out} is not empty; choose a new folder or pass --overwrite")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    missing = [name for name in FILES if not (ROOT / name).is_file()]
    if missing:
        raise SystemExit(f"error: the repository lacks {', '.join(missing)}, which a Space needs; restore it from git")
    for name in FILES:
        if name != "README.md":
            shutil.copy2(ROOT / name, out / name)
    (out / "README.md").write_text(_readme(hardware), encoding="utf-8")
    for package, folder in packages().items():
        shutil.copytree(ROOT / folder, out / package, ignore=IGNORED)
    shutil.copytree(ROOT / EXAMPLES, out / EXAMPLES, ignore=IGNORED)
    shutil.copytree(ROOT / DOCS, out / DOCS, ignore=IGNORED)
    (out / "requirements.txt").write_text(space_requirements(), encoding="utf-8")
    return out


def push_space(folder: str | os.PathLike, repo_id: str, *, private: bool = False, token: str | None = None,
               endpoint: str | None = None) -> str:
    """Create the Space (Gradio SDK) if missing and upload the folder in one commit; returns its URL."""
    from huggingface_hub import HfApi

    from diffcd_hub._common import resolve_endpoint  # HF_ENDPOINT at call time; no Xet off huggingface.co

    api = HfApi(endpoint=resolve_endpoint(endpoint), token=token)
    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="space",
                      commit_message="Deploy diffcd (python -m diffcd_space.deploy)")
    return str(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffcd_space.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the folder to write the Space into (new or empty)")
    parser.add_argument("--push", metavar="OWNER/NAME", help="also create and upload the Space OWNER/NAME")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--hardware", help="the suggested_hardware of the Space's README (default: as in README.md)")
    parser.add_argument("--token", help="a Hub token with write access (default: HF_TOKEN or `hf auth login`)")
    parser.add_argument("--overwrite", action="store_true", help="replace the folder's contents")
    args = parser.parse_args(argv)
    folder = write_space(args.out, hardware=args.hardware, overwrite=args.overwrite)
    print(f"wrote the Space to {folder} (requirements.txt with jax[cuda12] and Open3D, packages.txt)")
    if args.push:
        try:
            url = push_space(folder, args.push, private=args.private, token=args.token)
        except Exception as error:  # the Hub's answer, with the token scrubbed
            message = str(error).replace(args.token, "***") if args.token else str(error)
            print(f"error: pushing to {args.push} failed: {message}", file=sys.stderr)
            return 2
        print(f"pushed to {url}; pick GPU hardware in the Space's settings if it has none yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
