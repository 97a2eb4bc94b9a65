"""`flowfence serve` over a real run's output, on uvicorn on 127.0.0.1: the pages, the actions
through the same code as the CLI commands, and the protection of writes (a POST without the
form token, from another origin or to another Host is refused with 403; --read-only has no
actions at all)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DemoInputs
from serve_support import Server, serving

from flowfence.cli.app import main
from flowfence.review import decisions as dec

NOW = "2026-11-03T09:00:00Z"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, demo_inputs: DemoInputs) -> Path:
    out = tmp_path_factory.mktemp("serve") / "out"
    assert main(demo_inputs.run_args(out)) == 0
    return out


@pytest.fixture
def out(ran: Path, tmp_path: Path) -> Path:
    """A copy of the run's output for one test, so decisions do not leak between tests."""
    copy = tmp_path / "out"
    shutil.copytree(ran, copy, symlinks=True)
    return copy


@pytest.fixture
def server(out: Path) -> Server:
    with serving(out, "--now", NOW) as running:
        yield running  # type: ignore[misc]


def decide(server: Server, ns: str, **form: str) -> object:
    return server.post(
        f"/namespaces/{ns}", {"csrf_token": server.token(f"/namespaces/{ns}"), **form}
    )


def test_overview_lists_every_namespace_sorted_and_filtered(server: Server, ran: Path) -> None:
    page = server.get("/")
    assert page.status == 200
    assert "Plan: 14 to add" in page.body and "calico-enterprise" in page.body
    listed = re.findall(r'<tr data-namespace="([a-z0-9-]+)">', page.body)
    assert listed == sorted(listed) and len(listed) == 15
    by_egress = server.get("/?sort=egress&desc=1").body
    assert re.findall(r'<tr data-namespace="([a-z0-9-]+)">', by_egress)[0] == "monitoring"
    no_data = server.get("/?status=NoData").body
    assert re.findall(r'<tr data-namespace="([a-z0-9-]+)">', no_data) == ["legacy-reports"]
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_namespace_page_shows_rules_yaml_and_what_it_would_deny(server: Server) -> None:
    page = server.get("/namespaces/cart")
    assert page.status == 200
    assert "The recommended rules" in page.body and "namespace frontend" in page.body
    assert "namespace-isolation.cart" in page.body  # its YAML
    # Without the cluster's policies, DNS to kube-system (allowed by the platform tier, of an
    # order the replay cannot know) is what the policy alone would deny.
    assert "would be denied, worst first" in page.body
    assert "kube-system/coredns" in page.body
    assert server.get("/namespaces/nope").status == 404
    assert server.get("/namespaces/Not_A_Name").status == 404
    graph = server.get("/map")
    assert graph.status == 200 and 'href="/namespaces/frontend"' in graph.body


def test_replay_with_the_clusters_policies_denies_nothing_it_saw(
    out: Path, demo_inputs: DemoInputs
) -> None:
    with serving(out, "--existing-policies", str(demo_inputs.policies)) as server:
        page = server.get("/namespaces/cart").body
    assert "Nothing: every stored flow this policy applies to is allowed" in page


def test_an_action_writes_decisions_yaml_and_shows_at_once(server: Server, out: Path) -> None:
    reply = decide(server, "cart", action="dismiss", reason="being retired", author="alice")
    assert reply.status == 303  # type: ignore[attr-defined]
    entry = dec.load(out).entries["cart"]
    assert (entry.decision, entry.reason, entry.author) == ("dismiss", "being retired", "alice")
    page = server.get(reply.headers["location"]).body  # type: ignore[attr-defined]
    assert "cart: dismiss by alice" in page and "next run applies it" in page
    row = re.search(r'<tr data-namespace="cart">.*?</tr>', server.get("/").body, re.S)
    assert row and "decision-dismiss" in row.group(0) and "next run" in row.group(0)
    reply = decide(server, "cart", action="reactivate")
    assert reply.status == 303  # type: ignore[attr-defined]
    assert dec.load(out).get("cart") is None


def test_serve_writes_the_same_file_as_the_command_line(
    server: Server, out: Path, tmp_path: Path
) -> None:
    decide(server, "ads", action="accept", reason="reviewed", author="bob", expires="30d")
    cli = tmp_path / "cli"
    cli.mkdir()
    args = ["--reason", "reviewed", "--author", "bob", "--expires", "30d", "--now", NOW]
    assert main(["accept", "ads", *args, "--out", str(cli)]) == 0
    assert (out / "decisions.yaml").read_bytes() == (cli / "decisions.yaml").read_bytes()


def test_a_refused_form_says_why_and_writes_nothing(server: Server, out: Path) -> None:
    reply = decide(server, "cart", action="accept", reason="  ")
    assert reply.status == 400  # type: ignore[attr-defined]
    assert "--reason: required" in reply.body  # type: ignore[attr-defined]
    reply = decide(server, "cart", action="accept", reason="r", expires="yesterday")
    assert reply.status == 400 and "--expires" in reply.body  # type: ignore[attr-defined]
    assert not (out / "decisions.yaml").exists()


def test_a_hand_edited_policy_is_not_frozen_from_the_page(server: Server, out: Path) -> None:
    # The command line refuses it unless --keep-edits; the page has no such choice (issue 14).
    policy = out / "policies" / "cart.yaml"
    policy.write_text(policy.read_text() + "# edited by hand\n")
    reply = decide(server, "cart", action="enforce", reason="looks fine", author="eve")
    assert reply.status == 400  # type: ignore[attr-defined]
    assert "differs from what flowfence last wrote" in reply.body  # type: ignore[attr-defined]
    assert "--keep-edits" in reply.body  # type: ignore[attr-defined]
    assert not (out / "decisions.yaml").exists()


def test_writes_without_the_token_or_from_elsewhere_are_refused(server: Server, out: Path) -> None:
    token = server.token("/namespaces/cart")
    form = {"action": "dismiss", "reason": "r", "author": "a"}
    # No token at all (a form another site posts: no cookie, no field).
    assert server.post("/namespaces/cart", form, cookies=False).status == 403
    # The cookie alone (a same-site request forged without reading the page).
    assert server.post("/namespaces/cart", form).status == 403
    # A wrong token, also one no token can be (not ASCII).
    assert server.post("/namespaces/cart", {**form, "csrf_token": "x" * 43}).status == 403
    assert server.post("/namespaces/cart", {**form, "csrf_token": "é" * 43}).status == 403
    # The right token from another origin, or with no origin at all.
    with_token = {**form, "csrf_token": token}
    evil = {"Origin": "http://evil.example"}
    assert server.post("/namespaces/cart", with_token, headers=evil).status == 403
    bare = server.request("POST", "/namespaces/cart", form=with_token)
    assert bare.status == 403 and "Origin" in bare.body
    # Another Host (a DNS name rebound to 127.0.0.1): refused, reads included.
    rebound = {"Host": "evil.example:80", "Origin": "http://evil.example:80"}
    assert server.post("/namespaces/cart", with_token, headers=rebound).status == 403
    assert server.get("/", headers={"Host": "evil.example"}).status == 403
    assert not (out / "decisions.yaml").exists()
    # The same request from the page itself goes through.
    assert server.post("/namespaces/cart", with_token).status == 303
    assert dec.load(out).entries["cart"].decision == "dismiss"
    assert "SameSite=strict" in server.get("/").headers["set-cookie"]


def test_read_only_has_no_actions(out: Path) -> None:
    with serving(out, "--read-only") as server:
        page = server.get("/namespaces/cart")
        assert page.status == 200 and '<form class="decide"' not in page.body
        assert "set-cookie" not in page.headers
        reply = server.post("/namespaces/cart", {"action": "dismiss", "reason": "r"})
        assert reply.status == 405
    assert not (out / "decisions.yaml").exists()


def test_hostile_reason_renders_as_text(server: Server, out: Path) -> None:
    assert decide(server, "cart", action="dismiss", reason=HOSTILE, author="<b>m</b>").status == 303  # type: ignore[attr-defined]
    page = server.get("/namespaces/cart").body
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>m</b>" not in page
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    )
    assert dec.load(out).entries["cart"].reason == HOSTILE


def test_listening_beyond_loopback_needs_allow_remote(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(out), "--listen", "0.0.0.0:8765"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert main(["serve", str(out), "--listen", "localhost"]) == 2
    assert main(["serve", str(out / "missing")]) == 2


def test_git_commit_commits_the_decision(out: Path) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(out), *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    git("init", "-q")
    git("config", "user.name", "CI")
    git("config", "user.email", "ci@example.com")
    with serving(out, "--git-commit", "--now", NOW) as server:
        reply = decide(server, "cart", action="dismiss", reason="retired", author="alice")
        assert reply.status == 303  # type: ignore[attr-defined]
        page = server.get(reply.headers["location"]).body  # type: ignore[attr-defined]
    # decisions.yaml alone: the policies are committed by `run --git-commit`, never by a click.
    assert git("log", "-1", "--format=%s").strip() == "flowfence: 1 decision"
    assert git("show", "--name-only", "--format=", "HEAD").split() == ["decisions.yaml"]
    assert "reason: retired" in git("show", "HEAD:decisions.yaml")
    assert "committed" in page
    assert git("status", "--porcelain", "--", "decisions.yaml") == ""


def test_an_unreadable_report_is_named_not_a_traceback(out: Path) -> None:
    (out / "report.json").write_text('{"now": "x"}')
    with serving(out) as server:
        reply = server.get("/")
    assert reply.status == 500
    assert "report.json: not a report flowfence wrote" in reply.body


def test_a_lapsed_decision_is_shown_as_lapsed_not_pending(out: Path) -> None:
    # Decided before the run's --now (2026-11-02), expired by then: the run learned again.
    args = ["--author", "a", "--now", "2026-10-01T00:00:00Z", "--expires", "2026-10-15T00:00:00Z"]
    assert main(["accept", "cart", "--reason", "old", "--out", str(out), *args]) == 0
    with serving(out) as server:
        row = re.search(r'<tr data-namespace="cart">.*?</tr>', server.get("/").body, re.S)
        page = server.get("/namespaces/cart").body
    assert row and "lapsed" in row.group(0) and "next run" not in row.group(0)
    assert "This decision expired" in page


def _git_repo(out: Path) -> Callable[..., str]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(out), *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    git("init", "-q", "-b", "main")
    git("config", "user.name", "CI")
    git("config", "user.email", "ci@example.com")
    git("add", "-A")
    git("commit", "-q", "-m", "the run's output")
    return git


def test_the_page_commits_decisions_only_never_a_hand_edit(out: Path) -> None:
    # A click on one namespace must not commit someone's uncommitted edit of another policy.
    git = _git_repo(out)
    edited = out / "policies" / "cart.yaml"
    edited.write_text(edited.read_text() + "# widened by hand\n")
    with serving(out, "--git-commit", "--now", NOW) as server:
        reply = decide(server, "ads", action="dismiss", reason="noise", author="alice")
        assert reply.status == 303  # type: ignore[attr-defined]
    assert git("show", "--name-only", "--format=", "HEAD").split() == ["decisions.yaml"]
    assert git("status", "--porcelain", "--", "policies").strip() == "M policies/cart.yaml"


def test_a_detached_head_is_refused_before_the_decision_is_written(out: Path) -> None:
    git = _git_repo(out)
    git("checkout", "-q", "--detach")
    with serving(out, "--git-commit", "--now", NOW) as server:
        reply = decide(server, "ads", action="dismiss", reason="noise", author="alice")
    assert reply.status == 400 and "detached" in reply.body  # type: ignore[attr-defined]
    assert not (out / "decisions.yaml").exists()


def test_the_page_reads_only_the_namespaces_own_policy_file(out: Path) -> None:
    # report.json may come from a repository others edit: it cannot point the page elsewhere.
    report = json.loads((out / "report.json").read_text())
    for ns in report["namespaces"]:
        if ns["namespace"] == "cart":
            ns["manifest"] = "/etc/passwd"
        if ns["namespace"] == "ads":
            ns["manifest"] = "../report.json"
    (out / "report.json").write_text(json.dumps(report))
    (out.parent / "report.json").write_text("secret-beside-the-output")
    with serving(out) as server:
        cart = server.get("/namespaces/cart").body
        ads = server.get("/namespaces/ads").body
        catalog = server.get("/namespaces/catalog").body
    assert "root:" not in cart and "secret-beside-the-output" not in ads
    assert 'id="yaml"' in catalog  # a namespace whose report names its own file shows it


def test_a_wildcard_listen_takes_addresses_not_names_in_host(out: Path) -> None:
    # A DNS name an attacker controls can be rebound to this machine; an address cannot.
    with serving(out, "--allow-remote", host="0.0.0.0") as server:
        assert server.get("/", headers={"Host": f"127.0.0.1:{server.port}"}).status == 200
        rebound = {"Host": f"rebind.attacker.example:{server.port}"}
        assert server.get("/", headers=rebound).status == 403


def test_a_port_in_use_is_one_line_and_exit_2(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", str(out), "--listen", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err
