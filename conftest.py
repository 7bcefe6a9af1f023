"""Hypothesis profiles shared by tests/ and fuzz/.

`HYPOTHESIS_PROFILE` picks one: `ci` (what `make test` runs: bounded, no
deadline, so a loaded 2-core CI machine neither times out nor flakes), `dev`
(the default for a bare `pytest`), and `fuzz` (`make fuzz`: FUZZ_EXAMPLES
examples per property, default 50,000).
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "50000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
