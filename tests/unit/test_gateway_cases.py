"""The gateway's case endpoints with routing stood in for: bad input never reaches routing, routing's
refusals become HTTP statuses, every action carries an id so a resent call acts once."""

from __future__ import annotations

import pytest

from lianhu.rpc_client import RpcUnavailable
from tests.unit.test_gateway import RecordingRpc, gateway  # noqa: F401 - the fixture

ACT = "/v1/reports/r-1/actions"
DONE = {
    "report_id": "r-1",
    "case_id": "c-1",
    "action": "acknowledge",
    "state": "acknowledged",
    "replayed": False,
}


@pytest.mark.parametrize(
    "body",
    [
        {"action": "fly"},
        {"action": "acknowledge", "unit": 3},  # a field that does not exist
        {"action": "rate", "rating": "5"},  # a string is not a number
        {"action": "rate", "rating": 0},
        {"action": "rate"},
        {"action": "resolve"},  # a resolution says what was done
        {"action": "return", "note": "not ours"},  # a return says which kind
        {"action": "reassign", "unit_id": True},
        {"action": "merge", "into": ""},
        {"action": "acknowledge", "rating": 5},  # a field of another action
        {"action": "comment", "note": "x" * 2001},
        {"note": "no action"},
        [],
    ],
)
def test_malformed_actions_are_422_and_never_reach_routing(gateway, body):  # noqa: F811
    rpc = RecordingRpc(**{"routing.act": DONE})
    gateway.app.state.rpc = rpc
    response = gateway.client.post(ACT, json=body, headers=gateway.token())
    assert (response.status_code, response.json()["code"]) == (422, "invalid_request"), response.text
    assert rpc.calls == []


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        ({"refused": "not_found", "detail": "no such report in your area"}, 404, "not_found"),
        ({"refused": "forbidden", "detail": "resolve is for the handler"}, 403, "forbidden"),
        ({"refused": "conflict", "detail": "cannot resolve a case that is closed"}, 409, "conflict"),
        (
            {"errors": [{"field": "unit_id", "message_zh": "无", "message_en": "no unit"}]},
            422,
            "invalid_record",
        ),
        (RpcUnavailable("routing.act did not answer"), 503, "service_unavailable"),
    ],
)
def test_routing_refusals_become_http_statuses(gateway, answer, status, code):  # noqa: F811
    gateway.app.state.rpc = RecordingRpc(**{"routing.act": answer})
    response = gateway.client.post(ACT, json={"action": "acknowledge"}, headers=gateway.token())
    assert (response.status_code, response.json()["code"]) == (status, code), response.text


def test_the_caller_and_an_action_id_go_to_routing(gateway):  # noqa: F811
    rpc = RecordingRpc(**{"routing.act": DONE})
    gateway.app.state.rpc = rpc
    headers = gateway.token()
    assert (
        gateway.client.post(ACT, json={"action": "acknowledge", "note": "收到"}, headers=headers).status_code
        == 200
    )
    keyed = {**headers, "Idempotency-Key": "key-7"}
    gateway.client.post(ACT, json={"action": "acknowledge"}, headers=keyed)
    gateway.client.post(ACT, json={"action": "acknowledge", "action_id": "body-key"}, headers=keyed)
    [(method, args, _), (_, keyed_args, _), (_, body_args, _)] = rpc.calls
    report_id, actor, request = args
    assert (method, report_id) == ("routing.act", "r-1")
    assert actor == {"username": "jq-lw", "role": "liaison_worker", "org_unit_id": 70}
    assert request["note"] == "收到" and len(request["action_id"]) == 36  # made up per request
    assert keyed_args[2]["action_id"] == "key-7"
    assert body_args[2]["action_id"] == "body-key"


def test_a_replayed_action_says_so(gateway):  # noqa: F811
    gateway.app.state.rpc = RecordingRpc(**{"routing.act": {**DONE, "replayed": True}})
    response = gateway.client.post(ACT, json={"action": "acknowledge"}, headers=gateway.token())
    assert response.status_code == 200 and response.headers["Idempotent-Replayed"] == "true"


def test_stats_pass_the_unit_and_period_and_map_refusals(gateway):  # noqa: F811
    figures = {"collected": 3, "resolved": 1, "by_category": {}, "by_unit": []}
    rpc = RecordingRpc(**{"routing.case_stats": figures})
    gateway.app.state.rpc = rpc
    response = gateway.client.get(
        "/v1/stats/summary?unit=10&from=2026-11-01&to=2026-12-01", headers=gateway.token()
    )
    assert response.status_code == 200 and response.json() == figures
    [(_, args, _)] = rpc.calls
    assert args[1:] == (10, "2026-11-01", "2026-12-01")
    assert gateway.client.get("/v1/stats/summary?unit=x", headers=gateway.token()).status_code == 422
    gateway.app.state.rpc = RecordingRpc(**{"routing.case_stats": {"refused": "not_found", "detail": "no"}})
    assert gateway.client.get("/v1/stats/summary?unit=99", headers=gateway.token()).status_code == 404


def test_case_endpoints_need_a_token(gateway):  # noqa: F811
    assert gateway.client.post(ACT, json={"action": "acknowledge"}).status_code == 401
    assert gateway.client.get("/v1/stats/summary").status_code == 401
    assert gateway.client.get("/v1/cases").status_code == 401


CASE = {
    "state": "routed",
    "category": "illness",
    "urgency": "general",
    "matched": [],
    "transcription": None,
    "transcript": None,
    "timeline": [{"kind": "routed"}],
    "allowed_actions": ["acknowledge", "comment"],
}


def test_a_report_is_read_by_its_reporter_and_by_whom_routing_shows_the_case(gateway):  # noqa: F811
    gateway.app.state.rpc = RecordingRpc(**{"routing.get_case": None})
    created = gateway.client.post("/v1/reports", json={"text": "草场边界纠纷"}, headers=gateway.token())
    path = f"/v1/reports/{created.json()['id']}"
    # Not routed yet: its reporter sees it as received; anyone else finds nothing.
    mine = gateway.client.get(path, headers=gateway.token())
    assert mine.status_code == 200 and mine.json()["status"] == "received"
    assert gateway.client.get(path, headers=gateway.token("jq-lw-2")).status_code == 404

    rpc = RecordingRpc(**{"routing.get_case": CASE})
    gateway.app.state.rpc = rpc
    theirs = gateway.client.get(path, headers=gateway.token("jq-lw-2"))
    assert theirs.status_code == 200
    assert theirs.json()["allowed_actions"] == ["acknowledge", "comment"]
    assert theirs.json()["status"] == "routed"
    [(method, (_, actor), _)] = rpc.calls
    assert (method, actor["username"]) == ("routing.get_case", "jq-lw-2")

    # Routing away: whether another may see it cannot be told, so it is "retry", not a guess.
    gateway.app.state.rpc = RecordingRpc(**{"routing.get_case": RpcUnavailable("routing is away")})
    away = gateway.client.get(path, headers=gateway.token("jq-lw-2"))
    assert away.status_code == 503 and away.headers["Retry-After"]
    own = gateway.client.get(path, headers=gateway.token())
    assert own.status_code == 200 and own.json()["case_lookup"] == "unavailable"


def test_the_case_list_passes_filters_and_adds_where_each_report_was_made(gateway):  # noqa: F811
    gateway.app.state.rpc = RecordingRpc()
    located = gateway.client.post(
        "/v1/reports",
        json={"text": "房屋倒塌", "location": {"lat": 34.15, "lon": 99.9}},
        headers=gateway.token(),
    ).json()["id"]
    plain = gateway.client.post("/v1/reports", json={"text": "牛生病了"}, headers=gateway.token()).json()[
        "id"
    ]
    page = {
        "items": [{"report_id": located, "state": "routed"}, {"report_id": plain, "state": "routed"}],
        "total": 2,
        "page": 1,
        "page_size": 25,
    }
    rpc = RecordingRpc(**{"routing.list_cases": page})
    gateway.app.state.rpc = rpc
    response = gateway.client.get(
        "/v1/cases?unit=10&urgency=urgent&state=routed&state=escalated&open=true&q=倒塌&page=1",
        headers=gateway.token(),
    )
    assert response.status_code == 200, response.text
    assert [item["location"] for item in response.json()["items"]] == [{"lat": 34.15, "lon": 99.9}, None]
    [(method, (actor, filters), _)] = rpc.calls
    assert method == "routing.list_cases" and actor["username"] == "jq-lw"
    assert filters["unit"] == 10 and filters["state"] == ["routed", "escalated"]
    assert (filters["open"], filters["overdue"], filters["mine"], filters["q"]) == (True, None, False, "倒塌")


@pytest.mark.parametrize(
    "query",
    ["state=lost", "urgency=very", "page=0", "page_size=101", "unit=x", "overdue=perhaps", "q=" + "x" * 101],
)
def test_malformed_case_filters_are_422_and_never_reach_routing(gateway, query):  # noqa: F811
    rpc = RecordingRpc(**{"routing.list_cases": {"items": [], "total": 0, "page": 1, "page_size": 25}})
    gateway.app.state.rpc = rpc
    response = gateway.client.get(f"/v1/cases?{query}", headers=gateway.token())
    assert response.status_code == 422, response.text
    assert rpc.calls == []


def test_a_unit_outside_the_callers_area_is_404(gateway):  # noqa: F811
    gateway.app.state.rpc = RecordingRpc(**{"routing.list_cases": {"refused": "not_found", "detail": "no"}})
    assert gateway.client.get("/v1/cases?unit=99", headers=gateway.token()).status_code == 404
