"""Command line: ``python -m testhosts {create,is-up,destroy,lose,rebuild,revive,status,ssh,stress}``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from testhosts import drill
from testhosts import env as envmod
from testhosts import spec as specmod
from testhosts.system import HarnessError, log, require_host_support, require_root

_state = drill.state_dir
_environment = drill.environment


def _load_spec(args) -> specmod.Spec:
    if args.inventory:
        return specmod.from_inventory(Path(args.inventory), args.env)
    text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text()
    spec = specmod.from_json(text)
    if spec.env != args.env:
        raise specmod.SpecError(f"spec is for environment {spec.env!r}, not {args.env!r}")
    return spec


def _instance_config(e: envmod.Environment, spec: specmod.Spec) -> list[dict]:
    return [
        {"instance": h.name, "address": h.login_address, "user": specmod.LOGIN_USER, "port": 22,
         "identity_file": str(e.key)}
        for h in spec.hosts
    ]


def cmd_create(args) -> int:
    spec = _load_spec(args)
    require_root()
    require_host_support()
    e = _environment(spec.env)
    failed = e.create(spec)
    if args.instance_config:
        Path(args.instance_config).write_text(yaml.safe_dump(_instance_config(e, spec), sort_keys=False))
    _failed_units(failed, args)
    return 0


def _failed_units(failed: list[str], args) -> None:
    """Units that failed at boot: an error, or a warning with --allow-failed-units."""
    if failed:
        msg = f"units failed at boot: {', '.join(failed)}"
        if not args.allow_failed_units:
            raise HarnessError(msg)
        log("warning: " + msg)


def cmd_destroy(args) -> int:
    require_root()
    _environment(args.env).destroy()
    return 0


def cmd_lose(args) -> int:
    drill.lose_host(args.env, args.host)
    return 0


def cmd_rebuild(args) -> int:
    _failed_units(drill.rebuild_host(args.env, args.host), args)
    return 0


def cmd_revive(args) -> int:
    _failed_units(drill.revive_host(args.env, args.host), args)
    return 0


def cmd_status(args) -> int:
    envs_dir = _state() / "envs"
    names = [args.env] if args.env else sorted(p.name for p in envs_dir.glob("*"))
    out = {}
    for name in names:
        e = _environment(name)
        rec = e.recorded_spec()
        out[name] = {
            "bridge": rec.bridge if rec else None,
            "subnet": rec.subnet if rec else None,
            "running": e.running_hosts(),
            "lost": e.lost_hosts(),
            "hosts": {h.name: h.address for h in rec.hosts} if rec else {},
        }
    print(json.dumps(out, indent=2))
    if args.env:
        rec = _environment(args.env).recorded_spec()
        return 0 if rec and _environment(args.env).is_up(rec) else 3
    return 0


def cmd_is_up(args) -> int:
    spec = _load_spec(args)
    return 0 if _environment(spec.env).is_up(spec) else 3


def cmd_ssh(args) -> int:
    e = _environment(args.env)
    rec = e.recorded_spec()
    host = next((h for h in (rec.hosts if rec else ()) if h.name == args.host), None)
    if not host:
        raise HarnessError(f"no host {args.host!r} in environment {args.env!r}")
    os.execvp("ssh", ["ssh", "-i", str(e.key), *envmod.SSH_OPTS, f"root@{host.address}", *args.command])
    return 0


def cmd_stress(args) -> int:
    """Boot N hosts, record failed units, destroy; ROUNDS times.  Not part of `make test`."""
    require_root()
    require_host_support()
    hosts = [{"name": f"s{i}", "address": f"10.231.90.{10 + i}", "distro": args.distro} for i in range(1, args.hosts + 1)]
    spec = specmod.build("stress", hosts)
    e = _environment("stress")
    failures: list[str] = []
    t0 = time.monotonic()
    for r in range(1, args.rounds + 1):
        t = time.monotonic()
        try:
            failed = e.create(spec)
        except HarnessError as exc:
            failed = [f"boot error: {exc}"]
        failures += [f"round {r}: {f}" for f in failed]
        e.destroy(quiet=True)
        print(f"round {r:2d}/{args.rounds}: {len(failed)} failed units, {time.monotonic() - t:5.1f}s", flush=True)
    print(f"boot stress: {args.rounds} rounds x {args.hosts} hosts ({args.distro}), "
          f"{len(failures)} failures, {time.monotonic() - t0:.0f}s")
    for f in failures:
        print("  " + f)
    return 1 if failures else 0


def cmd_supervise(args) -> int:
    cgroups = [Path(p) for p in args.cgroups.split(",") if p]
    return envmod.supervise(Path(args.host_dir), cgroups, args.nspawn)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="testhosts", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def spec_args(sp):
        sp.add_argument("--env", required=True, help="environment name (names the bridge th-<env>)")
        src = sp.add_mutually_exclusive_group(required=True)
        src.add_argument("--inventory", help="inventory directory whose hosts.yml lists the hosts")
        src.add_argument("--spec", help="JSON spec file, or - for standard input")

    c = sub.add_parser("create", help="boot the hosts of an environment (cleaning up leftovers first)")
    spec_args(c)
    c.add_argument("--instance-config", help="write Molecule's instance config (YAML) here")
    c.add_argument("--allow-failed-units", action="store_true", help="warn instead of failing on units failed at boot")
    c.set_defaults(func=cmd_create)

    u = sub.add_parser("is-up", help="exit 0 when every host of the spec runs and answers SSH")
    spec_args(u)
    u.set_defaults(func=cmd_is_up)

    d = sub.add_parser("destroy", help="stop and remove every host, the bridge and the cgroups of an environment")
    d.add_argument("--env", required=True)
    d.set_defaults(func=cmd_destroy)

    lo = sub.add_parser("lose", help="kill one host at once (SIGKILL, no clean shutdown); its disk stays until rebuild")
    lo.add_argument("--env", required=True)
    lo.add_argument("--host", required=True)
    lo.set_defaults(func=cmd_lose)

    rb = sub.add_parser("rebuild", help="bring one host back brand-new (fresh disk, same name and addresses; "
                        "lost first if it runs)")
    rb.add_argument("--env", required=True)
    rb.add_argument("--host", required=True)
    rb.add_argument("--allow-failed-units", action="store_true", help="warn instead of failing on units failed at boot")
    rb.set_defaults(func=cmd_rebuild)

    rv = sub.add_parser("revive", help="power a lost host on again with the disk the kill left it")
    rv.add_argument("--env", required=True)
    rv.add_argument("--host", required=True)
    rv.add_argument("--allow-failed-units", action="store_true", help="warn instead of failing on units failed at boot")
    rv.set_defaults(func=cmd_revive)

    s = sub.add_parser("status", help="what runs, as JSON")
    s.add_argument("--env")
    s.set_defaults(func=cmd_status)

    h = sub.add_parser("ssh", help="open a shell (or run a command) on a host")
    h.add_argument("--env", required=True)
    h.add_argument("host")
    h.add_argument("command", nargs=argparse.REMAINDER)
    h.set_defaults(func=cmd_ssh)

    st = sub.add_parser("stress", help="boot N hosts ROUNDS times and report every failed unit")
    st.add_argument("--hosts", type=int, default=3)
    st.add_argument("--rounds", type=int, default=20)
    st.add_argument("--distro", default="trixie", choices=sorted(specmod.DISTROS))
    st.set_defaults(func=cmd_stress)

    sv = sub.add_parser("_supervise", help=argparse.SUPPRESS)
    sv.add_argument("host_dir")
    sv.add_argument("cgroups")
    sv.add_argument("nspawn", nargs=argparse.REMAINDER)
    sv.set_defaults(func=cmd_supervise)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "nspawn", None) and args.nspawn[:1] == ["--"]:
        args.nspawn = args.nspawn[1:]
    try:
        return args.func(args)
    except (HarnessError, specmod.SpecError) as exc:
        print(f"testhosts: error: {exc}", file=sys.stderr)
        return 2
