"""The one YAML loader every reader uses: safe, and libyaml's C parser where PyYAML has it
(several times faster on a policy tree; the pure-Python one gives the same documents)."""

from __future__ import annotations

import yaml

LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
