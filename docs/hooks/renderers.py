"""Markdown for the pages' generated sections, each a pure function of plain data: the README
as the site's home page, the configuration reference from gateway.yaml's JSON Schema, the
error table from the error tree, the API reference from the OpenAPI document."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Schema = Mapping[str, Any]
# Deeper than any section of gateway.yaml: a schema that refers to itself stops here.
MAX_DEPTH = 8


def readme_as_home(readme: str) -> str:
    """The README for the site: its links into docs/ made relative to the site, and its own
    contents list dropped (the site has a table of contents of its own)."""
    text = re.sub(r"\n## Contents\n.*?(?=\n## )", "\n", readme, flags=re.DOTALL)
    return re.sub(r"\]\(docs/", "](", text)


# A code span: a run of backticks, what it holds, the same run again.
CODE_SPAN = re.compile(r"(`+).+?\1")


def cell(text: str) -> str:
    """Text that stays in one cell of a Markdown table (a list in it, one item a line). A `|`
    is escaped outside code spans only: inside one the table splits on none, and would show
    the backslash."""
    text = re.sub(r"\n\s*[-*] ", "<br>- ", text.strip())
    text = re.sub(r"\s+", " ", text).strip()
    kept, at = [], 0
    for span in CODE_SPAN.finditer(text):
        kept += [text[at : span.start()].replace("|", "\\|"), span.group(0)]
        at = span.end()
    return "".join([*kept, text[at:].replace("|", "\\|")])


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    names = list(header)
    lines = ["| " + " | ".join(names) + " |", "|" + " --- |" * len(names)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def code(value: Any) -> str:
    """A value as the YAML or JSON a reader would write, in a code span."""
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


# -- JSON Schema ----------------------------------------------------------------------------


def resolve(node: Schema, root: Schema) -> Schema:
    """The node, or what its local `$ref` (`#/$defs/Name`, `#/components/...`) points at, with
    the node's own keys (a description, a default) over the target's."""
    ref = node.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return node
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    merged = dict(resolve(target, root))
    merged.update({key: value for key, value in node.items() if key != "$ref"})
    return merged


def branches(node: Schema, root: Schema) -> list[Schema]:
    """The alternatives a value may take (anyOf / oneOf), resolved; the node alone when it has
    properties of its own (then anyOf / oneOf only constrain them: one of secret_env,
    secret_file, secret)."""
    options = node.get("anyOf") or node.get("oneOf")
    if not options or "properties" in node:
        return [node]
    return [resolve(option, root) for option in options]


def without_spellings(node: Any, root: Schema) -> Any:
    """The schema as a reader writes the file: each value's alternatives less those that only
    spell another (see `spelling`)."""
    if isinstance(node, list):
        return [without_spellings(item, root) for item in node]
    if not isinstance(node, dict):
        return node
    copy = {key: without_spellings(value, root) for key, value in node.items()}
    for key in ("anyOf", "oneOf"):
        options = copy.get(key)
        if isinstance(options, list) and "properties" not in copy:
            resolved = [resolve(option, root) for option in options]
            kept = [
                option
                for option, seen in zip(options, resolved, strict=True)
                if not spelling(seen, resolved)
            ]
            copy[key] = kept or options
    return copy


def spelling(option: Schema, alternatives: list[Schema]) -> bool:
    """An alternative that only spells another: a `${VAR}` placeholder (the page says once that
    any value may be one), a string pattern beside a number or boolean (YAML's `1_000`,
    `yes`), which a reader writes as the number or boolean, or the integers 0 and 1 beside a
    boolean (which they spell)."""
    if kinds(option) == {"integer"} and (option.get("minimum"), option.get("maximum")) == (0, 1):
        return any("boolean" in kinds(other) for other in alternatives)
    pattern = option.get("pattern")
    if kinds(option) != {"string"} or not isinstance(pattern, str):
        return False
    scalars = {"integer", "number", "boolean"}
    return "\\$\\{" in pattern or any(kinds(other) & scalars for other in alternatives)


def kinds(node: Schema) -> set[str]:
    """The JSON types a node names (`type` is a name or a list of them)."""
    kind = node.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def type_name(node: Schema, root: Schema) -> str:
    """A short name of what a value may be: `integer`, `"memory" or "redis"`, `list of string`."""
    node = resolve(node, root)
    if "const" in node:
        return code(node["const"])
    if "enum" in node:
        # The same word twice when a value may be written as text or as a number ("1" or 1).
        return " or ".join(dict.fromkeys(code(value) for value in node["enum"]))
    if "anyOf" in node or "oneOf" in node:
        names = [type_name(option, root) for option in branches(node, root)]
        return " or ".join(dict.fromkeys(name for name in names if name != "null"))
    kind = node.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(str(name) for name in kind if name != "null")
    if kind == "array":
        return "list of " + type_name(node.get("items", {}), root)
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return "map of " + type_name(node["additionalProperties"], root)
    if kind == "string" and "format" in node:
        return f"string ({node['format']})"
    return str(kind)


def bounds(node: Schema, root: Schema) -> str:
    """The limits a value must keep, in words, from every alternative that has some."""
    said = []
    for option in branches(resolve(node, root), root):
        for key, words in (
            ("minimum", "at least {}"),
            ("exclusiveMinimum", "above {}"),
            ("maximum", "at most {}"),
            ("exclusiveMaximum", "below {}"),
            ("minLength", "at least {} characters"),
            ("maxLength", "at most {} characters"),
            ("minItems", "at least {} items"),
        ):
            if key in option:
                value = option[key]
                text = words.format(value)
                said.append(text[:-1] if value == 1 and text.endswith("s") else text)
    return "; ".join(dict.fromkeys(said))


@dataclass(frozen=True)
class Option:
    """One key of the configuration file, as the reference lists it."""

    key: str
    type: str
    default: str
    description: str


def entries(node: Schema, root: Schema) -> list[Schema]:
    """What each entry of a map of named sections is (`apps`: patternProperties; a plain dict:
    additionalProperties), when it is a section itself."""
    found = [resolve(child, root) for child in node.get("patternProperties", {}).values()]
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):  # False closes a section; a schema describes its entries
        found.append(resolve(extra, root))
    return [entry for entry in found if "properties" in entry]


def objects(node: Schema, root: Schema) -> list[Schema]:
    """The object shapes among a node's alternatives (a section that may also be null)."""
    return [
        option
        for option in branches(resolve(node, root), root)
        if "properties" in option or entries(option, root)
    ]


def options(schema: Schema) -> list[Option]:
    """Every key of the file the schema describes, depth first in the schema's order; a map of
    named entries (`apps`, `callers`) as `apps.<name>`."""
    found: list[Option] = []

    def walk(node: Schema, prefix: str, inherited: Mapping[str, Any], depth: int) -> None:
        for shape in objects(node, schema):
            for name, child in shape.get("properties", {}).items():
                visit(child, prefix + name, inherited.get(name, _NONE), depth)
            for entry in entries(shape, schema):
                # The name's rule is for the map's own description to give.
                visit(entry, prefix + "<name>", _NONE, depth)

    def visit(child: Schema, key: str, inherited: Any, depth: int) -> None:
        node = resolve(child, schema)
        default = node.get("default", inherited)
        nested = objects(node, schema)
        # A section that may be null keeps its description on the object it may be.
        shapes = [shape.get("description", "") for shape in nested[:1]]
        description = node.get("description") or "".join(shapes)
        limits = bounds(node, schema)
        if limits:
            description = f"{description} ({limits})" if description else limits
        if not nested or description:
            hidden = default is _NONE or default is None or isinstance(default, dict)
            shown = "" if hidden else code(default)
            kind = "section" if nested else type_name(node, schema)
            found.append(Option(key, kind, shown, description))
        if nested and depth < MAX_DEPTH:
            walk(node, key + ".", default if isinstance(default, dict) else {}, depth + 1)

    walk(schema, "", {}, 0)
    return found


_NONE: Any = object()


def config_reference(schema: Schema, level: int = 3) -> str:
    """Every option of gateway.yaml: a heading for each top-level key (so that the page's
    contents list them), its description, and a table of it or of the keys under it."""
    plain = without_spellings(schema, schema)
    sections: dict[str, list[Option]] = {}
    for item in options(plain):
        sections.setdefault(item.key.split(".", 1)[0], []).append(item)
    parts = []
    for name, items in sections.items():
        parts.append(f"{'#' * level} {code(name)}\n")
        if items[0].key == name and items[0].type == "section":
            if items[0].description:
                parts.append(f"{items[0].description}\n")
            items = items[1:]
        rows = [(code(item.key), item.type, item.default, item.description) for item in items]
        if rows:
            parts.append(table(["key", "type", "default", "meaning"], rows))
    return "\n".join(parts)


# -- the error tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCode:
    """One error the gateway answers with: its place in the tree and what it says."""

    status: int
    code: str
    summary: str
    message: str
    parent: str | None


def error_reference(errors: Iterable[ErrorCode]) -> str:
    """The table of every error code, in the tree's order, each with its parent's code."""
    rows = [
        (
            str(error.status),
            code(error.code),
            error.summary + (f" (a kind of {code(error.parent)})" if error.parent else ""),
            code(error.message),
        )
        for error in errors
    ]
    return table(["HTTP", "`error`", "what it means", "message when nothing more is said"], rows)


# -- OpenAPI 3.1 ----------------------------------------------------------------------------

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Where the answers the operations share (`#/components/responses/...`) are listed once.
SHARED_ANSWERS = "shared-answers"


def api_reference(document: Schema, level: int = 3) -> str:
    """Each operation of an OpenAPI 3.1 document under a heading of its own: its parameters,
    bodies, answers and links; then the answers several share (the gateway's refusals), once."""
    info = document.get("info", {})
    parts = [f"{info.get('description', '')}\n" if info.get("description") else ""]
    if info.get("version"):
        parts.append(
            f"Version {code(info['version'])} of the description, OpenAPI "
            f"{code(document.get('openapi', '3.1'))}.\n"
        )
    shared_answers: dict[str, tuple[str, Schema]] = {}
    for path, item in document.get("paths", {}).items():
        item = resolve(item, document)
        shared = list(item.get("parameters", []))
        for method in METHODS:
            if method in item:
                op = item[method]
                parts.append(operation(method, path, op, shared, document, level))
                for status, answer in op.get("responses", {}).items():
                    if is_shared(answer):
                        shared_answers.setdefault(answer["$ref"], (str(status), answer))
    if shared_answers:
        parts.append(f"{'#' * level} Answers shared by the endpoints {{#{SHARED_ANSWERS}}}\n")
        ordered = sorted(shared_answers.values(), key=lambda pair: pair[0])
        parts.append(answers_table(ordered, document))
    return "\n".join(part for part in parts if part)


def is_shared(answer: Any) -> bool:
    """An answer that refers to one the document's components hold for several operations."""
    ref = answer.get("$ref") if isinstance(answer, Mapping) else None
    return isinstance(ref, str) and ref.startswith("#/components/responses/")


def answers_table(answers: Iterable[tuple[str, Any]], root: Schema) -> str:
    rows = []
    for status, answer in answers:
        answer = resolve(answer, root)
        headers = ", ".join(code(name) for name in answer.get("headers", {}))
        media = ", ".join(code(name) for name in answer.get("content", {}))
        rows.append((status, answer.get("description", ""), media, headers))
    return table(["status", "answer", "content", "headers"], rows)


def operation(
    method: str, path: str, op: Schema, shared: list[Any], root: Schema, level: int = 3
) -> str:
    # The operationId first: the contents list then tells paths apart that differ at the end.
    named = f"{code(op['operationId'])}: " if op.get("operationId") else ""
    lines = [f"{'#' * level} {named}{method.upper()} `{path}`\n"]
    for key in ("summary", "description"):
        if op.get(key):
            lines.append(f"{op[key]}\n")
    parameters = [resolve(parameter, root) for parameter in shared + list(op.get("parameters", []))]
    if parameters:
        rows = [
            (
                code(parameter.get("name", "")),
                parameter.get("in", ""),
                type_name(parameter.get("schema", {}), root),
                "yes" if parameter.get("required") else "",
                parameter.get("description", ""),
            )
            for parameter in parameters
        ]
        lines.append(table(["parameter", "in", "type", "required", "meaning"], rows))
    body = op.get("requestBody")
    if body:
        body = resolve(body, root)
        # One table for the media types that take the same fields (form, JSON, multipart).
        shapes: dict[str, list[str]] = {}
        for media, content in body.get("content", {}).items():
            shapes.setdefault(json.dumps(content.get("schema", {}), sort_keys=True), []).append(
                media
            )
        for shape, media_types in shapes.items():
            named = " or ".join(code(media) for media in media_types)
            required = " (required)" if body.get("required") else ""
            lines.append(f"Body as {named}{required}:\n")
            lines.append(fields(json.loads(shape), root))
    answers = op.get("responses", {})
    own = [(str(status), answer) for status, answer in answers.items() if not is_shared(answer)]
    if own:
        lines.append(answers_table(own, root))
    common = [str(status) for status, answer in answers.items() if is_shared(answer)]
    if common:
        statuses = ", ".join(common)
        lines.append(
            f"Also {statuses}: see [Answers shared by the endpoints](#{SHARED_ANSWERS}).\n"
        )
    links = [
        (name, resolve(link, root))
        for answer in answers.values()
        for name, link in resolve(answer, root).get("links", {}).items()
    ]
    if links:
        lines.append("Links to the next calls:\n")
        lines += [link_line(name, link) for name, link in links]
        lines.append("")
    return "\n".join(lines)


def fields(schema: Schema, root: Schema) -> str:
    """A body's fields as a table, or its type when it has no named fields."""
    node = resolve(schema, root)
    properties = node.get("properties", {})
    if not properties:
        return f"{type_name(node, root)}\n"
    required = set(node.get("required", []))
    rows = [
        (
            code(name),
            type_name(field, root),
            "yes" if name in required else "",
            resolve(field, root).get("description") or facts(field, root),
        )
        for name, field in properties.items()
    ]
    return table(["field", "type", "required", "meaning"], rows)


def facts(node: Schema, root: Schema) -> str:
    """What a schema with no description says of a value: its values, pattern and bounds."""
    node = resolve(node, root)
    said = []
    enums = [option["enum"] for option in branches(node, root) if "enum" in option]
    for values in enums:
        listed = ", ".join(dict.fromkeys(code(value) for value in values))
        said.append(f"only {listed}" if len(values) == 1 else f"one of {listed}")
    for option in branches(node, root):
        if isinstance(option.get("pattern"), str):
            said.append(f"matches {code(option['pattern'])}")
    limits = bounds(node, root)
    # A length bound says nothing more of a value from a list.
    if limits and not (enums and "character" in limits):
        said.append(limits)
    return "; ".join(dict.fromkeys(said))


def link_line(name: str, link: Schema) -> str:
    target = link.get("operationId") or link.get("operationRef", "")
    given = ", ".join(
        f"{code(key)} from {code(value)}" for key, value in link.get("parameters", {}).items()
    )
    said = f": {link['description']}" if link.get("description") else ""
    return f"- {code(name)} → {code(target)}" + (f" ({given})" if given else "") + said
