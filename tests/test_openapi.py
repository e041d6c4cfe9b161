"""/openapi.json and /docs: an OpenAPI 3.1 document generated from the route table, valid and byte-identical on
both stacks, and a Swagger UI page whose files the server itself serves (nothing from the network)."""
from __future__ import annotations

import json
import re

from openapi_spec_validator import validate

from drum_compat.shared.routes import PREDICTION_ROUTES, openapi_path, prefixed


def test_the_document_is_valid_openapi_and_the_same_on_both_stacks(stacks_for):
    answer = stacks_for("regression").both("GET", "/openapi.json")  # both() asserts identical bytes
    document = json.loads(answer.body)
    validate(document)
    assert document["openapi"] == "3.1.0"
    predict = document["paths"]["/predict/"]["post"]
    assert set(predict["requestBody"]["content"]) == {"text/csv", "text/mtx", "multipart/form-data"}
    assert {"200", "400", "413", "422", "429", "500", "503", "504"} <= set(predict["responses"])
    assert predict["responses"]["413"]["content"]["application/json"]["schema"]["required"] == ["message"]


def test_every_route_of_the_table_is_described_under_the_prefix(stacks_for):
    document = json.loads(stacks_for("regression", url_prefix="/pfx").both("GET", "/pfx/openapi.json").body)
    described = {(path, method.upper()) for path, operations in document["paths"].items() for method in operations}
    expected = {(openapi_path(prefixed(route.rule, "/pfx"))[0], method) for route in PREDICTION_ROUTES for method in route.methods
                if route.endpoint != "docs_asset"}
    assert described == expected
    ids = [operation["operationId"] for operations in document["paths"].values() for operation in operations.values()]
    assert len(ids) == len(set(ids))


def test_the_page_loads_only_files_the_server_serves(stacks_for):
    stacks = stacks_for("regression")
    page = stacks.both("GET", "/docs")
    assert page.header("content-type") == "text/html; charset=utf-8"
    referenced = re.findall(rb'(?:href|src|url: )"([^"]+)"', page.body)
    assert referenced and not any(b"//" in reference for reference in referenced)  # relative: no other host
    for reference in referenced:
        asset = stacks.both("GET", "/" + reference.decode())
        assert asset.status == 200 and len(asset.body) > 1000, reference
    assert stacks.both("GET", "/docs/swagger-ui-bundle.js").header("content-type").startswith("text/javascript")
    assert stacks.both("GET", "/docs/swagger-ui.js").status == 404  # only the two files the page needs
