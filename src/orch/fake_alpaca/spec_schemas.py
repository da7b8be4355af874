"""The response schemas of the Alpaca endpoints the fake serves, copied out of Alpaca's OpenAPI specs.

Tests must not read the specifications from outside the project, so `spec_schemas.json` (beside this
file) carries what they need: for every operation the fake serves, the JSON schema of each documented
response, with the referenced components bundled under `$defs`. Regenerate it after changing the
served surface or when Alpaca publishes new specs:

    python -m orch.fake_alpaca.spec_schemas /path/to/alpaca-openapi

Sources: the Trading API spec (MIT) and the Market Data API spec (CC-BY-SA-4.0), both as distributed
in the `alpaca-mcp-server` 2.4.0 wheel; the generated file says so too, as their licences ask.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orch.fake_alpaca.core import ServedResponse

SCHEMAS_FILE = Path(__file__).with_name("spec_schemas.json")

# (api, method, path template as the spec spells it). One home for "what the fake serves":
# the routes in trading_api.py / data_api.py must match these templates.
SERVED_OPERATIONS: tuple[tuple[str, str, str], ...] = (
    ("trading", "GET", "/v2/account"),
    ("trading", "GET", "/v2/clock"),
    ("trading", "GET", "/v2/calendar"),
    ("trading", "GET", "/v2/assets"),
    ("trading", "GET", "/v2/assets/{symbol_or_asset_id}"),
    ("trading", "POST", "/v2/orders"),
    ("trading", "GET", "/v2/orders"),
    ("trading", "DELETE", "/v2/orders"),
    ("trading", "GET", "/v2/orders/{order_id}"),
    ("trading", "DELETE", "/v2/orders/{order_id}"),
    ("trading", "GET", "/v2/orders:by_client_order_id"),
    ("trading", "GET", "/v2/positions"),
    ("trading", "DELETE", "/v2/positions"),
    ("trading", "GET", "/v2/positions/{symbol_or_asset_id}"),
    ("trading", "DELETE", "/v2/positions/{symbol_or_asset_id}"),
    ("data", "GET", "/v2/stocks/bars"),
    ("data", "GET", "/v2/stocks/bars/latest"),
    ("data", "GET", "/v2/stocks/quotes/latest"),
    ("data", "GET", "/v2/stocks/trades/latest"),
    ("data", "GET", "/v1beta3/crypto/{loc}/bars"),
    ("data", "GET", "/v1beta3/crypto/{loc}/latest/bars"),
    ("data", "GET", "/v1beta3/crypto/{loc}/latest/quotes"),
    ("data", "GET", "/v1beta3/crypto/{loc}/latest/trades"),
)

SPEC_FILES = {"trading": "trading-api.json", "data": "market-data-api.json"}
_DROPPED_KEYWORDS = {"example", "examples"}  # annotations only; they triple the file's size


def load() -> dict[str, Any]:
    """The bundled schemas: {"operations": {"METHOD /path": {...}}, "error": {...}, "$defs": {...}}."""
    return json.loads(SCHEMAS_FILE.read_text())


def find_operation(doc: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """The served operation whose template matches a concrete request path, as (key, operation)."""
    for key, operation in doc["operations"].items():
        op_method, template = key.split(" ", 1)
        if op_method == method.upper() and _template_regex(template).fullmatch(path):
            return key, operation
    return None


def response_schema(doc: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any] | None:
    """A standalone JSON schema for one response, or None when the spec documents no body for it.

    Error responses (4xx/5xx) use the Trading API's `Error` shape even where the spec leaves the body
    undocumented, because both APIs answer errors as {"code", "message"}.
    """
    found = find_operation(doc, method, path)
    if found is None:
        raise KeyError(f"{method} {path} is not an operation the fake serves")
    schema = found[1]["responses"].get(str(status))
    if schema is None and status >= 400:
        schema = doc["error"]
    if schema is None:
        return None
    return {**schema, "$defs": doc["$defs"]}


def spec_violations(doc: dict[str, Any], responses: Iterable[ServedResponse]) -> list[str]:
    """What is wrong with served responses against the spec; empty when every one conforms.

    Needs `jsonschema` (a development dependency, imported here only).
    """
    import jsonschema

    problems = []
    for served in responses:
        where = f"{served.method} {served.path}?{served.query} -> {served.status}"
        schema = response_schema(doc, served.method, served.path, served.status)
        if schema is None:
            if served.body:
                problems.append(f"{where}: a body where the spec documents none")
            continue
        if not served.content_type.startswith("application/json"):
            problems.append(f"{where}: content type {served.content_type!r}")
            continue
        validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
        for error in validator.iter_errors(json.loads(served.body)):
            path = "/".join(str(p) for p in error.absolute_path)
            problems.append(f"{where}: at /{path}: {error.message[:300]}")
    return problems


# Parameters that may hold a slash (a crypto symbol: BTC/USD) match across path segments; the
# others match one segment, or /v1beta3/crypto/us/latest/bars would match .../{loc}/bars.
_MULTI_SEGMENT_PARAMETERS = ("symbol_or_asset_id",)


def _template_regex(template: str) -> re.Pattern[str]:
    def parameter(match: re.Match[str]) -> str:
        return ".+" if match.group(1) in _MULTI_SEGMENT_PARAMETERS else "[^/]+"

    return re.compile(re.sub(r"\\\{([^}]+)\\\}", parameter, re.escape(template)))


# ---- Extraction (run by hand, never by tests) ----------------------------------------------------


def extract(reference_dir: Path) -> dict[str, Any]:
    specs = {api: json.loads((reference_dir / name).read_text()) for api, name in SPEC_FILES.items()}
    defs: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for api, method, template in SERVED_OPERATIONS:
        spec = specs[api]
        operation = spec["paths"][template][method.lower()]
        responses = {}
        for status, response in operation["responses"].items():
            response = _deref_response(spec, response)
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:
                responses[status] = _bundle(api, spec, schema, defs)
        operations[f"{method} {template}"] = {
            "api": api,
            "operation_id": operation.get("operationId"),
            "responses": responses,
        }
    error = _bundle("trading", specs["trading"], {"$ref": "#/components/schemas/Error"}, defs)
    return {
        "_source": {
            "trading": f"Alpaca Trading API {specs['trading']['info']['version']} (MIT)",
            "data": f"Alpaca Market Data API {specs['data']['info']['version']} (CC-BY-SA-4.0)",
            "note": "Extracted by orch.fake_alpaca.spec_schemas; examples removed, otherwise verbatim.",
        },
        "operations": operations,
        "error": error,
        "$defs": dict(sorted(defs.items())),
    }


def _deref_response(spec: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    ref = response.get("$ref")
    if ref is None:
        return response
    return spec["components"]["responses"][ref.rsplit("/", 1)[1]]


def _bundle(api: str, spec: dict[str, Any], node: Any, defs: dict[str, Any], names: bool = False) -> Any:
    """Copy `node`, rewriting component references to `#/$defs/<api>__<name>` and collecting them.

    `names` is true when the keys of `node` are property names rather than keywords.
    """
    if isinstance(node, list):
        return [_bundle(api, spec, item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    copied: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYWORDS and not names:
            continue
        if key == "$ref" and not names and value.startswith("#/components/schemas/"):
            name = value.rsplit("/", 1)[1]
            bundled_name = f"{api}__{name}"
            if bundled_name not in defs:
                defs[bundled_name] = {}  # placeholder first: components may refer to themselves
                defs[bundled_name] = _bundle(api, spec, spec["components"]["schemas"][name], defs)
            copied[key] = f"#/$defs/{bundled_name}"
        else:
            copied[key] = _bundle(api, spec, value, defs, names=key == "properties" and not names)
    return copied


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m orch.fake_alpaca.spec_schemas <dir with trading-api.json>", file=sys.stderr)
        return 2
    doc = extract(Path(argv[0]))
    SCHEMAS_FILE.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"wrote {SCHEMAS_FILE} ({len(doc['operations'])} operations, {len(doc['$defs'])} schemas)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
