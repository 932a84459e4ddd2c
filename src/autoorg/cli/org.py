"""`autoorg org show|diff` — which org code an org runs (each file, where it came from, its hash) and what changed
between two versions."""

from __future__ import annotations

import argparse
import json
import sys

from autoorg import experiments, orgcode
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("org", help="the org's code: `org show` (files, origins, hash), `org diff A B`")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=type(p))
    show = verbs.add_parser("show", help="each file of the org's code, where it resolved from, and the version hash")
    show.add_argument("--json", action="store_true", help="stable JSON for scripts")
    add_org_options(show)
    show.set_defaults(func=run_show)
    diff = verbs.add_parser("diff", help="what changed between two recorded versions (hashes or unique prefixes)")
    diff.add_argument("a")
    diff.add_argument("b")
    add_org_options(diff)
    diff.set_defaults(func=run_diff)


def run_show(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    code = experiments.load_context(paths).org_code()
    current = code.hash
    versions = orgcode.recorded(paths.orgcode)
    files = [{"name": f.name, "origin": f.origin, "sha": f.sha, "path": str(f.path)}
             for f in sorted(code.files, key=lambda f: f.name)]
    if args.json:
        print(json.dumps({"tag": paths.tag, "hash": current, "files": files, "versions": versions}, indent=1))
        return 0
    print(f"org {paths.tag} runs org code {current}" + ("" if current in versions else " (not on any row yet)"))
    width = max(len(f["name"]) for f in files)
    for f in files:
        print(f"  {f['name']:<{width}}  {f['origin']:<7}  {f['sha']}  {f['path']}")
    if versions:
        print("versions recorded (oldest first): " + ", ".join(versions))
    return 0


def run_diff(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    a = orgcode.load_version(paths.orgcode, args.a)
    b = orgcode.load_version(paths.orgcode, args.b)
    text = orgcode.diff_versions(a, b)
    if not text:
        print(f"{a.hash} and {b.hash}: no difference", file=sys.stderr)
    sys.stdout.write(text)
    return 0
