"""docs/api.md is generated from the apps' OpenAPI schemas and must be up to date."""

from pathlib import Path

from service.apidoc import openapi_schemas, render


def test_committed_api_doc_is_current():
    committed = (Path(__file__).parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    assert committed == render(), "run: python -m service.apidoc > docs/api.md"


def test_every_route_is_documented():
    text = render()
    for schema in openapi_schemas().values():
        for path in schema["paths"]:
            assert f"`{path}`" in text
