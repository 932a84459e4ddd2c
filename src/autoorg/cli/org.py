"""`autoorg org show|diff|reload` — which org code an org runs (each file, where it came from, its hash, the
history of versions its agents were given), what changed between two versions, and sending edits to the agents."""

from __future__ import annotations

import argparse
import json
import sys

from autoorg import experiments, orgcode
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args
from autoorg.daemon.reload import reload_org_code


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("org", help="the org's code: `org show` (files, origins, hash), `org diff A B`, `org reload`")
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
    reload = verbs.add_parser("reload", help="send edited prompts and skills to the running agents now (the daemon "
                                             "also does it within seconds)")
    add_org_options(reload)
    reload.set_defaults(func=run_reload)


def run_show(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    code = experiments.load_context(paths).org_code()
    current = code.hash
    versions = orgcode.recorded(paths.orgcode)
    files = [{"name": f.name, "origin": f.origin, "sha": f.sha, "path": str(f.path)}
             for f in sorted(code.files, key=lambda f: f.name)]
    if args.json:
        print(json.dumps({"tag": paths.tag, "hash": current, "files": files, "versions": versions,
                          "history": orgcode.history(paths.orgcode)}, indent=1))
        return 0
    print(f"org {paths.tag} runs org code {current}" + ("" if current in versions else " (not on any row yet)"))
    width = max(len(f["name"]) for f in files)
    for f in files:
        print(f"  {f['name']:<{width}}  {f['origin']:<7}  {f['sha']}  {f['path']}")
    if versions:
        print("versions recorded (oldest first): " + ", ".join(versions))
    for i, item in enumerate(orgcode.history(paths.orgcode)):
        if i == 0:
            print("given to the agents (oldest first):")
        print(f"  {item['at'][:19]}Z  {item['hash']}  {item.get('why', '')}")
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


def run_reload(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    ctx = experiments.load_context(paths)
    changed = reload_org_code(paths, ctx.spec, log=lambda line: print(line, file=sys.stderr), why="org reload")
    if changed is None:
        print(f"org {paths.tag} already runs org code {orgcode.given(paths.orgcode)}: nothing to reload")
    else:
        print(f"org {paths.tag}: org code {changed[0]} -> {changed[1]}; each agent gets the diff at its "
              "next turn")
    return 0
