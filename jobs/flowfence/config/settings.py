"""Configuration: a Calico `PolicyRecommendationScope` plus flowfence's own settings file.

One frozen `Settings` object, built by `load_settings` and passed explicitly to every stage.
The scope manifest is read unchanged (scope.py); settings Calico has no field for live in a
`FlowfenceConfig` file (flowfence_config.py). Unknown keys are errors, so a typo never
silently falls back to a default. See docs/configuration.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from flowfence.config.documents import fail
from flowfence.config.fields import FIELDS, convert, selector
from flowfence.config.flowfence_config import parse_config
from flowfence.config.scope import parse_scope
from flowfence.core.durations import show

Flavor = Literal["calico-enterprise", "calico", "kubernetes"]
DefaultAction = Literal["Deny", "Pass"]
RecStatus = Literal["Enabled", "Disabled"]
UnknownTiers = Literal["learn", "exclude"]
# Both: a policy isolates its namespace in both directions; WithRules: Calico's engine, which
# lists only the directions that have rules and leaves the other one open.
PolicyTypes = Literal["Both", "WithRules"]

DEFAULT_SELECTOR = (
    "!(projectcalico.org/name starts with 'tigera-') && "
    "!(projectcalico.org/name starts with 'calico-') && "
    "!(projectcalico.org/name starts with 'kube-') && "
    "!(projectcalico.org/name starts with 'openshift-')"
)


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know besides its inputs. Durations are `timedelta`."""

    # From the PolicyRecommendationScope (Calico's documented defaults).
    interval: timedelta = timedelta(seconds=150)
    initial_lookback: timedelta = timedelta(hours=24)
    stabilization_period: timedelta = timedelta(minutes=10)
    max_rules: int = 20
    policies_learning_cut_off: int = 20
    namespace_selector: str = DEFAULT_SELECTOR
    intra_namespace_pass: bool = False
    tier_name: str = "namespace-isolation"
    rec_status: RecStatus | None = None  # recorded for the report; flowfence runs regardless
    # From the FlowfenceConfig file.
    tier_order: float = 10000.0
    tier_default_action: DefaultAction = "Deny"
    flavor: Flavor = "calico-enterprise"
    policy_types: PolicyTypes = "Both"
    private_cidr_cap: int = 8
    public_cidr_cap: int = 16
    cluster_cidrs: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    stale_rule_period: timedelta = timedelta(days=14)
    stale_namespace_period: timedelta = timedelta(days=30)
    late_arrival_grace: timedelta = timedelta(hours=1)
    tier_orders: Mapping[str, float | None] = field(default_factory=lambda: MappingProxyType({}))
    unknown_tiers: UnknownTiers = "learn"
    memory_limit: str | None = None
    threads: int | None = None
    temp_dir: Path | None = None
    # Where the values came from, for the report.
    scope_path: Path | None = None
    config_path: Path | None = None


def load_settings(
    scope_path: Path | None, config_path: Path | None, **cli_overrides: Any
) -> Settings:
    """Defaults, then the scope, then the flowfence config, then CLI overrides (`None` values
    are ignored, so a CLI can pass every option). Raises ConfigError naming the field."""
    values: dict[str, Any] = {}
    if scope_path is not None:
        values.update(parse_scope(scope_path))
    if config_path is not None:
        values.update(parse_config(config_path))
    for name, value in cli_overrides.items():
        if name not in FIELDS:
            raise fail("command line", f"unknown setting {name!r}")
        if value is not None:
            values[name] = convert(name, value, f"--{name.replace('_', '-')}")
    settings = replace(Settings(), scope_path=scope_path, config_path=config_path, **values)
    if "namespace_selector" not in values:
        selector(settings.namespace_selector, "namespaceSpec.selector")
    _check_consistency(settings)
    return settings


def _check_consistency(s: Settings) -> None:
    for name in ("initial_lookback", "stabilization_period"):
        if getattr(s, name) < s.interval:
            raise fail(
                name,
                f"{show(getattr(s, name))} is shorter than interval {show(s.interval)} "
                "(Calico would ignore it)",
            )
    if s.tier_name in s.tier_orders:
        raise fail("tierOrders", f"lists the recommendation tier {s.tier_name!r}; use tierOrder")
