"""The Markdown the site's hook generates: the README as home page, the configuration
reference from a JSON Schema, the error table from the error tree, the API reference from an
OpenAPI 3.1 document."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway.config.schema import FileConfig
from gateway.core.errors import GatewayError
from tests.docs.hooks import generated, renderers
from tests.docs.pages import DOCS, REPO, page, section


def cells(line: str) -> list[str]:
    """A table row's cells, split as the site's Markdown splits them: at a `|` neither escaped
    nor in a code span."""
    spans: list[str] = []

    def keep(span: re.Match[str]) -> str:
        spans.append(span.group(0))
        return f"\0{len(spans) - 1}\0"

    masked = renderers.CODE_SPAN.sub(keep, line)
    split = re.split(r"(?<!\\)\|", masked)[1:-1]
    return [
        re.sub(r"\0(\d+)\0", lambda at: spans[int(at.group(1))], cell).strip() for cell in split
    ]


def rows(markdown: str) -> list[list[str]]:
    """The body rows of every table in the Markdown, as their cells."""
    found = []
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            found.append(cells(line))
    return [row for row in found if row[0] not in ("key", "HTTP", "parameter", "field", "status")]


# -- the README as the home page -------------------------------------------------------------


def test_the_home_page_is_the_readme_with_its_links_made_relative_to_the_site() -> None:
    readme = (
        "# x\n\n## Contents\n\n- [A](#a)\n\n## A\n\nSee [Security](docs/security.md#callers).\n"
    )
    home = renderers.readme_as_home(readme)
    assert "Contents" not in home
    assert "See [Security](security.md#callers)." in home


def test_the_real_readme_keeps_its_sections_on_the_home_page() -> None:
    home = renderers.readme_as_home(page("README.md"))
    assert "](docs/" not in home
    assert "## Try it: a mini app's life, with curl" in home


# -- the configuration reference --------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "listen": {"$ref": "#/$defs/Listen", "default": {"host": "127.0.0.1", "port": 8080}},
        "apps": {
            "type": "object",
            "description": "The apps, by name.",
            "patternProperties": {"^[a-z]+$": {"$ref": "#/$defs/App"}},
        },
        "admin": {"anyOf": [{"$ref": "#/$defs/Listen"}, {"type": "null"}], "default": None},
        "format": {"anyOf": [{"enum": ["json", "text"]}, {"type": "null"}], "default": None},
        "retries": {
            "type": "object",
            "properties": {
                "endpoints": {"type": "object", "additionalProperties": {"$ref": "#/$defs/App"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    },
    "$defs": {
        "Listen": {
            "type": "object",
            "description": "A listener.",
            "properties": {
                "host": {"type": "string", "description": "Address | name."},
                "port": {"type": "integer", "minimum": 0, "maximum": 65535},
            },
        },
        "App": {
            "type": "object",
            "properties": {"appid": {"type": "string", "minLength": 1}},
            "required": ["appid"],
        },
    },
}


def test_every_key_is_listed_with_its_type_default_and_bounds() -> None:
    table = {row[0]: row[1:] for row in rows(renderers.config_reference(SCHEMA))}
    assert table == {
        "`listen.host`": ["string", "`127.0.0.1`", "Address \\| name."],
        "`listen.port`": ["integer", "`8080`", "at least 0; at most 65535"],
        "`apps.<name>.appid`": ["string", "", "at least 1 character"],
        "`admin.host`": ["string", "", "Address \\| name."],
        "`admin.port`": ["integer", "", "at least 0; at most 65535"],
        "`format`": ["`json` or `text`", "", ""],
        "`retries.endpoints.<name>.appid`": ["string", "", "at least 1 character"],
        "`retries.labels`": ["map of string", "", ""],
    }


def test_each_top_level_key_has_a_heading_and_a_section_its_description() -> None:
    markdown = renderers.config_reference(SCHEMA)
    headings = re.findall(r"^### (.+)$", markdown, flags=re.MULTILINE)
    assert headings == ["`listen`", "`apps`", "`admin`", "`format`", "`retries`"]
    listen = markdown[markdown.index("### `listen`") : markdown.index("### `apps`")]
    assert "\nA listener.\n" in listen
    assert "| `listen.host` |" in listen
    # A key of its own, not a section: its row under its heading.
    assert "### `format`\n\n| key | type | default | meaning |" in markdown


def test_the_real_reference_has_a_heading_for_every_top_level_key() -> None:
    markdown = renderers.config_reference(FileConfig.model_json_schema())
    headings = re.findall(r"^### `(.+)`$", markdown, flags=re.MULTILINE)
    assert headings == list(FileConfig.model_fields)


def test_a_boolean_is_a_boolean_whatever_yaml_spells_it_with() -> None:
    flag = {
        "default": True,
        "description": "On or off.",
        "anyOf": [
            {"type": "boolean"},
            {"type": "integer", "minimum": 0, "maximum": 1},
            {"type": "string", "pattern": "^([yY][eE][sS]|[nN][oO]|1|0)$"},
        ],
    }
    # 0 and 1 beside no boolean are a number like any other.
    level = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 1}, {"type": "null"}]}
    schema = {"properties": {"flag": flag, "level": level}}
    assert rows(renderers.config_reference(schema)) == [
        ["`flag`", "boolean", "`true`", "On or off."],
        ["`level`", "integer", "", "at least 0; at most 1"],
    ]


def test_the_real_reference_shows_booleans_as_booleans() -> None:
    table = {
        row[0]: row[1:] for row in rows(renderers.config_reference(FileConfig.model_json_schema()))
    }
    assert table["`sandbox.explain`"][:2] == ["boolean", "`true`"]
    assert table["`strict_endpoints`"][0] == "boolean"
    assert "at most 1" not in table["`strict_endpoints`"][2]


def test_a_pipe_is_escaped_in_a_cell_but_not_in_its_code_spans() -> None:
    assert renderers.cell("a | b, `x|y` and ``z|`w` ``") == "a \\| b, `x|y` and ``z|`w` ``"


PLACEHOLDER = {"type": "string", "pattern": r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}"}


def test_a_placeholder_and_the_yaml_spellings_of_a_number_are_not_listed_as_types() -> None:
    port = {
        "default": 8080,
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": 65535},
            {"type": ["string"], "pattern": r"^\s*[+-]?[0-9]+\s*$"},
            {"type": ["integer", "null"]},
            {"$ref": "#/$defs/Placeholder"},
        ],
    }
    url = {
        "anyOf": [{"enum": ["sandbox"]}, {"type": "string", "pattern": "^https?://"}, PLACEHOLDER]
    }
    schema = {"properties": {"port": port, "url": url}, "$defs": {"Placeholder": PLACEHOLDER}}
    assert rows(renderers.config_reference(schema)) == [
        ["`port`", "integer", "`8080`", "at least 0; at most 65535"],
        ["`url`", "`sandbox` or string", "", ""],
    ]


def test_a_section_whose_keys_are_constrained_together_keeps_its_keys() -> None:
    app = {
        "type": "object",
        "properties": {"secret_env": {"type": "string"}, "secret_file": {"type": "string"}},
        "oneOf": [
            {"required": ["secret_env"], "properties": {"secret_env": {"not": {"type": "null"}}}},
            {"required": ["secret_file"], "properties": {"secret_file": {"not": {"type": "null"}}}},
        ],
    }
    schema = {"properties": {"app": app}}
    keys = [row[0] for row in rows(renderers.config_reference(schema))]
    assert keys == ["`app.secret_env`", "`app.secret_file`"]


def test_every_section_of_the_real_schema_is_in_the_reference() -> None:
    listed = {
        row[0].strip("`")
        for row in rows(renderers.config_reference(FileConfig.model_json_schema()))
    }
    keys = {key.split(".")[0] for key in listed}
    assert keys == set(FileConfig.model_fields)
    assert {"listen.port", "apps.<name>.appid", "callers.<name>.allow"} <= listed


def test_a_schema_that_refers_to_itself_ends() -> None:
    loop = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "description": "A node.",
                "properties": {"next": {"$ref": "#/$defs/Node"}},
            }
        },
    }
    keys = [row[0] for row in rows(renderers.config_reference(loop))]
    assert keys
    assert len(keys) <= renderers.MAX_DEPTH + 1


# -- the errors -------------------------------------------------------------------------------


def every_error(parent: type[GatewayError] = GatewayError) -> list[type[GatewayError]]:
    found = []
    for error in parent.__subclasses__():
        found += [error, *every_error(error)]
    return found


def test_the_error_table_has_every_code_of_the_tree_once_with_its_status() -> None:
    table = rows(renderers.error_reference(generated.error_codes()))
    assert [(row[0], row[1]) for row in table] == [
        (str(error.status), f"`{error.code}`") for error in every_error()
    ]


def test_a_value_with_a_backtick_stays_one_code_span() -> None:
    assert renderers.code("say `hi`") == "`` say `hi` ``"
    assert renderers.code(8080) == "`8080`"


def test_an_error_row_names_its_parent_and_its_message() -> None:
    error = renderers.ErrorCode(404, "unknown_app", "No such app.", "unknown app", "not_found")
    [row] = rows(renderers.error_reference([error]))
    assert row == ["404", "`unknown_app`", "No such app. (a kind of `not_found`)", "`unknown app`"]


def test_every_code_the_errors_page_describes_is_in_the_tree() -> None:
    prose = section(page("errors.md"), "# Errors")
    described = set(re.findall(r"^\| \d{3} \| `([a-z_]+)`(?: / `([a-z_]+)`)?", prose, re.MULTILINE))
    codes = {code for pair in described for code in pair if code}
    assert codes
    assert codes - {error.code for error in every_error()} == set()


# -- the API reference ------------------------------------------------------------------------

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "gw", "version": "1.2.3", "description": "Calls, unsigned."},
    "paths": {
        "/neuopenapi/pay/transactions/trade": {
            "post": {
                "operationId": "trade",
                "summary": "Create a trade",
                "parameters": [{"$ref": "#/components/parameters/App"}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {"$ref": "#/components/schemas/Trade"}
                        },
                        "application/json": {"schema": {"$ref": "#/components/schemas/Trade"}},
                    },
                },
                "responses": {
                    "200": {
                        "description": "The platform's envelope.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                        "headers": {"X-Request-Id": {"schema": {"type": "string"}}},
                        "links": {
                            "detail": {
                                "operationId": "tradedetail",
                                "parameters": {"tradeNo": "$response.body#/response/tradeNo"},
                            }
                        },
                    },
                    "400": {"$ref": "#/components/responses/Refused"},
                },
            }
        },
        "/neuopenapi/pay/transactions/tradedetail": {
            "get": {
                "operationId": "tradedetail",
                "parameters": [
                    {
                        "name": "tradeNo",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                ],
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
    "components": {
        "parameters": {"App": {"name": "X-Neu-App", "in": "header", "schema": {"type": "string"}}},
        "schemas": {
            "Trade": {
                "type": "object",
                "required": ["amount"],
                "properties": {
                    "amount": {"type": "integer", "description": "In cents."},
                    "currency": {"enum": ["SAR", "USD"]},
                },
            }
        },
        "responses": {
            "Refused": {"description": "The gateway's own refusal:\n- `bad_request`: malformed"}
        },
    },
}


def test_a_json_field_keeps_every_type_it_may_be() -> None:
    openids = {"anyOf": [{"type": "string", "pattern": "^[^,]+$"}, {"type": "number"}]}
    assert renderers.type_name(openids, {}) == "string or number"
    assert renderers.type_name({"enum": ["1", 1]}, {}) == "`1`"


def test_each_operation_gets_its_heading_parameters_body_answers_and_links() -> None:
    markdown = renderers.api_reference(DOCUMENT)
    assert markdown.index(
        "### `trade`: POST `/neuopenapi/pay/transactions/trade`"
    ) < markdown.index("### `tradedetail`: GET `/neuopenapi/pay/transactions/tradedetail`")
    assert "Calls, unsigned." in markdown
    assert "`1.2.3`" in markdown
    table = rows(markdown)
    assert ["`X-Neu-App`", "header", "string", "", ""] in table
    assert ["`amount`", "integer", "yes", "In cents."] in table
    assert ["`currency`", "`SAR` or `USD`", "", "one of `SAR`, `USD`"] in table
    assert ["`tradeNo`", "query", "string", "yes", ""] in table
    assert ["200", "The platform's envelope.", "`application/json`", "`X-Request-Id`"] in table
    assert ["400", "The gateway's own refusal:<br>- `bad_request`: malformed", "", ""] in table
    assert (
        "- `detail` → `tradedetail` (`tradeNo` from `$response.body#/response/tradeNo`)" in markdown
    )


def test_answers_several_operations_share_are_listed_once_and_linked_from_each() -> None:
    document = {
        "paths": {
            f"/{name}": {
                "get": {
                    "operationId": name,
                    "responses": {
                        "200": {"description": f"{name}'s own"},
                        "400": {"$ref": "#/components/responses/Refused"},
                        "503": {"$ref": "#/components/responses/Busy"},
                    },
                }
            }
            for name in ("a", "b")
        },
        "components": {
            "responses": {
                "Refused": {"description": "Refused."},
                "Busy": {"description": "Busy.", "headers": {"Retry-After": {}}},
            }
        },
    }
    markdown = renderers.api_reference(document)
    assert markdown.count("Refused.") == markdown.count("Busy.") == 1
    link = "Also 400, 503: see [Answers shared by the endpoints](#shared-answers)."
    assert markdown.count(link) == 2
    shared = markdown[markdown.index("### Answers shared by the endpoints {#shared-answers}") :]
    assert rows(shared) == [["400", "Refused.", "", ""], ["503", "Busy.", "", "`Retry-After`"]]
    assert ["200", "a's own", "", ""] in rows(markdown)


def test_a_field_with_no_description_says_what_its_schema_does() -> None:
    schema = {
        "type": "object",
        "required": ["grant", "scope"],
        "properties": {
            "grant": {"type": "string", "minLength": 1, "enum": ["authorization_code"]},
            "scope": {"type": "string", "minLength": 1, "pattern": "^(a|b)$"},
            "code": {"anyOf": [{"type": "string", "minLength": 1}, {"type": "number"}]},
            "told": {"type": "string", "minLength": 1, "description": "Said."},
        },
    }
    assert rows(renderers.fields(schema, {})) == [
        ["`grant`", "`authorization_code`", "yes", "only `authorization_code`"],
        ["`scope`", "string", "yes", "matches `^(a|b)$`; at least 1 character"],
        ["`code`", "string or number", "", "at least 1 character"],
        ["`told`", "string", "", "Said."],
    ]


def test_the_real_api_reference_names_each_operation_and_lists_the_refusals_once() -> None:
    markdown = generated.api()
    headings = re.findall(r"^### (.+)$", markdown, flags=re.MULTILINE)
    assert "`trade`: POST `/neuopenapi/pay/transactions/trade`" in headings
    assert "`tradeClose`: POST `/neuopenapi/pay/transactions/tradeclose`" in headings
    assert len(headings) == len(set(headings))
    assert markdown.count("`upstream_timeout`") == 1
    assert "|  |" not in "".join(
        line for line in markdown.splitlines() if line.startswith("| `grantType`")
    )


def test_media_types_that_take_the_same_fields_share_one_table() -> None:
    markdown = renderers.api_reference(DOCUMENT)
    assert (
        "Body as `application/x-www-form-urlencoded` or `application/json` (required):" in markdown
    )
    assert markdown.count("| field | type | required | meaning |") == 1


# -- the hook ---------------------------------------------------------------------------------


def test_the_hook_fills_each_marker_and_refuses_an_unknown_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(generated.SECTIONS, "errors", lambda: "THE TABLE")
    assert generated.on_page_markdown("# E\n\n<!-- generated: errors -->\n") == "# E\n\nTHE TABLE\n"
    with pytest.raises(ValueError, match="no generated section 'nope'"):
        generated.on_page_markdown("<!-- generated: nope -->")


def test_the_hook_replaces_what_a_marker_holds_for_readers_of_the_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(generated.SECTIONS, "errors", lambda: "THE TABLE")
    monkeypatch.setitem(generated.SECTIONS, "api", lambda: "THE API")
    markdown = (
        "# E\n\n<!-- generated: errors -->\nIn the repository, see the code.\n"
        "<!-- /generated -->\n\nText.\n\n<!-- generated: api -->\n\nEnd.\n"
    )
    assert generated.on_page_markdown(markdown) == "# E\n\nTHE TABLE\n\nText.\n\nTHE API\n\nEnd.\n"


def test_every_page_with_a_generated_section_says_what_goes_there() -> None:
    for name in ("index.md", "errors.md", "configuration.md", "api.md"):
        text = page(name)
        marker = generated.MARKER.search(text)
        assert marker
        before = text[: marker.start()].rstrip().rsplit("\n\n", 1)[-1]
        said = marker.group(0) + before
        assert "site is built" in " ".join(said.split()), name


def test_every_marker_in_the_pages_names_a_section_the_hook_has() -> None:
    markers = {
        name
        for name in ("index.md", "errors.md", "configuration.md", "api.md")
        for name in generated.MARKER.findall(page(name))
    }
    assert markers == set(generated.SECTIONS)


# -- the site's stylesheet ----------------------------------------------------------------------


def test_the_site_keeps_the_names_of_a_tables_first_column_whole() -> None:
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    [stylesheet] = re.findall(r"^extra_css:\n  - (\S+)$", config, flags=re.MULTILINE)
    css = " ".join((DOCS / stylesheet).read_text(encoding="utf-8").split())
    assert "td:first-child code { white-space: nowrap;" in css
