#!/usr/bin/env python3
"""The scenario's inventory: a committed example (inventories/<example>) as an operator fills it in.

Run by the create step (create.yml). Writes ``--dest`` (under .state/, never committed):

  hosts.yml                   the example's, with only the host addresses and the login substituted:
                              each host's ansible_host becomes the test host's SSH address and
                              stack_private_address its service address; all.vars.ansible_user
                              the harness's login user, with the harness's key next to it
  group_vars/all/<file>       every file of the example's group_vars/all, byte for byte
  group_vars/all/vault.yml    every key of vault.yml.example with a random value, encrypted with
                              ansible-vault under a generated password (.vault-password, 0600;
                              the one molecule/shared/vault-password made, when it did)
  group_vars/all/zz-testhosts.yml   the scenario's overlay, byte for byte: what the example cannot
                              carry for test hosts; refused when it sets anything the example sets
  tls/                        for nginx_tls_mode: files, a throwaway CA (tls/ca.crt) and the site's
                              certificate and key, where the example expects the operator's own

The example's hosts and the scenario's platforms must be the same hosts in the same groups.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

KEY_LENGTHS = {"vault_django_secret_key": 64}  # 86 characters; the others 48 bytes -> 64


class Refused(Exception):
    pass


def walk(group: dict, name: str, out: dict[str, dict], groups: dict[str, set]) -> None:
    """Host entries (the dicts to edit in place) and the groups of each host."""
    for host, hvars in ((group or {}).get("hosts") or {}).items():
        groups.setdefault(host, set()).add(name)
        if hvars:
            out[host] = hvars
    for child, sub in ((group or {}).get("children") or {}).items():
        walk(sub, child, out, groups)


def hosts_yml(example: Path, platforms: list[dict], user: str, key: str) -> tuple[dict, set[str]]:
    data = yaml.safe_load((example / "hosts.yml").read_text())
    entries: dict[str, dict] = {}
    groups: dict[str, set] = {}
    walk(data["all"], "all", entries, groups)
    want = {p["name"]: set(p.get("groups", [])) for p in platforms}
    have = {h: g - {"all"} for h, g in groups.items()}
    if have != want:
        raise Refused(f"{example}/hosts.yml has hosts {have}, the scenario's platforms {want}: keep them the same")
    for p in platforms:
        hv = entries.setdefault(p["name"], {})
        if not hv:  # a host listed with no vars at all: give it its first listing's dict
            raise Refused(f"{example}/hosts.yml: host {p['name']} has no ansible_host")
        hv["ansible_host"] = p.get("ssh_address") or p["address"]
        if p.get("ssh_address") or "stack_private_address" in hv:
            hv["stack_private_address"] = p["address"]
    all_vars = data["all"].setdefault("vars", {}) or {}
    data["all"]["vars"] = all_vars
    all_vars["ansible_user"] = user
    all_vars["ansible_ssh_private_key_file"] = key
    example_keys = set(all_vars) - {"ansible_user", "ansible_ssh_private_key_file"}
    for hv in entries.values():
        example_keys |= set(hv)
    return data, example_keys


def vault(example_vault: Path, dest: Path, password_file: Path, password: str | None) -> None:
    keys = [k for k in (yaml.safe_load(example_vault.read_text()) or {}) if k.startswith("vault_")]
    values = {k: secrets.token_urlsafe(KEY_LENGTHS.get(k, 48)) for k in keys}
    password_file.write_text((password or secrets.token_urlsafe(32)) + "\n")
    password_file.chmod(0o600)
    out = dest / "vault.yml"
    out.write_text("---\n" + yaml.safe_dump(values, sort_keys=False))
    out.chmod(0o600)
    ansible_vault = Path(sys.executable).parent / "ansible-vault"
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_VAULT_PASSWORD_FILE"}
    subprocess.run([str(ansible_vault), "encrypt", "--vault-password-file", str(password_file), str(out)],
                   check=True, capture_output=True, text=True, env=env)


def tls_files(dest: Path, domain: str) -> None:
    """A throwaway CA and the site's certificate (what an operator brings for nginx_tls_mode: files)."""
    tls = dest / "tls"
    tls.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tls)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
            "-subj", "/CN=scenario throwaway CA", "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", f"/CN={domain}", "-keyout", "privkey.pem", "-out", "site.csr")
    (tls / "site.ext").write_text(f"subjectAltName=DNS:{domain}\nextendedKeyUsage=serverAuth\n"
                                  "keyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n")
    openssl("x509", "-req", "-in", "site.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "30", "-extfile", "site.ext", "-out", "site.crt")
    (tls / "fullchain.pem").write_text((tls / "site.crt").read_text() + (tls / "ca.crt").read_text())
    for f in ("site.csr", "site.ext", "site.crt", "ca.srl"):
        (tls / f).unlink(missing_ok=True)
    for f in ("privkey.pem", "ca.key"):
        (tls / f).chmod(0o600)


def materialise(example: Path, overlay: Path, platforms: list[dict], dest: Path, *, user: str, key: str) -> None:
    # a password molecule/shared/vault-password already made (and gave this run's Ansible) is kept
    old = dest / ".vault-password"
    password = old.read_text().strip() if old.is_file() else None
    shutil.rmtree(dest, ignore_errors=True)
    gv = dest / "group_vars" / "all"
    gv.mkdir(parents=True)
    dest.chmod(0o700)
    hosts, example_keys = hosts_yml(example, platforms, user, key)
    example_vars: dict = {}
    for f in sorted((example / "group_vars" / "all").iterdir()):
        if f.name.endswith(".example"):
            continue
        shutil.copyfile(f, gv / f.name)
        example_vars.update(yaml.safe_load(f.read_text()) or {})
    overlay_vars = yaml.safe_load(overlay.read_text()) or {}
    clash = sorted(set(overlay_vars) & (set(example_vars) | example_keys | {"ansible_user"}))
    if clash:
        raise Refused(f"{overlay} sets {', '.join(clash)}, which the example sets: the overlay only adds")
    header = ("# Made by molecule/shared/materialise.py from "
              f"{example.name}/hosts.yml: only the addresses, the login user and its key differ\n")
    (dest / "hosts.yml").write_text(header + yaml.safe_dump(hosts, sort_keys=False))
    shutil.copyfile(overlay, gv / "zz-testhosts.yml")
    vault(example / "group_vars" / "all" / "vault.yml.example", gv, dest / ".vault-password", password)
    if example_vars.get("nginx_tls_mode") == "files":
        tls_files(dest, str(example_vars["site_domain"]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--example", required=True, type=Path, help="inventories/<example>")
    p.add_argument("--overlay", required=True, type=Path, help="the scenario's test-host overlay")
    p.add_argument("--dest", required=True, type=Path)
    p.add_argument("--user", required=True, help="the login user of the test hosts")
    p.add_argument("--key", required=True, help="the control node's SSH key for the test hosts")
    p.add_argument("--platforms", required=True, help="Molecule's platforms, as JSON")
    a = p.parse_args()
    try:
        materialise(a.example.resolve(), a.overlay.resolve(), json.loads(a.platforms), a.dest, user=a.user, key=a.key)
    except Refused as exc:
        print(f"materialise: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
