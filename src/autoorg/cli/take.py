"""`autoorg take AGENT` / `autoorg release AGENT` — a person takes an agent's pane over; the daemon types nothing
into it until it is released. `autoorg pause AGENT` / `autoorg resume AGENT` — the same hold, with no one typing:
messages wait in its inbox."""

from __future__ import annotations

import argparse

from autoorg import comms
from autoorg.cli import add_org_options
from autoorg.cli.common import org_from_args


def register(sub: argparse._SubParsersAction) -> None:
    take = sub.add_parser("take", help="take an agent over: the daemon stops typing into its pane")
    take.add_argument("agent")
    add_org_options(take)
    take.set_defaults(func=run_take)
    release = sub.add_parser("release", help="hand an agent back to the org after `take`")
    release.add_argument("agent")
    add_org_options(release)
    release.set_defaults(func=run_release)
    pause = sub.add_parser("pause", help="pause an agent: nothing is typed into it until `autoorg resume`")
    pause.add_argument("agent")
    add_org_options(pause)
    pause.set_defaults(func=run_pause)
    resume = sub.add_parser("resume", help="resume an agent after `pause`")
    resume.add_argument("agent")
    add_org_options(resume)
    resume.set_defaults(func=run_release)


def run_take(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    agent = comms.known_agent(paths, args.agent)
    comms.hold(paths, agent, "human", f"taken over by {comms.human_or_agent()}")
    print(f"{agent} is yours: `autoorg attach {agent}` to type into its pane; messages wait in its inbox until "
          f"`autoorg release {agent}`")
    return 0


def run_release(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    agent = comms.known_agent(paths, args.agent)
    status = comms.unhold(paths, agent)
    print(f"{agent} is back with the org ({status['state']})")
    return 0


def run_pause(args: argparse.Namespace) -> int:
    paths = org_from_args(args)
    agent = comms.known_agent(paths, args.agent)
    comms.hold(paths, agent, "paused", f"paused by {comms.human_or_agent()}")
    print(f"{agent} is paused: messages wait in its inbox until `autoorg resume {agent}`")
    return 0
