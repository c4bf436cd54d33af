"""``GET /openapi.json`` checked against the real server with schemathesis: every documented
operation, a fixed number of generated requests each (derandomized, so CI is repeatable), and
no 500 and no status, content type, header or body that the description does not allow.

Run more examples by hand with ``SERVAL_SCHEMATHESIS_EXAMPLES=500``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import schemathesis.checks
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from serval import __version__
from serval.testing import RunningServer, run_server

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).parents[2] / "examples" / "models"
MAX_EXAMPLES = int(os.environ.get("SERVAL_SCHEMATHESIS_EXAMPLES", "25"))

# Statuses that are not server errors here: 501 (V1 :classify and :regress), 503 (not ready,
# with Retry-After) and 504 (past the deadline) are part of the contract, each only where the
# description says; a 500 never is for a generated request, since the example models do not
# fail on their own.
EXPECTED_STATUSES = ["2xx", "3xx", "4xx", "501", "503", "504"]
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"not_a_server_error": {"expected-statuses": EXPECTED_STATUSES}}}
)
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]
# Names the example repository serves: generated path parameters are replaced by one of these
# half of the time, so that requests reach the decoders and the models rather than a 404.
KNOWN = {"model": ("regressor", "classifier"), "version": ("1", "2"), "label": ("stable", "canary")}


def _known_names(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    if not path_parameters:
        return st.just(path_parameters)
    return st.fixed_dictionaries(
        {
            key: st.one_of(st.just(value), st.sampled_from(KNOWN[key]))
            if key in KNOWN
            else st.just(value)
            for key, value in path_parameters.items()
        }
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("openapi") / "models"
    shutil.copytree(EXAMPLES, repo)  # load and unload requests change what it serves
    with run_server(repo, grpc=False) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(served: RunningServer) -> Any:
    schema = schemathesis.openapi.from_url(f"{served.http_url}/openapi.json", config=CONFIG)
    schema.hook("flatmap_path_parameters")(_known_names)
    return schema


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms(case: schemathesis.Case, session: requests.Session) -> None:
    case.call_and_validate(session=session, checks=CHECKS, timeout=30)


def _example_path(path: str) -> str:
    for key, names in KNOWN.items():
        path = path.replace(f"{{{key}}}", names[0])
    return path


def test_the_description_is_served(served: RunningServer) -> None:
    document = httpx.get(f"{served.http_url}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert document["info"]["version"] == __version__
    assert "/metrics" in document["paths"]


def test_every_documented_operation_is_routed(served: RunningServer) -> None:
    """A path the router does not know answers 404 or 405, which the description allows for
    some operations: so ask each one directly, with names the repository serves."""
    document = httpx.get(f"{served.http_url}/openapi.json").json()
    with httpx.Client(base_url=served.http_url, timeout=30) as http:
        for path, item in document["paths"].items():
            if "/repository/models/" in path:
                continue  # unload would change what the other tests see; the index is enough
            for method in item.keys() & {"get", "post"}:
                response = http.request(method.upper(), _example_path(path), content=b"{}")
                if path.endswith((":classify", ":regress")):
                    assert response.status_code == 501, (path, response.text)
                    continue
                if path.endswith("/evaluation"):  # routed: the model is known, not monitored
                    assert "is not monitored" in response.json()["error"], response.text
                    continue
                assert response.status_code not in (404, 405), (method, path, response.text)


def test_non_ascii_digits_are_a_400_not_a_500(served: RunningServer) -> None:
    """'²'.isdigit() is true but int('²') fails: a version, header length or timeout of it
    was a 500."""
    infer = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 1, 1]}]}
    with httpx.Client(base_url=served.http_url, timeout=30) as http:
        for path in (
            "/v2/models/regressor/versions/%C2%B2",
            "/v2/models/regressor/versions/²/ready",
        ):
            response = http.get(path)
            assert response.status_code == 400, response.text
        for header in ("timeout", "priority", "inference-header-content-length"):
            response = http.post(
                "/v2/models/regressor/infer", json=infer, headers={header: b"\xb2"}
            )
            assert response.status_code == 400, (header, response.text)
            assert header in response.json()["error"].lower()


def test_openapi_false_leaves_it_out(tmp_path: Path) -> None:
    with run_server(EXAMPLES, "--openapi", "false", grpc=False) as server:
        response = httpx.get(f"{server.http_url}/openapi.json")
        assert response.status_code == 404
        assert response.json() == {"error": "no such endpoint: GET /openapi.json"}
