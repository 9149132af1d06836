"""Schemathesis over the whole OpenAPI schema, in-process: every operation, generated valid and
invalid requests, each response checked against what the schema promises (status codes,
content types, bodies, headers, auth, rejection of invalid input)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from serve.app import create_app
from tests.api.conftest import TrainedHome, add_keys, clean_environment, copy_home, home_settings

# Schemathesis parametrizes at collection, so the app exists at import: creating it does no
# I/O, and its home is filled with a copy of the trained one before the first request starts
# its lifespan. (Its lazy `from_fixture` loader does not run under pytest 9.)
_HOME = Path(tempfile.gettempdir()) / f"funnelcast-schemathesis-{os.getpid()}"
_APP = create_app(home_settings(_HOME))

# 25 generated requests an operation; reload takes no input (and reloads the models each
# time), so a few suffice there; a forecast or a goal roll-up runs the engine (seconds each).
# Leads and events are checked against the data at run time as well as against the schema: a
# known attribute's type comes from the loaded model, a close must follow the lead's creation,
# a stage must be one of the data set's; a forecast's segment key must be a lead column, its
# as_of inside the data, and draws x periods within the API's budget. A request the schema
# allows can therefore get the 422 these operations document; every other check (no 5xx,
# responses as documented, invalid requests rejected, auth enforced) applies unchanged.
_CONFIG = SchemathesisConfig.from_str(
    """
[generation]
max-examples = 25

[[operations]]
include-path = "/v1/admin/reload"
generation.max-examples = 3

[[operations]]
include-path-regex = "^/v1/leads"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path-regex = "^/v1/goals"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

[[operations]]
include-path-regex = "^/v1/(forecast|attainment)$"
generation.max-examples = 10
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "422"]

# Segment columns are the funnel's lead columns: any other name is the documented 422.
[[operations]]
include-path = "/v1/segments"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "422"]
"""
)
schema = schemathesis.openapi.from_dict(_APP.openapi(), config=_CONFIG)
schema.app = _APP


@pytest.fixture(scope="module")
def keys(trained_home: TrainedHome) -> Iterator[dict[str, str]]:
    """A key per role, in the served app's store; its lifespan runs until the module ends."""
    with pytest.MonkeyPatch.context() as patch:
        clean_environment(patch)
        copy_home(trained_home.home, _HOME.parent, target=_HOME)
        try:
            # Starts the lifespan, as the checks' requests would.
            with asgi.get_client(_APP):  # type: ignore[arg-type]  # a Starlette app is ASGI
                pass
            yield add_keys(_APP)
        finally:
            asgi.shutdown_lifespans()
            shutil.rmtree(_HOME, ignore_errors=True)


@schema.parametrize()
@settings(
    deadline=None,
    derandomize=True,  # the same cases on every run: a failure here is never a fluke
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_keeps_its_schema(
    case: schemathesis.Case[Any], keys: dict[str, str]
) -> None:
    role = "integration" if case.path.startswith("/v1/leads") else "admin"
    case.call_and_validate(headers={"Authorization": f"Bearer {keys[role]}"})
