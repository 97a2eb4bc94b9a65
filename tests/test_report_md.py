"""The Markdown change report: plan line, risks first, one <details> per namespace, size cap."""

from __future__ import annotations

import re
from typing import Any

from test_changes import compute, enforced, files, rec, rule, shop_rules

from flowfence.calico import names
from flowfence.learn.model import PUBLIC_FALLBACK, PortRange, Recommendation
from flowfence.report import markdown as report_md
from flowfence.report import markdown_model, run_report
from flowfence.report.change_set import ChangeSet, rule_view


def md_namespace(
    cs: ChangeSet, ns: str, status: str = "Learning", previous: str | None = None, **kw: Any
) -> markdown_model.Namespace:
    return markdown_model.Namespace(
        ns, status, previous, kw.pop("staged", "Learn"), cs.get(ns), **kw
    )


def make(namespaces: list[markdown_model.Namespace], **kw: Any) -> markdown_model.Report:
    return markdown_model.Report(
        now="2026-11-02T00:00:00Z",
        since="2026-11-01T00:00:00Z",
        until="2026-11-02T00:00:00Z",
        flavor="calico-enterprise",
        tier="namespace-isolation",
        namespaces=tuple(namespaces),
        **kw,
    )


def first_run() -> tuple[ChangeSet, str]:
    shop = rec("shop", *shop_rules())
    db = rec("db", rule("ingress", namespaces=("shop",)))
    after = files(shop, db)
    cs = compute({}, after, shop, db)
    text = report_md.render(make([md_namespace(cs, "db"), md_namespace(cs, "shop")]))
    return cs, text


def test_first_run_plan_risks_and_sections() -> None:
    _, text = first_run()
    lines = text.splitlines()
    assert lines[0] == "## flowfence plan"
    assert lines[2] == "**Plan:** 2 to add, 0 to change, 0 to remove; 4 rules added, 0 removed."
    # Risks come before any namespace section.
    assert text.index("### Risks") < text.index("<details>")
    assert "- **first policy** for `shop` (egress, ingress): once enforced" in text
    assert text.count("<details>") == text.count("</details>") == 2
    assert "<summary><code>shop</code>: created, +3 -0 rules, Learning, stagedAction Learn" in text
    assert "| egress | Namespace | `namespace db` | TCP | 5432 | 10 | 1000 | 1 |" in text
    assert "New file `policies/shop.yaml`." in text and "```diff" not in text


def test_no_change() -> None:
    shop = rec("shop", *shop_rules())
    after = files(shop)
    cs = compute(after, after)
    text = report_md.render(make([md_namespace(cs, "shop", "Stable", "Stable")]))
    assert "**No changes.** The policies match what the flows need." in text
    assert "<details>" not in text and "### Risks" not in text
    assert "Unchanged (1): `shop`." in text


def test_status_change_alone_gets_a_section() -> None:
    shop = rec("shop", *shop_rules())
    after = files(shop)
    cs = compute(after, after)
    text = report_md.render(make([md_namespace(cs, "shop", "Stable", "Stabilizing")]))
    assert "<summary><code>shop</code>: unchanged, Stable (was Stabilizing)" in text


def test_changed_enforced_widening_drift_and_stale() -> None:
    old = rec("shop", *shop_rules())
    fallback = rule(
        scope="Public", namespaces=(), ports=(PortRange(443, 443),), nets=("0.0.0.0/0",),
        not_nets=("10.0.0.0/8",), flags=(PUBLIC_FALLBACK,),
    )  # fmt: skip
    new = rec("shop", *shop_rules()[1:], fallback)
    db = rec("db", rule("ingress", namespaces=("shop",)))
    before, after = files(old, db), files(new, db)
    after["policies/db.yaml"] = enforced(after["policies/db.yaml"])
    cs = compute(before, after, new)
    drift = (rule_view(rule(namespaces=("kafka",))),)
    stale = (rule_view(rule(namespaces=("old",))),)
    text = report_md.render(
        make(
            [
                md_namespace(
                    cs,
                    "db",
                    "Stable",
                    "Stable",
                    staged="Set",
                    decision="enforce by ann: soaked | a week",
                    drift=drift,
                ),
                md_namespace(cs, "shop", "Learning", "Stable", stale=stale),
            ],
            lapsed=("legacy: accept by bob expired 2026-11-01T00:00:00Z",),
        )
    )
    assert "**Plan:** 0 to add, 2 to change, 0 to remove; 1 rules added, 1 removed; " in text
    assert "1 accepted policy drifted." in text
    risks = text[text.index("### Risks") : text.index("<details>")]
    assert "- **enforced** `db`" in risks
    assert "- **widens access** in `shop`: egress TCP 443 `nets 0.0.0.0/0 except 1 ranges` " \
        "allows any public address." in risks  # fmt: skip
    assert "- **drift** in accepted `db`: 1 learned rule" in risks
    assert "### Lapsed decisions" in text
    # The untrusted reason cannot break out of its line or a table.
    assert "Decision: enforce by ann: soaked \\| a week" in text
    assert "**Drift: learned, not covered by the accepted rules**" in text
    assert "<summary><code>shop</code>: updated, +1 -1 rules, Learning (was Stable), " \
        "stagedAction Learn, 1 stale</summary>" in text  # fmt: skip
    assert "⚠ public-fallback" in text
    assert "-kind: StagedNetworkPolicy" in text


def test_rules_removed_from_an_enforced_policy_are_a_risk() -> None:
    old = rec("shop", *shop_rules())
    new = rec("shop", *shop_rules()[:2])
    before, after = files(old), files(new)
    before["policies/shop.yaml"] = enforced(before["policies/shop.yaml"])
    after["policies/shop.yaml"] = enforced(after["policies/shop.yaml"])
    cs = compute(before, after)
    text = report_md.render(make([md_namespace(cs, "shop", staged="Set")]))
    assert "- **rules removed from an enforced policy** in `shop`: 1 rule" in text
    assert "| ingress | Namespace | `namespace frontend` | TCP | 8080 | - | - |" in text


def test_diff_fence_outlasts_backticks_in_content() -> None:
    hostile = b"apiVersion: v1\nkind: NetworkPolicy\nmetadata:\n  name: x\n  namespace: shop\n" \
        b"  annotations:\n    note: '```'\n"  # fmt: skip
    cs = compute({"policies/shop.yaml": hostile}, {})
    text = report_md.render(make([md_namespace(cs, "shop")]))
    assert "````diff\n" in text and "\n````\n" in text


def many(n: int, each: int) -> tuple[ChangeSet, markdown_model.Report]:
    """`n` namespaces whose policy gained a rule: `each` rules, each with its diff."""

    def recs(count: int) -> list[Recommendation]:
        return [
            rec(f"ns-{i:04d}", *(rule(ports=(PortRange(p, p),)) for p in range(1000, 1000 + count)))
            for i in range(n)
        ]

    before, after = files(*recs(each - 1)), files(*recs(each))
    cs = compute(before, after, *recs(each))
    report = make(
        [md_namespace(cs, f"ns-{i:04d}") for i in range(n)],
        excluded=(run_report.Exclusion("tier", "platform|allow-dns", 1, 2, 3),),
    )
    return cs, report


def _balanced(text: str) -> None:
    assert text.count("<details>") == text.count("</details>")
    assert len(re.findall(r"^```+diff$", text, re.M)) * 2 == len(re.findall(r"^```+", text, re.M))


def test_long_reports_drop_diffs_first() -> None:
    _, report = many(12, 20)
    full = report_md.render(report, limit=10**9)
    assert "```diff" in full
    limit = len(full) - 1000
    text = report_md.render(report, limit=limit)
    assert len(text) <= limit
    assert "```diff" not in text and "_YAML diff left out for length" in text
    assert text.count("<details>") == 12  # every section kept, without its diff
    assert "the full report is in `report.json`" in text
    _balanced(text)


def test_very_long_reports_keep_whole_sections_under_the_cap() -> None:
    _, report = many(400, 3)
    text = report_md.render(report)
    assert len(text) <= report_md.LIMIT
    assert text.startswith("## flowfence plan")
    assert "the full report is in `report.json`" in text
    assert re.search(r"\d+ more namespaces and the input tables left out", text)
    _balanced(text)
    # A tiny cap still yields whole lines and the pointer.
    tiny = report_md.render(report, limit=600)
    assert len(tiny) <= 600 and tiny.endswith("`report.json`._\n")


def test_stale_rules_table() -> None:
    stale = rule_view(rule(namespaces=("old",))).entry()
    rows = (
        run_report.StaleRule("shop", True, False, stale),
        run_report.StaleRule("db", False, True, stale),
    )
    text = report_md.render(make([], stale=rows))
    table = text[text.index("### Stale rules") :]
    assert "| `shop` | egress | Namespace | `namespace old` | TCP | 5432 | " \
        "2026-11-01T05:00:00Z | would be removed |" in table  # fmt: skip
    assert "| `db` | egress | Namespace | `namespace old` | TCP | 5432 | " \
        "2026-11-01T05:00:00Z | narrowed |" in table  # fmt: skip


HOSTILE = (
    "</details><img src=x onerror=alert(1)> @everyone & @org/team [x](https://e.example) "
    "![i](https://t.example/p.png) a|b `c`\nnext line"
)


def test_untrusted_text_is_inert_in_the_markdown() -> None:
    """Decision authors and reasons, notes, warnings, lapsed decisions and rejected samples
    are pasted into a pull-request comment: no markup, link, image, mention or broken table."""
    shop = rec("shop", *shop_rules())
    cs = compute({}, files(shop), shop)
    decision = markdown_model._decision_text(
        {"decision": "accept", "author": "<b>mallory</b> @everyone", "reason": HOSTILE}
    )
    ns = md_namespace(cs, "shop", decision=decision, notes=(HOSTILE,))
    report = make(
        [ns],
        warnings=(HOSTILE,),
        lapsed=(f"db: accept by {HOSTILE} expired 2026-11-01T00:00:00Z",),
        rejected=(names.Rejection(HOSTILE, 1, 2, (HOSTILE, "ok")),),
        excluded=(run_report.Exclusion(HOSTILE, "platform|allow-dns", 1, 2, 3),),
    )
    text = report_md.render(report)
    # Only the report's own sections open and close <details>; no markup from the input.
    assert text.count("<details>") == text.count("</details>") == 1
    for raw in ("<img", "<b>", "@everyone", "@org/team", "\nnext line"):
        assert raw not in text, raw
    assert not re.search(r"(?<!\\)\]\(", text)  # no link or image
    assert "&lt;/details&gt;&lt;img src=x onerror=alert(1)&gt;" in text
    assert "@\u200deveryone &amp; @\u200dorg/team \\[x\\](https://e.example)" in text
    assert "Decision: accept by &lt;b&gt;mallory&lt;/b&gt; @\u200deveryone: " in text
    # Table rows keep their columns: every pipe in the text is escaped.
    rows = [line for line in text.splitlines() if line.startswith("| &lt;/details")]
    rejected = next(line for line in rows if "platform" not in line)
    assert " | 1 | 2 | " in rejected and rejected.endswith(" next line, ok |")
    assert len(re.findall(r"(?<!\\)\|", rejected)) == 5
    excluded = next(line for line in text.splitlines() if "platform" in line)
    assert len(re.findall(r"(?<!\\)\|", excluded)) == 6
