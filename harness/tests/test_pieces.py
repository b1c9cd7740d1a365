"""Harness pieces that need no containers: mirrors, image recipes, /etc/hosts, CLI errors."""

from pathlib import Path

import pytest

from testhosts import cli, env, image, proxy
from testhosts.system import HarnessError


def test_mirrors_come_from_deb822_sources(tmp_path):
    f = tmp_path / "debian.sources"
    f.write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security/\nSuites: bookworm-security\n"
    )
    assert proxy.machine_mirrors([f]) == ("http://mirror.example/debian", "http://mirror.example/debian-security")


def test_mirrors_come_from_one_line_sources(tmp_path):
    f = tmp_path / "sources.list"
    f.write_text("# comment\ndeb [arch=amd64] http://m.example/debian bookworm main\ndeb-src http://x/debian b main\n")
    assert proxy.machine_mirrors([f]) == ("http://m.example/debian", "http://m.example/debian-security")


def test_no_mirror_is_a_clear_error(tmp_path):
    f = tmp_path / "sources.list"
    f.write_text("deb http://elsewhere.example/ubuntu jammy main\n")
    with pytest.raises(HarnessError, match="no Debian mirror"):
        proxy.machine_mirrors([f])


def test_recipe_hash_changes_with_the_recipe():
    m = ("http://a/debian", "http://a/debian-security")
    assert image.recipe_hash("trixie", m) == image.recipe_hash("trixie", m)
    assert image.recipe_hash("trixie", m) != image.recipe_hash("bookworm", m)
    assert image.recipe_hash("trixie", m) != image.recipe_hash("trixie", ("http://b/debian", m[1]))


def test_sources_name_every_suite():
    text = image.sources_text("trixie", ("http://a/debian", "http://a/debian-security"))
    assert "Suites: trixie trixie-updates" in text
    assert "Suites: trixie-security" in text


def test_etc_hosts_block_is_added_replaced_and_removed(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    env.etc_hosts_block("local", ["10.0.0.2\tsite.test"], hosts)
    env.etc_hosts_block("other", ["10.0.1.2\tother.test"], hosts)
    env.etc_hosts_block("local", ["10.0.0.3\tsite.test"], hosts)
    text = hosts.read_text()
    assert text.count("site.test") == 1 and "10.0.0.3\tsite.test" in text and "other.test" in text
    env.etc_hosts_block("local", [], hosts)
    env.etc_hosts_block("other", [], hosts)
    assert hosts.read_text() == "127.0.0.1 localhost\n"


def test_cli_refuses_a_bad_spec_before_touching_anything(tmp_path, capsys):
    bad = tmp_path / "spec.json"
    bad.write_text('{"env": "e", "hosts": [{"name": "h1", "address": "10.231.10.1"}]}')
    assert cli.main(["create", "--env", "e", "--spec", str(bad)]) == 2
    assert "bridge's own address" in capsys.readouterr().err


def test_cli_refuses_a_spec_for_another_environment(tmp_path, capsys):
    s = tmp_path / "spec.json"
    s.write_text('{"env": "other", "hosts": [{"name": "h1", "address": "10.231.10.11"}]}')
    assert cli.main(["create", "--env", "e", "--spec", str(s)]) == 2
    assert "not 'e'" in capsys.readouterr().err


def test_cli_requires_root(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    s = tmp_path / "spec.json"
    s.write_text('{"env": "e", "hosts": [{"name": "h1", "address": "10.231.10.11"}]}')
    assert cli.main(["create", "--env", "e", "--spec", str(s)]) == 2
    assert "must run as root" in capsys.readouterr().err


def test_the_customize_hook_is_part_of_the_package():
    assert "ssh-keygen -A" in image.hook_text()
    assert Path(image.__file__).with_name("data").joinpath("customize-hook.sh").stat().st_mode & 0o111


def test_images_in_use_are_read_from_running_nspawns(tmp_path):
    proc = tmp_path / "proc"
    for pid, argv in {
        "10": ["systemd-nspawn", "-q", "-D", "/cache/images/trixie-old", "--overlay=x"],
        "11": ["python", "-m", "testhosts", "_supervise", "-D", "/not/an/nspawn"],
        "12": ["/usr/bin/systemd-nspawn", "-D", "/cache/images/bookworm-old", "-b"],
    }.items():
        (proc / pid).mkdir(parents=True)
        (proc / pid / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    assert image.images_in_use(proc) == {Path("/cache/images/trixie-old"), Path("/cache/images/bookworm-old")}


def test_prune_keeps_an_old_image_a_running_host_uses(tmp_path, monkeypatch):
    images = image.Images(tmp_path)
    old_used, old_free = tmp_path / "images" / "trixie-aaaa", tmp_path / "images" / "trixie-bbbb"
    for d in (old_used, old_free):
        d.mkdir(parents=True)
    monkeypatch.setattr(image, "machine_mirrors", lambda: ("http://m/debian", "http://m/debian-security"))
    monkeypatch.setattr(image, "images_in_use", lambda: {old_used.resolve()})
    images.prune(keep=set())
    assert old_used.exists()
    assert not old_free.exists()


def _recorded_env(tmp_path, monkeypatch) -> None:
    """A state dir with environment e's spec (hosts h1, h2) recorded, as create leaves it."""
    from testhosts import spec

    monkeypatch.setenv("TESTHOSTS_STATE", str(tmp_path))
    d = tmp_path / "envs" / "e"
    d.mkdir(parents=True)
    s = spec.build("e", [{"name": "h1", "address": "10.231.10.11"}, {"name": "h2", "address": "10.231.10.12"}])
    (d / "spec.json").write_text(s.to_json())


@pytest.mark.parametrize("cmd", ["lose", "rebuild", "revive"])
def test_lose_and_rebuild_refuse_an_unknown_host_naming_the_known_ones(tmp_path, monkeypatch, capsys, cmd):
    _recorded_env(tmp_path, monkeypatch)
    monkeypatch.setattr("os.kill", lambda *a: pytest.fail("nothing may be killed"))
    assert cli.main([cmd, "--env", "e", "--host", "nope"]) == 2
    assert "no host 'nope' in environment 'e'; its hosts: h1, h2" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["e", "envs", "spec.json"]


@pytest.mark.parametrize("cmd", ["lose", "rebuild", "revive"])
def test_lose_and_rebuild_refuse_an_environment_never_created(tmp_path, monkeypatch, capsys, cmd):
    monkeypatch.setenv("TESTHOSTS_STATE", str(tmp_path))
    assert cli.main([cmd, "--env", "nowhere", "--host", "db1"]) == 2
    assert "environment 'nowhere' has no recorded spec" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["lose", "rebuild", "revive"])
def test_lose_and_rebuild_require_root(tmp_path, monkeypatch, capsys, cmd):
    _recorded_env(tmp_path, monkeypatch)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert cli.main([cmd, "--env", "e", "--host", "h1"]) == 2
    assert "must run as root" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["lose", "--env", "e"], ["rebuild", "--host", "h1"], ["lose", "h1"]])
def test_lose_and_rebuild_need_env_and_host(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "required" in capsys.readouterr().err


def test_the_drill_helpers_find_the_state_as_the_cli_does(tmp_path, monkeypatch):
    from testhosts import drill

    monkeypatch.delenv("TESTHOSTS_STATE", raising=False)
    assert drill.environment("m-multinode").dir == Path(__file__).resolve().parents[2] / ".state/testhosts/envs/m-multinode"
    monkeypatch.setenv("TESTHOSTS_STATE", str(tmp_path))
    assert cli._environment("x").dir == drill.environment("x").dir == tmp_path / "envs" / "x"
    _recorded_env(tmp_path, monkeypatch)
    with pytest.raises(HarnessError, match="no host 'db1' in environment 'e'"):
        drill.lose_host("e", "db1")
