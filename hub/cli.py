"""`python -m diffcd_hub push|pull|list`: share fitted SDFs through the Hugging Face Hub."""

from __future__ import annotations

import argparse
import logging
import sys

from diffcd_hub.errors import scrub

EPILOG = """\
The Hub address comes from HF_ENDPOINT (default https://huggingface.co); to try this offline run
`python -m tools.hubserver` and export the HF_ENDPOINT it prints. Tokens come from --token, else
HF_TOKEN, else `hf auth login`; they are never printed or written anywhere.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffcd_hub", description="Share fitted diffcd SDFs through the Hugging Face Hub: "
                                                 "push, pull and list checkpoints.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{push,pull,list,prune}")

    push = sub.add_parser("push", help="publish a run folder or export as one commit",
                          description="Publish a fitted SDF (a run folder or an export folder) to a Hub repo "
                                      "as one commit: weights and config as exported, a model card, the mesh, "
                                      "metrics when the run has them. Prints the commit URL and sha.")
    push.add_argument("source", metavar="RUN_DIR_OR_CHECKPOINT",
                      help="a run folder (python -m diffcd fit --out ...), an export folder, or its config.json")
    push.add_argument("repo_id", metavar="NAMESPACE/NAME", help="the repo to push to (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repo private; refused, with nothing "
                                                             "pushed, when a public repo of that name exists")
    push.add_argument("--revision", metavar="BRANCH", default=None,
                      help="commit to this branch, created from main if missing (default: main)")
    push.add_argument("--message", default=None, help="the commit message (default: 'Upload <method> SDF ...')")
    push.add_argument("--include-cloud", nargs="?", const=True, default=False, metavar="PATH",
                      help="also publish a subsample (at most 20k points) of the input cloud as cloud.npy: "
                           "the cloud file in the run folder, or the file PATH")
    push.add_argument("--mesh-resolution", type=int, default=256, metavar="N",
                      help="resolution of the mesh extracted for an export folder without mesh.glb (default 256)")
    push.add_argument("--token", default=None, help="access token with write access (default: HF_TOKEN or login)")

    pull = sub.add_parser("pull", help="download, verify and mesh a published checkpoint",
                          description="Download a published checkpoint (config.json, model.safetensors, README.md, "
                                      "metrics.json; mesh.glb only with --resolution 0), each size-checked before "
                                      "downloading, verify it, and write its files and a mesh extracted at "
                                      "--resolution into --out. A second pull of the same commit downloads nothing "
                                      "and works offline (HF_HUB_OFFLINE=1).")
    pull.add_argument("repo_id", metavar="NAMESPACE/NAME", help="the repo to pull")
    pull.add_argument("--revision", default=None, help="a branch, tag or commit sha (default: main)")
    pull.add_argument("--resolution", type=int, default=256,
                      help="marching-cubes resolution of the written mesh; 0 copies the published mesh.glb "
                           "(default 256)")
    pull.add_argument("--out", metavar="DIR", default=None, help="output folder (default: ./NAME)")
    pull.add_argument("--token", default=None, help="access token for private repos (default: HF_TOKEN or login)")

    lst = sub.add_parser("list", help="list published diffcd checkpoints",
                         description="List diffcd checkpoints on the Hub (library diffcd), newest first, with "
                                     "method, commit and metrics.")
    lst.add_argument("--author", default=None, help="only this user's or organisation's repos")
    lst.add_argument("--search", default=None, help="only repos whose name contains this text")
    lst.add_argument("--limit", type=int, default=50, help="at most this many repos (default 50)")
    lst.add_argument("--token", default=None, help="access token, to include private repos you can read")

    prune = sub.add_parser("prune", help="shrink the local Hub cache",
                           description="Delete cached model revisions not used for --max-age hours, then the least "
                                       "recently used ones until the cache holds at most --max-gb (revisions used in "
                                       "the last 10 minutes are kept).")
    prune.add_argument("--max-gb", type=float, default=10.0, help="largest cache size in GB (default 10)")
    prune.add_argument("--max-age", type=float, default=24 * 7, metavar="HOURS",
                       help="delete revisions unused for this many hours (default 168)")
    prune.add_argument("--cache-dir", default=None, help="the cache folder (default: huggingface_hub's)")
    return parser


def _headline_metric(metrics: dict) -> str:
    for group, key in (("eval", "chamfer"), ("eval", "fscore"), ("cloud_distances", "cloud_to_surface_mean")):
        value = (metrics.get(group) or {}).get(key)
        if isinstance(value, (int, float)):
            return f"{key}={value:.4g}"
    return ""


def _run(args: argparse.Namespace) -> None:
    if args.command == "push":
        from diffcd_hub.push import push_checkpoint

        result = push_checkpoint(args.source, args.repo_id, token=args.token, private=args.private,
                                 revision=args.revision, commit_message=args.message,
                                 include_cloud=args.include_cloud, mesh_resolution=args.mesh_resolution)
        print(f"Pushed {', '.join(result.files)} to {result.repo_id} (branch {result.revision})")
        print(f"commit: {result.commit_url}")
        print(f"sha: {result.commit_sha}")
    elif args.command == "pull":
        from diffcd_hub.pull import pull_checkpoint

        out = args.out or args.repo_id.split("/")[-1]
        result = pull_checkpoint(args.repo_id, revision=args.revision, token=args.token, out_dir=out,
                                 resolution=args.resolution or None)
        print(f"Pulled {result.repo_id} at {result.commit_sha} ({result.sdf.method}, {result.sdf.steps} steps)")
        print(f"files: {result.out_dir}")
        print(f"mesh: {result.mesh_path}")
    elif args.command == "prune":
        from diffcd_hub.cache import prune

        result = prune(int(args.max_gb * 1e9), args.max_age * 3600, cache_dir=args.cache_dir)
        print(f"Deleted {result.revisions_deleted} revisions ({result.bytes_freed / 1e6:.1f} MB); "
              f"the cache holds {result.bytes_kept / 1e6:.1f} MB.")
    else:
        from diffcd_hub.discover import list_checkpoints

        rows = list_checkpoints(author=args.author, token=args.token, limit=args.limit, search=args.search)
        if not rows:
            print("No diffcd checkpoints found.")
        for row in rows:
            print(f"{row['repo_id']:<40} {str(row['method']):<12} {row['sha'][:12]}  "
                  f"{(row['last_modified'] or '')[:19]}  {_headline_metric(row['metrics'])}".rstrip())


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    from diffcd.errors import DiffCDError

    try:
        _run(args)
    except DiffCDError as exc:  # HubError included: one clear line, no traceback
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
