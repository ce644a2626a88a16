"""The provider as a client of remote MCP servers, judged by the official
conformance suite's client scenarios (those not about auth, which
test_remote_oauth.py runs), on every runtime: the suite's server is
configured as a remote server and the official `mcp` client calls every
tool, resource and prompt through the bridge (tests/oauth_conformance_client.py),
so every request the scenario checks is one the provider's own client
sent. Every check of each scenario below must pass."""

import pytest

from conformance_client import conformance, failed_checks, run_suite  # noqa: F401 (a fixture)

# Each revision's client scenarios that the provider passes through the
# bridge, by the requirement set that names them.
SCENARIOS = [
    ("2025-11-25", "initialize"),
    ("2025-11-25", "tools_call"),
    ("2025-11-25", "sse-retry"),
    ("2025-11-25", "json-schema-2020-12-preservation"),
    ("2025-11-25", "elicitation-sep1034-client-defaults"),
    ("2026-07-28", "tools_call"),
    ("2026-07-28", "http-standard-headers"),
    ("2026-07-28", "http-custom-headers"),
    ("2026-07-28", "http-invalid-tool-headers"),
    ("2026-07-28", "json-schema-ref-no-deref"),
    ("2026-07-28", "json-schema-2020-12-preservation"),
    ("2026-07-28", "sep-2322-client-request-state"),
    ("2026-07-28", "request-metadata"),
]


@pytest.mark.parametrize("version,scenario", SCENARIOS)
def test_a_client_scenario_of_the_conformance_suite_passes(conformance, runtime, tmp_path, version, scenario):
    results = run_suite(conformance, runtime, tmp_path, "--scenario", scenario, "--spec-version", version)
    assert sorted(results) == [scenario], sorted(results)
    assert not failed_checks(results), failed_checks(results)
    assert results[scenario], "the scenario made no check"
