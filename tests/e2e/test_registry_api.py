"""The household registry through the gateway, on the seeded demo county, on both engines.

Expectations come from the demo tree and the registry's own tables, read directly: which unit a
household is under decides who may see it.
"""

from __future__ import annotations

import csv
import io
import os

import pytest

pytestmark = pytest.mark.e2e

JIANGQIAN = "江千乡"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(4096)


def role_in(role: str, township: str | None = None):
    return lambda a: a["role"] == role and (township is None or a["township"] == township)


@pytest.fixture(scope="module")
def people(sign_in):
    return {
        "worker": sign_in(role_in("liaison_worker", JIANGQIAN)),
        "township": sign_in(role_in("township_command", JIANGQIAN)),
        "other_township": sign_in(lambda a: a["role"] == "township_command" and a["township"] != JIANGQIAN),
        "county": sign_in(role_in("county_command")),
        "department": sign_in(role_in("department")),
    }


def households_under(platform, unit_id: int) -> set[int]:
    rows = platform.query(
        "registry",
        "SELECT h.id FROM households h JOIN org_units u ON u.id = h.liaison_unit_id "
        "WHERE u.path LIKE (SELECT path FROM org_units WHERE id = :unit) || '%'",
        unit=unit_id,
    )
    return {row[0] for row in rows}


def all_pages(session, path: str, **params) -> list[dict]:
    items, page = [], 1
    while True:
        response = session.client.get(path, params={**params, "page": page, "page_size": 100})
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        if len(items) >= body["total"] or not body["items"]:
            return items
        page += 1


def test_each_caller_finds_exactly_the_households_of_their_area(platform, people):
    worker, township = people["worker"], people["township"]
    own = households_under(platform, worker.account["org_unit"])
    assert own
    assert {item["id"] for item in all_pages(worker, "/v1/households")} == own
    # A township browses its villages (a search serves its first 1,000 hits; a village is fewer).
    village = platform.query(
        "registry", "SELECT parent_id FROM org_units WHERE id = :id", id=worker.account["org_unit"]
    )[0][0]
    in_village = all_pages(township, "/v1/households", unit=village)
    assert {item["id"] for item in in_village} == households_under(platform, village)
    whole = all_pages(township, "/v1/households")
    assert {item["id"] for item in whole} <= households_under(platform, township.account["org_unit"])
    foreign = next(iter(households_under(platform, people["other_township"].account["org_unit"])))
    for who in ("worker", "township"):
        response = people[who].client.get(f"/v1/households/{foreign}")
        assert response.status_code == 404, response.text
        assert people[who].client.get(f"/v1/households/{foreign}/history").status_code == 404
    assert people["county"].client.get(f"/v1/households/{foreign}").status_code == 200
    assert people["department"].client.get(f"/v1/households/{foreign}").status_code == 200
    # Asking for another area's subtree is as empty-handed as asking for one that does not exist.
    other_unit = people["other_township"].account["org_unit"]
    assert worker.client.get("/v1/households", params={"unit": other_unit}).status_code == 404
    assert worker.client.get("/v1/households", params={"unit": 2**31 - 1}).status_code == 404
    assert worker.client.get("/v1/registry/summary", params={"unit": other_unit}).status_code == 404


def test_search_by_name_and_flag_answers_ranked_pages(platform, people):
    county = people["county"]
    household_id = min(households_under(platform, people["worker"].account["org_unit"]))
    head = platform.query("registry", "SELECT head_name FROM households WHERE id = :id", id=household_id)[0][
        0
    ]
    body = county.client.get("/v1/households", params={"q": head}).json()
    assert household_id in {item["id"] for item in body["items"]}
    assert set(body) >= {"items", "total", "page"} and body["page"] == 1
    low_income = county.client.get("/v1/households", params={"flag": "low_income", "page_size": 5}).json()
    stored = platform.query("registry", "SELECT count(*) FROM households WHERE flag_low_income")[0][0]
    assert low_income["total"] == stored and len(low_income["items"]) == 5
    for bad in ({"flag": "rich"}, {"page": 0}, {"page_size": 1000}, {"unit": "x"}, {"q": "x" * 101}):
        response = county.client.get("/v1/households", params=bad)
        assert response.status_code == 422, (bad, response.text)


def test_id_numbers_show_in_clear_only_with_a_role_and_a_reason(platform, people):
    household_id = min(households_under(platform, people["worker"].account["org_unit"]))
    masked = people["worker"].client.get(f"/v1/households/{household_id}", params={"reason": "走访"})
    assert masked.status_code == 200 and masked.json()["id_numbers"] == "masked"
    assert masked.headers["ETag"] == f'"{masked.json()["version"]}"'
    numbers = [m["id_number"] for m in masked.json()["members"] if m["id_number"]]
    assert numbers and all("*" * 10 in number for number in numbers)
    township = people["township"]
    assert township.client.get(f"/v1/households/{household_id}").json()["id_numbers"] == "masked"
    clear = township.client.get(f"/v1/households/{household_id}", params={"reason": "低保复核"}).json()
    assert clear["id_numbers"] == "clear" and all(
        "*" not in m["id_number"] for m in clear["members"] if m["id_number"]
    )
    audited = platform.query(
        "registry",
        "SELECT actor, reason FROM audit_log WHERE action = 'read_sensitive' AND entity_id = :id",
        id=household_id,
    )
    assert (township.account["username"], "低保复核") in audited
    trail = people["county"].client.get(
        "/v1/audit", params={"action": "read_sensitive", "actor": township.account["username"]}
    )
    assert trail.status_code == 200 and any(item["reason"] == "低保复核" for item in trail.json()["items"])
    assert people["township"].client.get("/v1/audit").status_code == 403
    bad = people["county"].client.get("/v1/audit", params={"since": "yesterday"})
    assert bad.status_code == 422


def test_a_household_is_registered_changed_and_its_history_kept(platform, people):
    worker = people["worker"]
    unit = worker.account["org_unit"]
    book_no = f"632623-E2E-{os.urandom(3).hex()}"
    created = worker.client.post(
        "/v1/households",
        json={
            "book_no": book_no,
            "liaison_unit_id": unit,
            "head_name": "拉毛草",
            "flags": ["left_behind_elderly"],
        },
    )
    assert created.status_code == 201, created.text
    household = created.json()
    assert created.headers["Location"] == f"/v1/households/{household['id']}"
    again = worker.client.post(
        "/v1/households", json={"book_no": book_no, "liaison_unit_id": unit, "head_name": "x"}
    )
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    elsewhere = worker.client.post(
        "/v1/households",
        json={
            "book_no": book_no + "-2",
            "liaison_unit_id": people["other_township"].account["org_unit"],
            "head_name": "x",
        },
    )
    assert elsewhere.status_code == 422 and elsewhere.json()["errors"][0]["field"] == "liaison_unit_id"

    path = f"/v1/households/{household['id']}"
    changed = worker.client.patch(
        path, json={"address": "冬季牧场"}, headers={"If-Match": created.headers["ETag"]}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["address"] == "冬季牧场" and changed.json()["flags"] == ["left_behind_elderly"]
    stale = worker.client.patch(
        path, json={"address": "夏季牧场"}, headers={"If-Match": created.headers["ETag"]}
    )
    assert stale.status_code == 409
    assert worker.client.patch(path, json={"book_no": "x"}).status_code == 422
    assert worker.client.patch(path, json={"lat": "north"}).status_code == 422
    assert (
        worker.client.patch(path, content=b"[1,2", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    assert worker.client.patch(path, json={"address": "x"}, headers={"If-Match": "v7"}).status_code == 400
    assert people["department"].client.patch(path, json={"address": "x"}).status_code == 403
    history = worker.client.get(f"{path}/history").json()["items"]
    assert {"field": "address", "old_value": None, "new_value": "冬季牧场"}.items() <= next(
        row for row in history if row["field"] == "address"
    ).items()


def test_a_scan_is_uploaded_once_and_opened_with_a_reason(platform, people):
    worker, township = people["worker"], people["township"]
    household_id = min(households_under(platform, worker.account["org_unit"]))
    path = f"/v1/households/{household_id}/documents"
    form = {"kind": "hukou", "number": "632623-JQ-000001"}
    first = worker.client.post(path, data=form, files={"file": ("户口本.jpg", JPEG, "image/jpeg")})
    assert first.status_code == 201, first.text
    document = first.json()
    assert document["file_type"] == "image/jpeg" and document["number"] != form["number"]
    again = worker.client.post(path, data=form, files={"file": ("copy.jpg", JPEG, "image/jpeg")})
    assert again.status_code == 200 and again.json()["id"] == document["id"]

    wrong = worker.client.post(
        path, data=form, files={"file": ("scan.jpg", b"<html>not a scan", "image/jpeg")}
    )
    assert wrong.status_code == 415 and wrong.json()["code"] == "unsupported_media_type"
    huge = worker.client.post(
        path, data=form, files={"file": ("big.jpg", b"\xff\xd8\xff" + bytes(11 << 20), "image/jpeg")}
    )
    assert huge.status_code == 413
    assert (
        worker.client.post(path, data={"kind": "passport"}, files={"file": ("a.jpg", JPEG)}).status_code
        == 422
    )

    file_path = f"/v1/documents/{document['id']}/file"
    assert worker.client.get(file_path, params={"reason": "核对"}).status_code == 403
    assert township.client.get(file_path).json()["code"] == "reason_required"
    assert people["other_township"].client.get(file_path, params={"reason": "核对"}).status_code == 404
    opened = township.client.get(file_path, params={"reason": "户籍核对"})
    assert opened.status_code == 200 and opened.content == JPEG
    assert opened.headers["content-type"] == "image/jpeg" and opened.headers["cache-control"] == "no-store"
    detail = township.client.get(f"/v1/households/{household_id}").json()
    assert document["id"] in {d["id"] for d in detail["documents"]}


def test_a_villages_file_exports_and_imports_back_unchanged(platform, people):
    township = people["township"]
    village = platform.query(
        "registry", "SELECT parent_id FROM org_units WHERE id = :id", id=people["worker"].account["org_unit"]
    )[0][0]
    template = township.client.get("/v1/registry/template")
    assert template.status_code == 200 and template.content[:2] == b"PK"
    exported = township.client.get("/v1/registry/export", params={"unit": village, "format": "csv"})
    assert exported.status_code == 200, exported.text
    assert exported.headers["X-Lianhu-Id-Numbers"] == "masked"
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert rows[0][0] == "户口簿编号"
    assert len({row[0] for row in rows[1:]}) == len(households_under(platform, village))

    before = platform.query("registry", "SELECT count(*), sum(version) FROM households")
    imported = township.client.post(
        "/v1/registry/import", files={"file": ("village.csv", exported.content, "text/csv")}
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["imported"] is True
    assert platform.query("registry", "SELECT count(*), sum(version) FROM households") == before

    broken = exported.content.decode("utf-8-sig").splitlines()
    broken[1] = broken[1].replace(broken[1].split(",")[2], "", 1)  # a row without its head's name
    refused = township.client.post(
        "/v1/registry/import", files={"file": ("bad.csv", "\n".join(broken).encode(), "text/csv")}
    )
    assert refused.status_code == 422 and refused.json()["imported"] is False
    assert {"row", "column", "message_zh", "message_en"} <= set(refused.json()["errors"][0])
    assert platform.query("registry", "SELECT count(*), sum(version) FROM households") == before

    # Households of another township cannot be moved in, nor written through a file, from here.
    other = people["other_township"].client.get("/v1/registry/export", params={"format": "csv"})
    assert other.status_code == 200
    stolen = township.client.post(
        "/v1/registry/import", files={"file": ("other.csv", other.content, "text/csv")}
    )
    assert stolen.status_code == 422
    assert (
        people["worker"]
        .client.post("/v1/registry/import", files={"file": ("v.csv", exported.content, "text/csv")})
        .status_code
        == 403
    )
    assert people["worker"].client.get("/v1/registry/export").status_code == 403


def test_summary_of_an_area_matches_its_households(platform, people):
    township = people["township"]
    summary = township.client.get("/v1/registry/summary").json()
    assert summary["households"] == len(households_under(platform, township.account["org_unit"]))
    worker_summary = people["worker"].client.get("/v1/registry/summary").json()
    assert worker_summary["households"] == len(
        households_under(platform, people["worker"].account["org_unit"])
    )


def test_no_clear_id_number_in_logs_or_metrics(platform, people):
    """After clear reads, edits, imports and exports (the tests above), search what the platform
    writes down for every ID number of the households read in clear."""
    township = people["township"]
    numbers = set()
    for household_id in sorted(households_under(platform, township.account["org_unit"]))[:40]:
        detail = township.client.get(f"/v1/households/{household_id}", params={"reason": "核查日志"}).json()
        numbers |= {m["id_number"] for m in detail["members"] if m["id_number"]}
    assert numbers and not any("*" in number for number in numbers)
    written = "".join(path.read_text(errors="replace") for path in platform.var_dir.glob("*.log"))
    written += township.client.get("/metrics").text
    assert written and not [number for number in numbers if number in written]
