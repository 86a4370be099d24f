"""Property-based fuzzing of the whole OpenAPI spec (schemathesis) with two jurisdictions' tokens.

Every operation the gateway publishes gets generated input, valid and not, as a Jiangqian liaison
worker and as a grid leader of another township: no answer may be a ``5xx``, and no answer may carry
a household book number of a township that is not the caller's (every book number starts with its
township's prefix, ``632623-JQ-…``).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from services.registry.seed import COUNTY_ADMIN_CODE, TOWNSHIPS
from tests.e2e.conftest import Session

pytestmark = pytest.mark.e2e

JIANGQIAN = "江千乡"
# Derandomized, so every run sends the same inputs; enough to reach past each operation's validation.
EXAMPLES_PER_OPERATION = 15
PREFIX_OF = {spec.name: f"{COUNTY_ADMIN_CODE}-{spec.book_prefix}-" for spec in TOWNSHIPS}


@pytest.fixture(scope="module")
def callers(platform):
    """(session, book-number prefixes it must never see) for each of the two jurisdictions."""
    accounts = platform.accounts()
    worker = next(a for a in accounts if a["role"] == "liaison_worker" and a["township"] == JIANGQIAN)
    grid = next(a for a in accounts if a["role"] == "village_grid" and a["township"] != JIANGQIAN)
    chosen = []
    for account in (worker, grid):
        session = Session(platform, account)
        foreign = [prefix for name, prefix in PREFIX_OF.items() if name != account["township"]]
        chosen.append((session, foreign))
    yield chosen
    for session, _ in chosen:
        session.client.close()


def test_no_input_breaks_the_gateway_or_crosses_a_jurisdiction(platform, callers):
    schema = schemathesis.openapi.from_url(f"{platform.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20

    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def fuzz(case) -> None:
            for session, foreign in callers:
                response = case.call(headers={"Authorization": session.client.headers["Authorization"]})
                where = (session.account["username"], case.method, case.formatted_path)
                assert response.status_code < 500, (*where, response.content[:500])
                leaked = [prefix for prefix in foreign if prefix.encode() in response.content]
                assert not leaked, (*where, leaked)

        fuzz()
