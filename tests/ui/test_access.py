"""Binding, passwords and the workdir: what the app refuses, and that it says what to do instead."""

from __future__ import annotations

import doctest

import pytest

from sftune.ui import access
from sftune.ui.access import RESOURCES, AccessError, PathGuard, check_bind, is_loopback, parse_auth


def test_doctests_run():
    assert doctest.testmod(access).failed == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_password(host):
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "my-box.lan"])
def test_network_bind_without_auth_is_refused(host):
    assert not is_loopback(host)
    with pytest.raises(AccessError, match="--auth USER:PASSWORD"):
        check_bind(host, None)
    check_bind(host, "ana:secret")  # with a password it is allowed


@pytest.mark.parametrize("bad", ["ana", ":pw", "ana:", ""])
def test_malformed_auth(bad):
    with pytest.raises(AccessError, match="USER:PASSWORD"):
        parse_auth(bad)


def test_paths_inside_workdir_resolve(tmp_path):
    g = PathGuard(tmp_path)
    assert g.path("data/a.jsonl") == tmp_path.resolve() / "data" / "a.jsonl"
    assert g.path(str(tmp_path / "b.jsonl")) == tmp_path.resolve() / "b.jsonl"
    assert g.path(str(RESOURCES / "identity.jsonl")).is_file()  # the bundled demo data is always readable


@pytest.mark.parametrize("escape", ["../x.jsonl", "a/../../x", "/etc/passwd", "~/.ssh/id_rsa"])
def test_escapes_are_refused_with_the_workdir_named(tmp_path, escape):
    g = PathGuard(tmp_path / "w")
    (tmp_path / "w").mkdir()
    with pytest.raises(AccessError, match="outside the workdir") as e:
        g.path(escape, what="data file")
    assert str((tmp_path / "w").resolve()) in str(e.value) and "--workdir" in str(e.value)


def test_symlink_out_of_workdir_is_refused(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "secret").write_text("x")
    (tmp_path / "w" / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(AccessError):
        PathGuard(tmp_path / "w").path("link")


def test_model_names_pass_paths_are_checked(tmp_path):
    g = PathGuard(tmp_path)
    assert g.model_or_path("default") == "default"
    assert g.model_or_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    (tmp_path / "run").mkdir()
    assert g.model_or_path("run") == str(tmp_path.resolve() / "run")
    with pytest.raises(AccessError):
        g.model_or_path("../elsewhere/model.gguf")


def test_no_workdir_means_no_confinement(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert PathGuard().path("/etc/hosts") == PathGuard().path("/etc/hosts")  # allowed, absolute
    assert PathGuard().path("x") == tmp_path.resolve() / "x"


def test_resources_are_not_an_output_folder(tmp_path):
    with pytest.raises(AccessError, match="read-only"):
        PathGuard(tmp_path).output_dir(str(RESOURCES / "runs"))


def test_run_config_paths_are_confined(tmp_path):
    from sftune.ui.access import confine_config

    (tmp_path / "t.jinja").write_text("{{ x }}")
    g = PathGuard(tmp_path)
    out = confine_config({"model": "default", "data": ["a.jsonl", {"path": "b.jsonl", "share": 0.4}],
                          "template": "t.jinja", "cache_dir": "cache", "max_steps": 2}, g)
    root = tmp_path.resolve()
    assert out == {"model": "default", "data": [str(root / "a.jsonl"), {"path": str(root / "b.jsonl"), "share": 0.4}],
                   "template": str(root / "t.jinja"), "cache_dir": str(root / "cache"), "max_steps": 2}
    assert confine_config({"template": "chatml"}, g)["template"] == "chatml"  # a name, not a file
    for bad in ({"data": ["../x.jsonl"]}, {"eval_data": [{"path": "/etc/x.jsonl"}]}, {"template": "../t.jinja"},
                {"cache_dir": "/tmp"}, {"model": "../m"}):
        with pytest.raises(AccessError, match="outside the workdir"):
            confine_config(bad, g)
