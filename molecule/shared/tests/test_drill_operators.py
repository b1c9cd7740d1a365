"""What an operator's first runs meet on real servers, drilled on the converged all-in-one host:
an example inventory that leaves stack_memory_mb unset passes the pre-flight (the memory fact
is used), and a site left enabled under a previous site_domain (its `upstream orders_app`
clashes with the current one's, so nginx refuses its configuration) is disabled by the deploy."""

from __future__ import annotations

import os
import subprocess

import yaml
from test_drill_bad_input import inventory_copy, molecule_inventory

from drill import REPO, deploy


def _without_stack_memory_mb(inv_dir):
    """The scenario's inventory as an example leaves it: stack_memory_mb commented out."""
    for f in (inv_dir / "group_vars").rglob("*"):
        if f.is_file() and "stack_memory_mb" in f.read_text():
            data = yaml.safe_load(f.read_text()) or {}
            if data.pop("stack_memory_mb", None) is not None:
                f.write_text(yaml.safe_dump(data))
    data = yaml.safe_load((inv_dir / molecule_inventory().name).read_text())
    assert "stack_memory_mb" not in str(data), "the probe needs stack_memory_mb gone everywhere"


def test_preflight_takes_the_memory_fact_when_stack_memory_mb_is_unset(all_in_one, tmp_path):
    inventory = inventory_copy(tmp_path, _without_stack_memory_mb)
    play = tmp_path / "preflight.yml"
    play.write_text(yaml.safe_dump([{"hosts": "all", "become": True, "tasks": [
        {"name": "The common role's pre-flight",
         "ansible.builtin.include_role": {"name": "common", "tasks_from": "preflight.yml"}},
        {"name": "Unset", "ansible.builtin.assert": {"that": ["stack_memory_mb is not defined"]}},
    ]}]))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    env.pop("ANSIBLE_FORCE_COLOR", None)
    run = subprocess.run(["ansible-playbook", "-i", inventory, str(play)], capture_output=True, text=True,
                         env=env, check=False, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "is undefined" not in out, out[-3000:]


def test_a_site_left_enabled_under_a_previous_domain_is_disabled(all_in_one):
    host, _, domain, _ = all_in_one
    old = "orders-previous.example.test"
    site = f"/etc/nginx/sites-available/{domain}.conf"
    stale = f"/etc/nginx/sites-available/{old}.conf"
    host.check_output(f"sed 's/{domain}/{old}/g' {site} > {stale} && ln -sfn {stale} /etc/nginx/sites-enabled/{old}.conf")
    try:
        clash = host.run("nginx -t")
        assert clash.rc != 0 and "orders_app" in clash.stderr, clash.stderr  # the probe really breaks nginx
        run = deploy(str(molecule_inventory()))
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        assert not host.file(f"/etc/nginx/sites-enabled/{old}.conf").exists
        assert host.file(f"/etc/nginx/sites-enabled/{domain}.conf").is_symlink
        assert host.run("nginx -t").rc == 0
        assert host.service("nginx").is_running
    finally:
        host.run(f"rm -f /etc/nginx/sites-enabled/{old}.conf {stale}")
        host.run("nginx -t && systemctl reload nginx")


def _pgbouncer(host, setting: str) -> tuple[str, str]:
    """(MainPID, the running value of `setting`) of PgBouncer."""
    pid = host.check_output("systemctl show -P MainPID pgbouncer.service")
    rows = host.check_output("runuser -u postgres -- psql -X -h /var/run/postgresql -p 6432 -U postgres"
                             " -d pgbouncer -Atc 'SHOW CONFIG'")
    value = next(line.split("|")[1] for line in rows.splitlines() if line.startswith(f"{setting}|"))
    return pid, value


def test_a_pgbouncer_setting_change_is_a_reload_not_a_restart(all_in_one):
    """Pools and timeouts change with a reload (client connections stay); only where PgBouncer
    listens needs a restart (its own included file)."""
    host = all_in_one[0]
    inventory = str(molecule_inventory())
    pid, before = _pgbouncer(host, "query_wait_timeout")
    try:
        run = deploy(inventory, "-e", f"pgbouncer_query_wait_timeout={int(before) + 7}")
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        assert _pgbouncer(host, "query_wait_timeout") == (pid, str(int(before) + 7)), "restarted, or not applied"
    finally:
        assert deploy(inventory).returncode == 0
    assert _pgbouncer(host, "query_wait_timeout") == (pid, before)
