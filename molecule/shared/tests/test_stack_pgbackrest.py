"""pgBackRest: the archive and the backups of the db host, in an encrypted repository on the
`backup` host (multinode: cache1, over mutual TLS) or on the db host itself (all-in-one).

Each test runs once per scenario, on the host that holds the repository, and reaches the db
host and the site from there where it must.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from test_stack_backup import psql
from test_stack_web import _in_stock_product, _token

from conftest import address_of, groups_of, inventory_groups, other_host, tcp_connects
from drill import ca_file, files_holding, https_request

REPO_PATH = "/var/lib/pgbackrest/repo"


@pytest.fixture(scope="module")
def repo(host):
    """(repository host, its pgBackRest user, stanza, db host) on the host holding the repository."""
    groups = inventory_groups(host)
    backup, db = groups.get("backup", []), groups["db"]
    holder = backup[0] if backup else db[0]
    me = host.ansible.get_variables()["inventory_hostname"]
    if me != holder:
        pytest.skip(f"the repository is on {holder}")
    hv = host.ansible.get_variables()
    user = "postgres" if "db" in groups_of(host) else "pgbackrest"
    db_host = host if db[0] == me else other_host(db[0])
    return host, user, str(hv.get("stack_backup_stanza") or hv["stack_env"]), db_host


def pgbackrest(repo, *args: str, check: bool = True):
    host, user, stanza, _ = repo
    res = host.run(f"runuser -u {user} -- pgbackrest --stanza={stanza} " + " ".join(args))
    if check:
        assert res.rc == 0, f"pgbackrest {' '.join(args)}: rc={res.rc}\n{res.stdout}\n{res.stderr}"
    return res


def info(repo) -> dict:
    return json.loads(pgbackrest(repo, "--output=json", "info").stdout)[0]


def test_stanza_is_healthy_with_a_full_backup(repo):
    stanza = info(repo)
    assert stanza["status"]["code"] == 0, stanza["status"]
    assert any(b["type"] == "full" for b in stanza["backup"]), stanza["backup"]
    assert stanza["cipher"] == "aes-256-cbc"
    assert stanza["archive"] and stanza["archive"][0]["max"], stanza["archive"]


def test_check_and_verify_pass(repo):
    """`check` pushes a fresh WAL segment through archive_command and finds it in the repository;
    `verify` reads every backup and WAL file back (checksums, decryption with the passphrase)."""
    pgbackrest(repo, "--archive-timeout=60", "check")
    verified = pgbackrest(repo, "--log-level-console=info", "verify")
    out = verified.stdout + verified.stderr
    assert "verify command end: completed successfully" in out, out
    assert "invalid" not in out.lower() and "missing" not in out.lower(), out


def test_archive_keeps_up_while_orders_are_written(repo):
    """Orders through the site for a few seconds, with WAL segments switched under them as a busy
    database would fill them: afterwards the repository holds the segment of the last order
    within the archive timeout, and no push failed."""
    host, _, _, db_host = repo
    groups = inventory_groups(host)
    web, app = other_host(groups["web"][0]), other_host(groups["app"][0])
    hv = web.ansible.get_variables()
    address, domain, ca = address_of(web), str(hv["site_domain"]), ca_file(hv)
    token, product = _token(app, "demo0004"), _in_stock_product(app)
    failed_before = int(psql(db_host, "SELECT failed_count FROM pg_stat_archiver", db="postgres"))

    created: list[int] = []
    stop = time.monotonic() + 8

    def write():
        body = json.dumps({"items": [{"product_id": product, "quantity": 1}]}).encode()
        while time.monotonic() < stop:
            status, _, out = https_request(address, domain, ca, "POST", "/api/orders/", body=body, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            assert status == 201, out
            created.append(json.loads(out)["id"])

    writer = threading.Thread(target=write)
    writer.start()
    while writer.is_alive():
        psql(db_host, "SELECT pg_switch_wal()", db="postgres")
        time.sleep(2)
    writer.join()
    assert len(created) >= 5, f"only {len(created)} orders in 8 s"

    last = psql(db_host, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())", db="postgres")
    psql(db_host, "SELECT pg_switch_wal()", db="postgres")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        newest = info(repo)["archive"][0]["max"]
        if newest >= last:
            break
        time.sleep(2)
    assert newest >= last, f"the repository's newest segment {newest} is behind {last}"
    assert int(psql(db_host, "SELECT failed_count FROM pg_stat_archiver", db="postgres")) == failed_before
    # the orders are really there to archive
    assert psql(db_host, f"SELECT count(*) FROM orders_order WHERE id IN ({','.join(map(str, created))})",
                db="orders") == str(len(created))


def test_backup_timers_are_scheduled(repo):
    host = repo[0]
    timers = host.check_output("systemctl list-timers --all --no-legend")
    for kind in ("full", "diff"):
        timer = host.service(f"pgbackrest-backup-{kind}.timer")
        assert timer.is_enabled and timer.is_running
        assert f"pgbackrest-backup-{kind}.timer" in timers


def test_a_backup_runs_from_its_unit_and_a_failed_one_fails_the_unit(repo):
    """The timer's unit takes a backup (a differential here), confined as written; a backup that
    cannot work (an unknown stanza through an override) leaves the unit failed, where
    `systemctl --failed` and the journal show it."""
    host, _, stanza, _ = repo
    before = len(info(repo)["backup"])
    run = host.run("systemctl start pgbackrest-backup@diff.service")
    assert run.rc == 0, run.stderr + host.run("journalctl -u pgbackrest-backup@diff.service -n 30 --no-pager").stdout
    assert len(info(repo)["backup"]) >= before  # expiry may remove an older differential
    assert info(repo)["backup"][-1]["type"] == "diff"
    assert metric(host, "backup-diff") == (1, True)
    exposure = host.check_output("systemd-analyze security --no-pager pgbackrest-backup@diff.service | tail -1")
    assert float(exposure.rsplit(":", 1)[1].split()[0]) <= 2.0, exposure

    dropin = "/run/systemd/system/pgbackrest-backup@incr.service.d"
    host.run(f"mkdir -p {dropin} && printf '[Service]\\nExecStart=\\nExecStart=/usr/bin/pgbackrest "
             f"--stanza={stanza}-missing --type=incr backup\\n' > {dropin}/broken.conf && systemctl daemon-reload")
    try:
        failed = host.run("systemctl start pgbackrest-backup@incr.service")
        assert failed.rc != 0
        assert "pgbackrest-backup@incr.service" in host.check_output("systemctl --failed --no-legend --plain")
        assert metric(host, "backup-incr")[0] == 0
    finally:
        host.run(f"rm -rf {dropin}; systemctl daemon-reload; systemctl reset-failed pgbackrest-backup@incr.service")


def metric(host, job: str) -> tuple[int, bool]:
    """(last run's success, a success is recorded) of a job's node-exporter textfile."""
    text = host.file(f"/var/lib/prometheus/node-exporter/stack_pgbackrest_{job}.prom").content_string
    values = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    return int(values["stack_pgbackrest_last_run_success"]), values["stack_pgbackrest_last_success_timestamp_seconds"] > 0


def test_a_stalled_archive_fails_the_check_unit(repo):
    """The archive check passes on a working archive; while the repository refuses new WAL (its
    archive directory unwritable) the check unit fails, `systemctl --failed` lists it and its
    metric says 0; once the repository takes WAL again the segments PostgreSQL kept are pushed and
    the check passes."""
    host, _, stanza, _ = repo
    unit = "pgbackrest-check.service"
    assert host.service("pgbackrest-check.timer").is_enabled
    run = host.run(f"systemctl start {unit}")
    assert run.rc == 0, host.run(f"journalctl -u {unit} -n 30 --no-pager").stdout
    assert metric(host, "check") == (1, True)

    archive = host.check_output(f"find {REPO_PATH}/archive -mindepth 1 -maxdepth 1 -name {stanza}")
    dropin = f"/run/systemd/system/{unit}.d"
    host.check_output(f"mkdir -p {dropin} && printf '[Service]\\nEnvironment=PGBACKREST_ARCHIVE_TIMEOUT=15\\n' "
                      f"> {dropin}/short.conf && systemctl daemon-reload && chmod 000 {archive}")
    try:
        failed = host.run(f"systemctl start {unit}")
        assert failed.rc != 0
        assert unit in host.check_output("systemctl --failed --no-legend --plain")
        assert metric(host, "check") == (0, True)
    finally:
        host.run(f"chmod 0750 {archive}; rm -rf {dropin}; systemctl daemon-reload; systemctl reset-failed {unit}")
    deadline = time.monotonic() + 90
    while host.run(f"systemctl start {unit}").rc != 0 and time.monotonic() < deadline:
        time.sleep(5)
    assert metric(host, "check")[0] == 1, host.run(f"journalctl -u {unit} -n 30 --no-pager").stdout


def test_passphrase_is_only_on_the_repository_host(repo):
    """The repository's configuration holds the passphrase (root:<user> 0640); the db host, when
    the repository is elsewhere, and every other host hold it nowhere."""
    host, user, _, _ = repo
    conf = host.file("/etc/pgbackrest/pgbackrest.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", user, 0o640)
    secret = [line.split("=", 1)[1] for line in conf.content_string.splitlines()
              if line.startswith("repo1-cipher-pass=")]
    assert len(secret) == 1 and len(secret[0]) >= 20
    me = host.ansible.get_variables()["inventory_hostname"]
    assert files_holding(host, secret[0], ["/etc/pgbackrest"]) == ["/etc/pgbackrest/pgbackrest.conf"]
    for name in sorted(set(inventory_groups(host)["all"]) - {me}):
        other = other_host(name)
        assert files_holding(other, secret[0], ["/etc", "/srv", "/usr/local", "/root", "/var/lib/pgbackrest",
                                                "/var/spool/pgbackrest", "/var/lib/postgresql"]) == [], name


def test_tls_server_answers_its_peers_only(repo):
    """With the repository on its own host, each side's pgBackRest TLS server takes the other
    side's client certificate, and nobody else reaches the port."""
    host, _, _, db_host = repo
    if "db" in groups_of(host):
        pytest.skip("the repository is on the db host: no TLS server")
    for side in (host, db_host):
        assert side.service("pgbackrest-server.service").is_running
        port = int(side.ansible.get_variables().get("pgbackrest_tls_port", 8432))
        assert side.socket(f"tcp://{address_of(side)}:{port}").is_listening
        assert not tcp_connects(address_of(side), port), "the control node reached pgBackRest's TLS server"
        exposure = side.check_output("systemd-analyze security --no-pager pgbackrest-server.service | tail -1")
        assert float(exposure.rsplit(":", 1)[1].split()[0]) <= 2.0, exposure
    # the db host reads the repository with its certificate; the same request with a
    # certificate the environment's CA did not sign is refused
    _, _, stanza, _ = repo
    ok = db_host.run(f"runuser -u postgres -- pgbackrest --stanza={stanza} --output=json info")
    assert ok.rc == 0 and json.loads(ok.stdout)[0]["status"]["code"] == 0, ok.stdout + ok.stderr
    db_host.check_output(
        "d=$(mktemp -d /tmp/pgbr-probe.XXXX) && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
        f"-nodes -subj /CN={db_host.ansible.get_variables()['inventory_hostname']} -days 1 -keyout $d/k -out $d/c "
        "2>/dev/null && chown -R postgres $d && echo $d > /tmp/pgbr-probe.dir")
    probe_dir = db_host.check_output("cat /tmp/pgbr-probe.dir")
    try:
        foreign = db_host.run(f"runuser -u postgres -- pgbackrest --stanza={stanza} --output=json "
                              f"--repo1-host-cert-file={probe_dir}/c --repo1-host-key-file={probe_dir}/k info")
    finally:
        db_host.run(f"rm -rf {probe_dir} /tmp/pgbr-probe.dir")
    refused = foreign.rc != 0 or json.loads(foreign.stdout or "[{}]")[0].get("status", {}).get("code") != 0
    assert refused, foreign.stdout + foreign.stderr
