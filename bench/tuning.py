"""`make bench-tuning ENV=local`: each tuning choice of the stack against its alternatives.

For each choice: apply a variant with a narrow run of ansible/bench_tuning.yml (one tag, the
variant's variables as extra vars), wait for the site, warm up, measure the endpoint the choice
affects (wrk peak req/s and p99, PSS per Gunicorn worker, response bytes), and go on to the next
variant; the default and the variants alternate, round after round, and the medians are
compared. The production defaults are put back at the end, also when a run fails or is
interrupted. Writes <out>/tuning.json and tuning.md. Stdlib only (and bench/run.py).

Load goes only to the site name, which must resolve to 127.0.0.1 or a 10.231.x test host."""

import argparse
import http.client
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

REPO = bench.REPO
BIN = REPO / ".state" / "venv" / "bin"
GZIP = {"Accept-Encoding": "gzip"}

# name, tag of ansible/bench_tuning.yml, what is measured, endpoint (bench.ENDPOINTS name),
# extra request headers, variants: (label, extra vars); the first variant is the default.
CHOICES = [
    {
        "name": "Gunicorn workers",
        "tag": "gunicorn",
        "measure": "wrk",
        "endpoint": "order detail",
        "variants": [
            ("sync x default (the formula: 4 here)", {}),
            ("sync x 2", {"gunicorn_workers": 2}),
            ("sync x 5 (2n+1)", {"gunicorn_workers": 5}),
            ("sync x 8", {"gunicorn_workers": 8}),
            ("gthread x default x 4 threads", {"gunicorn_worker_class": "gthread", "gunicorn_threads": 4}),
        ],
    },
    {
        "name": "preload_app",
        "tag": "gunicorn",
        "measure": "pss",
        "endpoint": "order detail",
        "variants": [("on", {}), ("off", {"gunicorn_preload": False})],
    },
    {
        "name": "Database connections",
        "tag": "app",
        "measure": "wrk",
        "endpoint": "order detail",
        # every variant is a release of its own: keep them all, so switching back is quick; with
        # the detail's response cache off, or a warm detail would make no query to measure
        "common": {"django_app_keep_releases": 5, "django_app_order_detail_cache_seconds": 0},
        "variants": [
            ("persistent, through PgBouncer", {}),
            ("per request, through PgBouncer", {"django_app_db_connections": "per-request"}),
            ("psycopg pool, straight to PostgreSQL", {"django_app_db_connections": "pool"}),
        ],
    },
    {
        "name": "Order detail cache",
        "tag": "app",
        "measure": "wrk",
        "endpoint": "order detail",
        "common": {"django_app_keep_releases": 5},
        "variants": [
            ("cached per order in Redis (300 s)", {}),
            ("off (the seed's two queries every time)", {"django_app_order_detail_cache_seconds": 0}),
        ],
    },
    {
        "name": "nginx upstream keepalive",
        "tag": "nginx",
        "measure": "wrk",
        "endpoint": "ping (ceiling)",
        "variants": [("16 idle connections", {}), ("off", {"nginx_upstream_keepalive": 0})],
    },
    {
        "name": "nginx proxy buffering",
        "tag": "nginx",
        "measure": "wrk",
        "endpoint": "order list",
        "variants": [("on", {}), ("off", {"nginx_proxy_buffering": False})],
    },
    {
        "name": "gzip_static",
        "tag": "nginx",
        "measure": "wrk",
        "endpoint": "static file",
        "headers": GZIP,
        "variants": [("on (gzip -9 at release time)", {}), ("off (gzip level 5 per response)", {"nginx_gzip_static": False})],
    },
]
TAGS = ["postgresql", "gunicorn", "app", "nginx"]


def log(msg: str) -> None:
    print(f"bench-tuning: {msg}", file=sys.stderr, flush=True)


class Stack:
    """Applies variants through ansible-playbook and reads facts from the app host."""

    def __init__(self, env: str, logfile: Path):
        inventory = REPO / "inventories" / env
        vault = [inventory / "vault-password.txt", inventory / ".vault-password"]
        vault_args = next((["--vault-password-file", str(v)] for v in vault if v.is_file()), [])
        self.base = ["-i", str(inventory), *vault_args]
        self.logfile = logfile
        self.applied: dict[str, str] = {}
        # as make runs it: the repo's ansible.cfg (roles path, strategy), also when run by hand
        os.environ.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible" / "ansible.cfg"))

    def _run(self, cmd: list[str], timeout: int) -> str:
        with self.logfile.open("a") as out:
            out.write(f"\n### {datetime.now(UTC):%H:%M:%S} {shlex.join(cmd)}\n")
            out.flush()
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=out, text=True, timeout=timeout, check=False)
            out.write(done.stdout)
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd[:3])} ... failed ({done.returncode}); see {self.logfile}")
        return done.stdout

    def apply(self, tags: list[str], extra: dict) -> float:
        """Run the tagged part of ansible/bench_tuning.yml with `extra`; skip it when that is
        what the tag already has. Returns the seconds it took."""
        key = json.dumps(extra, sort_keys=True)
        todo = [t for t in tags if self.applied.get(t) != key]
        if not todo:
            return 0.0
        start = time.monotonic()
        cmd = [str(BIN / "ansible-playbook"), *self.base, str(REPO / "ansible" / "bench_tuning.yml")]
        cmd += ["--tags", ",".join(todo), "-e", key]
        for t in todo:
            self.applied.pop(t, None)  # unknown until the run succeeds
        self._run(cmd, timeout=900)
        for t in todo:
            self.applied[t] = key
        return time.monotonic() - start

    def shell(self, group: str, script: str) -> str:
        """`script` as root on the first host of `group`; its stdout."""
        cmd = [str(BIN / "ansible"), *self.base, f"{group}[0]", "-b", "-m", "ansible.builtin.shell", "-a", script]
        cmd += ["-o"]
        out = self._run(cmd, timeout=120)
        # -o: "host | CHANGED | rc=0 | (stdout) line1\nline2"
        return out.split("(stdout)", 1)[1].replace("\\n", "\n") if "(stdout)" in out else ""


PSS = (
    "main=$(systemctl show -p MainPID --value orders-gunicorn.service); "
    "for p in $main $(cat /proc/$main/task/*/children); do "
    "echo $p $(awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup); done"
)


def measure_pss(stack: Stack) -> dict:
    rows = [line.split() for line in stack.shell("app", PSS).splitlines() if line.strip()]
    kb = [int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit()]
    if len(kb) < 2:
        raise RuntimeError(f"could not read the PSS of Gunicorn's processes: {rows}")
    workers = kb[1:]
    return {
        "workers": len(workers),
        "pss_master_mb": round(kb[0] / 1024, 1),
        "pss_per_worker_mb": round(statistics.mean(workers) / 1024, 1),
        "pss_total_mb": round(sum(kb) / 1024, 1),
    }


def wait_ready(site: bench.Site, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if site.get("/api/ping/")[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{site.base}/api/ping/ did not answer 200 within {timeout:.0f} s")
        time.sleep(1)


def body_bytes(site: bench.Site, path: str, headers: dict) -> int:
    conn = http.client.HTTPSConnection(site.host, site.port, context=site.ctx, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return len(resp.read())  # http.client does not decompress: the bytes on the wire
    finally:
        conn.close()


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def summarise(choice: dict, runs: list[dict]) -> list[dict]:
    rows = []
    default = None
    for label, _ in choice["variants"]:
        mine = [r for r in runs if r["variant"] == label]
        if not mine:
            continue
        row = {"variant": label, "runs": len(mine), "loadavg": [r["loadavg"] for r in mine]}
        if choice["measure"] == "pss":
            for k in ("pss_per_worker_mb", "pss_total_mb", "pss_master_mb", "workers"):
                row[k] = statistics.median(r[k] for r in mine)
        else:
            row["rps"] = round(statistics.median(r["rps"] for r in mine), 1)
            row["p99_ms"] = round(statistics.median(r["p99_ms"] for r in mine), 2)
            row["bytes_per_response"] = statistics.median(r["bytes_per_response"] for r in mine)
            row["body_bytes"] = mine[0].get("body_bytes")
            row["non2xx"] = sum(r["non2xx"] + r["socket_errors"] for r in mine)
        if default is None:
            default = row
        key = "pss_total_mb" if choice["measure"] == "pss" else "rps"
        row["vs_default"] = round(row[key] / default[key], 2) if default[key] else None
        rows.append(row)
    return rows


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [
        f"# Tuning benchmark: ENV={m['env']}, {m['date']}",
        "",
        f"Commit `{m['commit']}`{' (uncommitted changes)' if m['dirty'] else ''}. Control node: "
        f"{m['cpus']} cores, load average {m['loadavg_before']} before, {m['loadavg_after']} after; "
        f"CPUs pinned (test hosts:wrk) {m.get('pin') or 'no'}; "
        f"{m['rounds']} rounds (the default and each variant alternate), wrk {m['threads']} threads x "
        f"{m['connections']} connections x {m['duration_s']} s per run, medians. Took {m['minutes']} min.",
        "",
    ]
    for c in result["choices"]:
        lines += [
            f"## {c['name']}",
            "",
            f"Endpoint: {c['endpoint']}"
            + (" (Accept-Encoding: gzip)" if c.get("headers") else "")
            + f"; ansible tag `{c['tag']}`"
            + (f"; every variant with {json.dumps(c['common'])}" if c.get("common") else "")
            + ".",
            "",
        ]
        if c.get("error"):
            lines += [f"**Not measured**: {c['error']}", ""]
        if c["measure"] == "pss":
            lines += [
                "| Variant | Workers | PSS per worker MB | Master MB | Total PSS MB | x default | Runs | Load avg |",
                "|---|---:|---:|---:|---:|---:|---:|---|",
            ]
            for r in c["summary"]:
                lines.append(
                    f"| {r['variant']} | {r['workers']} | {r['pss_per_worker_mb']} | {r['pss_master_mb']} | "
                    f"{r['pss_total_mb']} | {r['vs_default']} | {r['runs']} | {' '.join(map(str, r['loadavg']))} |"
                )
        else:
            lines += [
                "| Variant | Peak req/s | x default | p99 ms | Bytes per response | Non-2xx | Runs | Load avg |",
                "|---|---:|---:|---:|---:|---:|---:|---|",
            ]
            for r in c["summary"]:
                size = f"{r['bytes_per_response']}" + (f" (body {r['body_bytes']})" if r.get("body_bytes") else "")
                lines.append(
                    f"| {r['variant']} | {r['rps']:.0f} | {r['vs_default']} | {r['p99_ms']} | {size} | "
                    f"{r['non2xx']} | {r['runs']} | {' '.join(map(str, r['loadavg']))} |"
                )
        lines.append("")
    pg = result.get("postgresql")
    if pg:
        lines += ["## PostgreSQL memory", "", pg["note"], ""]
    lines += [
        "The first variant of each choice is the production default; `make deploy` (or the end of "
        "this run) puts it back. Bytes per response include the headers (wrk); body is one GET.",
        "",
    ]
    return "\n".join(lines)


def postgresql_note(stack: Stack) -> dict:
    out = stack.shell(
        "db",
        "runuser -u postgres -- psql -Atc \"select pg_database_size('orders') / 1048576, "
        "current_setting('shared_buffers'), current_setting('effective_cache_size'), current_setting('work_mem')\" orders",
    ).strip()
    size, shared, cache, work = out.split("|")
    return {
        "database_mb": int(size),
        "shared_buffers": shared,
        "effective_cache_size": cache,
        "work_mem": work,
        "note": (
            f"Not measured, no claim: the demo database is {size} MB, smaller than PostgreSQL's default "
            f"shared_buffers (128MB), so every query is served from shared buffers with either setting; "
            f"and on this environment (stack_memory_mb 2048, a shared host) the tuned values "
            f"(shared_buffers {shared}, effective_cache_size {cache}, work_mem {work}) are PostgreSQL's "
            f"defaults or close to them. `postgresql_memory_tuning: false` switches them off."
        ),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="local")
    ap.add_argument("--host", default="orders.local.test")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of unrecorded load after each switch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--only", help="only choices whose name contains this (case-insensitive)")
    ap.add_argument("--pin", metavar="HOST:LOAD", help="CPUs of the test hosts : CPUs of wrk, e.g. 1:0 (bench/run.py --pin)")
    args = ap.parse_args()

    state = REPO / ".state" / args.env
    cafile, tokens_file = state / "ca.crt", state / "bench" / "tokens.txt"
    for f in (cafile, tokens_file):
        if not f.is_file():
            sys.exit(f"bench-tuning: {f} missing: run `make bench-tuning ENV={args.env}` (it runs ansible/bench.yml)")
    bench.check_target(args.host)
    tokens = [line.split()[1] for line in tokens_file.read_text().splitlines() if line.strip()]
    site = bench.Site(args.host, 443, cafile)
    orders, static, release = bench.discover(site, tokens)
    paths = {name: bench.targets_for(path, auth, tokens, orders, static) for name, path, auth in bench.ENDPOINTS}
    stack = Stack(args.env, state / "bench" / "tuning-ansible.log")
    stack.logfile.write_text("")
    started = time.monotonic()
    meta = {
        **bench.run_meta(args.env),
        "release_before": release,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "threads": args.threads,
        "connections": args.connections,
    }
    choices = [c for c in CHOICES if not args.only or args.only.lower() in c["name"].lower()]
    result = {"meta": meta, "choices": []}
    failed = False
    meta["pin"] = args.pin
    unpin = bench.pin_cpus(args.env, args.pin) if args.pin else None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-tuning-") as tmp:
            for choice in choices:
                entry = {k: choice[k] for k in ("name", "tag", "measure", "endpoint")} | {
                    "headers": choice.get("headers"),
                    "common": choice.get("common"),
                    "runs": [],
                }
                result["choices"].append(entry)
                pairs = paths[choice["endpoint"]]
                try:
                    for rnd in range(1, args.rounds + 1):
                        for label, extra in choice["variants"]:
                            took = stack.apply([choice["tag"]], choice.get("common", {}) | extra)
                            wait_ready(site)
                            bench.preflight(site, pairs)
                            warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
                            bench.run_wrk(site, pairs, warm, Path(tmp), choice.get("headers"))
                            run = {"variant": label, "round": rnd, "apply_s": round(took, 1), "loadavg": loadavg()}
                            if choice["measure"] == "pss":
                                run |= measure_pss(stack)
                            else:
                                run |= bench.run_wrk(site, pairs, args, Path(tmp), choice.get("headers"))
                                if choice.get("headers"):  # what the header changes: the bytes on the wire
                                    token, path = pairs[0]
                                    auth = {"Authorization": f"Bearer {token}"} if token else {}
                                    run["body_bytes"] = body_bytes(site, path, choice["headers"] | auth)
                            entry["runs"].append(run)
                            log(
                                f"{choice['name']} / {label} (round {rnd}): "
                                + ", ".join(f"{k}={v}" for k, v in run.items() if k not in ("variant", "round"))
                            )
                    # this choice's default back before the next choice is measured
                    stack.apply([choice["tag"]], {})
                except (RuntimeError, subprocess.SubprocessError, OSError, StopIteration, SystemExit) as exc:
                    entry["error"] = str(exc) or type(exc).__name__
                    log(f"{choice['name']}: {entry['error']}")
                    failed = True
                entry["summary"] = summarise(choice, entry["runs"])
            if not args.only or "postgres" in args.only.lower():
                try:
                    result["postgresql"] = postgresql_note(stack)
                except (RuntimeError, ValueError) as exc:
                    result["postgresql"] = {"note": f"could not read the database size: {exc}"}
    finally:
        # the production defaults, whatever happened above (every tag, no extra vars)
        log("putting the production defaults back ...")
        stack.applied.clear()
        try:
            stack.apply(TAGS, {})
            wait_ready(site)
        finally:
            if unpin:
                unpin()
    meta["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["minutes"] = round((time.monotonic() - started) / 60, 1)
    meta["release_after"] = bench.discover(site, tokens[:1])[2]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tuning.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "tuning.md").write_text(markdown(result))
    print(markdown(result))
    bad = [c["name"] for c in result["choices"] if any(r["non2xx"] for r in c["summary"] if "non2xx" in r)]
    if bad:
        log(f"non-2xx responses or socket errors in: {', '.join(bad)}")
    return 1 if failed or bad else 0


if __name__ == "__main__":
    sys.exit(main())
