"""Trim Intercom's OpenAPI description to the operations the connector uses and the schemas they reference.

    python scripts/trim_openapi.py ../shared/reference/specs/intercom-2.14.yaml \
        [-o tests/specs/intercom-2.14.trimmed.json]

The full description (intercom/Intercom-OpenAPI, `descriptions/2.14/api.intercom.io.yaml`,
MIT licence) is ~900 kB; the contract tests (`tests/test_fake_conformance.py`) need only the
operations below and every component schema they reach through `$ref`, transitively. The
output keeps the spec's `info` (with its licence), each kept operation's `operationId`,
`summary`, parameters and responses (schemas and examples), and nothing else: prose
descriptions are dropped. Re-run it when the connector starts using another operation, or
when moving to a newer API version, and commit the output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

# (method, path template) of every Intercom operation the connector and its write-back use,
# plus the ones a fidelity fix is likely to add (contact and company reads, company scroll).
OPERATIONS: tuple[tuple[str, str], ...] = (
    ("post", "/conversations/search"),
    ("get", "/conversations/{conversation_id}"),
    ("put", "/conversations/{conversation_id}"),
    ("post", "/conversations/{conversation_id}/reply"),
    ("get", "/admins"),
    ("get", "/teams"),
    ("get", "/me"),
    ("get", "/contacts"),
    ("get", "/contacts/{contact_id}"),
    ("put", "/contacts/{contact_id}"),
    ("post", "/contacts/search"),
    ("post", "/companies/list"),
    ("get", "/companies/scroll"),
    ("get", "/companies"),
    ("post", "/companies"),
    ("get", "/data_attributes"),
    ("post", "/data_attributes"),
)
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "tests" / "specs" / "intercom-2.14.trimmed.json"
KEPT_OPERATION_KEYS = ("operationId", "summary", "parameters", "requestBody", "responses")
NOTICE = ("Trimmed by scripts/trim_openapi.py from intercom/Intercom-OpenAPI "
          "descriptions/2.14/api.intercom.io.yaml (MIT licence, see info.license and "
          "tests/specs/LICENSE-intercom-openapi.md): only the operations the connector uses and "
          "the component schemas they reference; prose descriptions removed.")


def strip_descriptions(node: Any) -> Any:
    """The node without `description` keys (prose), recursively; schemas and examples stay."""
    if isinstance(node, dict):
        return {k: strip_descriptions(v) for k, v in node.items() if k != "description" or not isinstance(v, str)}
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def refs_in(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            found |= refs_in(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs_in(value)
    return found


def trim(spec: dict[str, Any], operations: tuple[tuple[str, str], ...] = OPERATIONS) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path in operations:
        operation = spec["paths"].get(path, {}).get(method)
        if operation is None:
            raise SystemExit(f"{method.upper()} {path} is not in the specification")
        kept = {k: operation[k] for k in KEPT_OPERATION_KEYS if k in operation}
        paths.setdefault(path, {})[method] = strip_descriptions(kept)
    components: dict[str, dict[str, Any]] = {}
    pending = sorted(refs_in(paths))
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        if not ref.startswith("#/components/"):
            raise SystemExit(f"unsupported reference {ref!r}")
        kind, name = ref.removeprefix("#/components/").split("/", 1)
        target = strip_descriptions(spec["components"][kind][name])
        components.setdefault(kind, {})[name] = target
        pending.extend(sorted(refs_in(target) - seen))
    info = dict(spec["info"])
    info.pop("description", None)
    info["x-trimmed"] = NOTICE
    return {
        "openapi": spec["openapi"],
        "info": info,
        "servers": spec.get("servers", []),
        "paths": {p: paths[p] for p in sorted(paths)},
        "components": {kind: dict(sorted(items.items())) for kind, items in sorted(components.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path, help="the full Intercom OpenAPI description (YAML or JSON)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    text = args.spec.read_text(encoding="utf-8")
    spec = json.loads(text) if args.spec.suffix == ".json" else yaml.safe_load(text)
    trimmed = trim(spec)
    if trimmed["info"].get("license", {}).get("name") != "MIT":
        print("warning: the description's licence is not MIT; check before committing the output", file=sys.stderr)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(trimmed, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    schemas = len(trimmed["components"].get("schemas", {}))
    print(f"{args.output}: {len(OPERATIONS)} operations, {schemas} schemas")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
