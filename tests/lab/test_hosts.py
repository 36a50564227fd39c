"""``site/lab.toml`` and Ansible inventories → lab hosts: pure parsing, no ssh."""

from __future__ import annotations

from pathlib import Path

import pytest

from chronicle.errors import LabError
from chronicle.lab.hosts import LOCAL, load_hosts, pick
from chronicle.lab.inventory import expand_range, load_inventory


def lab_toml(root: Path, text: str) -> Path:
    (root / "site").mkdir(parents=True, exist_ok=True)
    path = root / "site" / "lab.toml"
    path.write_text(text)
    return path


def test_without_lab_toml_only_the_local_host_exists(tmp_path):
    assert list(load_hosts(tmp_path)) == [LOCAL]


def test_a_declared_host_is_read_with_its_settings(tmp_path):
    key = tmp_path / "site" / "lab_key"
    lab_toml(tmp_path, '[hosts.kvmbox]\nssh = "root@kvmbox.example.net"\nport = 2222\n'
                       'identity = "lab_key"\nincus = "https://kvmbox.example.net:8443"\n')
    key.write_text("not really a key")
    box = load_hosts(tmp_path)["kvmbox"]
    assert (box.ssh, box.port, box.identity, box.incus) == (
        "root@kvmbox.example.net", 2222, key.resolve(), "https://kvmbox.example.net:8443")
    assert not box.is_local and load_hosts(tmp_path)[LOCAL].is_local


def test_a_host_reached_only_through_its_incus_api_needs_no_ssh(tmp_path):
    lab_toml(tmp_path, '[hosts.box]\nincus = "https://box:8443"\nincus_target = "m2"\n')
    box = load_hosts(tmp_path)["box"]
    assert (box.ssh, box.incus, box.incus_target) == (None, "https://box:8443", "m2")
    assert not box.is_local


@pytest.mark.parametrize("table, words, line", [
    ('ssh = "a"\nusername = "root"\n', "unknown key 'hosts.box.username'", 3),
    ('ssh = "a"\nport = "22"\n', "key 'hosts.box.port' must be an integer", 3),
    ('ssh = "a"\nport = 70000\n', "key 'hosts.box.port' must be between 1 and 65535", 3),
    ('port = 22\n', "key 'hosts.box.ssh' is required", 1),
    ('ssh = "a"\nidentity = "~/no/such/key"\n', "key 'hosts.box.identity': no such file", 3),
    ('ssh = "a"\nincus = "http://box:8443"\n', "key 'hosts.box.incus' must be an https://", 3),
    ('ssh = "-oProxyCommand=x"\n', "key 'hosts.box.ssh' must be a destination", 2),
    ('ssh = "a"\nincus_target = "m1"\n', "key 'hosts.box.incus_target' needs", 3),
])
def test_a_bad_host_table_names_the_file_the_key_and_its_line(tmp_path, table, words, line):
    path = lab_toml(tmp_path, "[hosts.box]\n" + table)
    with pytest.raises(LabError) as caught:
        load_hosts(tmp_path)
    assert caught.value.path == path and words in caught.value.message
    assert caught.value.line == line


def test_unknown_top_level_key_and_the_local_name_are_refused(tmp_path):
    lab_toml(tmp_path, 'host = "x"\n')
    with pytest.raises(LabError, match="unknown key 'host'"):
        load_hosts(tmp_path)
    lab_toml(tmp_path, '[hosts.local]\nssh = "x"\n')
    with pytest.raises(LabError, match="'local' is this machine"):
        load_hosts(tmp_path)


def test_bad_toml_names_its_line(tmp_path):
    path = lab_toml(tmp_path, '[hosts.box]\nssh = \n')
    with pytest.raises(LabError) as caught:
        load_hosts(tmp_path)
    assert caught.value.path == path and caught.value.line == 2


INI = """\
# an inventory as deployers keep them
bastion.example.net

[web]
www[01:03].example.net ansible_user=deploy

[lab]
kvmbox ansible_host=10.0.0.5 ansible_port=2201 ansible_ssh_private_key_file=lab_key
laptop:2222 ansible_host=192.168.1.20   # a trailing comment

[lab:vars]
ansible_user=root

[metal:children]
lab
"""

YAML = """\
all:
  hosts:
    bastion.example.net:
  children:
    web:
      hosts:
        www[01:03].example.net:
          ansible_user: deploy
    metal:
      children:
        lab:
          vars:
            ansible_user: root
          hosts:
            kvmbox:
              ansible_host: 10.0.0.5
              ansible_port: 2201
              ansible_ssh_private_key_file: lab_key
            laptop:
              ansible_host: 192.168.1.20
              ansible_port: 2222
"""


@pytest.mark.parametrize("name, text", [("hosts.ini", INI), ("hosts.yml", YAML)])
def test_an_ansible_inventory_gives_hosts_with_their_connection_variables(tmp_path, name, text):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / name).write_text(text)
    (tmp_path / "site" / "lab_key").write_text("key")
    found = {h.name: h for h in load_inventory(tmp_path / "site" / name)}
    assert sorted(found) == ["bastion.example.net", "kvmbox", "laptop", "www01.example.net",
                             "www02.example.net", "www03.example.net"]
    assert {"lab", "metal", "all"} <= set(found["kvmbox"].groups)
    lab_toml(tmp_path, f'inventory = "{name}"\ninventory_group = "metal"\n'
                       '[hosts.laptop]\nworkdir = "/srv/lab"\n')
    hosts = load_hosts(tmp_path)
    assert list(hosts) == [LOCAL, "kvmbox", "laptop"]
    assert (hosts["kvmbox"].ssh, hosts["kvmbox"].port) == ("root@10.0.0.5", 2201)
    assert hosts["kvmbox"].identity == (tmp_path / "site" / "lab_key").resolve()
    laptop = hosts["laptop"]
    assert (laptop.ssh, laptop.port, laptop.workdir) == ("root@192.168.1.20", 2222, "/srv/lab")


@pytest.mark.parametrize("text, words, line", [
    ("[web\nhost1\n", "bad section header", 1),
    ("[web]\nhost1 ansible_port\n", "expected key=value", 2),
    ("[web:children]\nnowhere\n", "unknown child group 'nowhere'", None),
    ("[web]\nhost1 ansible_user='unclosed\n", "cannot split the line", 2),
])
def test_a_bad_ini_inventory_names_the_file_and_line(tmp_path, text, words, line):
    path = tmp_path / "hosts"
    path.write_text(text)
    with pytest.raises(LabError) as caught:
        load_inventory(path)
    assert caught.value.path == path and words in caught.value.message
    assert caught.value.line == line


def test_bad_yaml_inventory_names_the_line(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    a: [\n")
    with pytest.raises(LabError) as caught:
        load_inventory(path)
    assert caught.value.path == path and caught.value.line is not None


def test_host_ranges_expand_as_ansible_documents_them(tmp_path):
    assert expand_range("db-[a:c].lan", tmp_path) == ["db-a.lan", "db-b.lan", "db-c.lan"]
    assert expand_range("n[08:12:2]", tmp_path) == ["n08", "n10", "n12"]
    with pytest.raises(LabError, match="bad host range"):
        expand_range("n[1:c]", tmp_path)


def test_on_names_known_hosts_only(tmp_path):
    lab_toml(tmp_path, '[hosts.a]\nssh = "a"\n[hosts.b]\nssh = "b"\n')
    hosts = load_hosts(tmp_path)
    assert [h.name for h in pick(hosts, "b,a,b", tmp_path)] == ["b", "a"]
    with pytest.raises(LabError, match=r"unknown lab host 'c' \(known: local, a, b\)"):
        pick(hosts, "a,c", tmp_path)


def test_each_checkout_has_its_own_working_folder_on_a_host(tmp_path):
    from chronicle.lab import remote
    from chronicle.lab.hosts import LabHost

    one, two = tmp_path / "a" / "blog", tmp_path / "b" / "blog"
    assert remote.default_workdir(one) != remote.default_workdir(two)
    assert remote.default_workdir(one).startswith(".cache/chronicle-lab/blog-")
    given = LabHost("box", ssh="box", workdir="~/lab")
    with remote.Hosts([given, LabHost("other", ssh="other")], one) as hosts:
        assert hosts.connections["box"].workdir == "lab"  # ssh starts at home
        assert hosts.connections["other"].workdir == remote.default_workdir(one)
        control = hosts.control
        assert control.stat().st_mode & 0o777 == 0o700  # the sockets' folder is private
    assert not control.exists()
