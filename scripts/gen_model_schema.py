"""Write the JSON Schema of model.yaml to docs/model.schema.json.

    python scripts/gen_model_schema.py           # regenerate docs/model.schema.json
    python scripts/gen_model_schema.py --check   # exit 1 if the file is stale

The schema comes from ``serval.core.model_spec.ModelSpec.model_json_schema()``, with two
additions made here:

* ``runtime_options`` depends on the runtime, so the schema accepts any object there. Each
  built-in runtime's options schema is embedded under ``$defs`` (``OnnxOptions``) and named in
  the field's description and in the annotation ``x-runtime-options``, for people and editors
  to read. Validators ignore that annotation.
* ``version_policy`` also accepts the short forms that ``VersionPolicySpec`` converts before
  validation (``latest``, ``all``, ``{latest: 2}``, ``{specific: [1, 3]}``, and Triton's long
  forms). Without this, the schema would reject valid files such as ``version_policy: all``.

Editors with a YAML language server can use the file with a first line such as
``# yaml-language-server: $schema=<path or URL of docs/model.schema.json>``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "model.schema.json"

# runtime name -> the pydantic model of its runtime_options ("module:Class").
RUNTIME_OPTIONS = {
    "onnx": "serval.runtimes.onnx:OnnxOptions",
    "sklearn": "serval.runtimes.sklearn:SklearnOptions",
    "xgboost": "serval.runtimes.xgboost:XGBoostOptions",
    "lightgbm": "serval.runtimes.lightgbm:LightGBMOptions",
    "python": "serval.runtimes.python.loader:PythonOptions",
    "mlflow": "serval.runtimes.mlflow.options:MlflowOptions",
    "torch": "serval.runtimes.pytorch.options:TorchOptions",
}

_POSITIVE_VERSIONS: dict[str, Any] = {
    "type": "array",
    "items": {"type": "integer", "minimum": 1},
    "minItems": 1,
}
# What VersionPolicySpec._accept_short_forms turns into the long form before validation.
_POLICY_SHORT_FORMS: list[dict[str, Any]] = [
    {"type": "string", "enum": ["latest", "all"], "description": "latest (N=1) or all."},
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["latest"],
        "properties": {
            "latest": {
                "anyOf": [
                    {"type": "integer", "minimum": 1},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"num_versions": {"type": "integer", "minimum": 1}},
                    },
                ]
            }
        },
        "description": "The N highest versions: {latest: 2} or {latest: {num_versions: 2}}.",
    },
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["specific"],
        "properties": {
            "specific": {
                "anyOf": [
                    _POSITIVE_VERSIONS,
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["versions"],
                        "properties": {"versions": _POSITIVE_VERSIONS},
                    },
                ]
            }
        },
        "description": "Exactly these versions: {specific: [1, 3]} or "
        "{specific: {versions: [1, 3]}}.",
    },
    {
        "type": "object",
        "additionalProperties": False,
        "required": ["all"],
        "properties": {"all": {"type": "object"}},
        "description": "Every version: {all: {}}.",
    },
]


def build_schema() -> dict[str, Any]:
    from serval.core.model_spec import ModelSpec  # noqa: PLC0415 - after sys.path is set

    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **ModelSpec.model_json_schema(),
    }
    schema["title"] = "serval model.yaml"
    defs = schema.setdefault("$defs", {})
    properties = schema["properties"]

    policy = properties["version_policy"]
    properties["version_policy"] = {
        "description": "Which versions to serve. Default: latest (the highest version).",
        "anyOf": [*_POLICY_SHORT_FORMS, policy],
    }

    runtime_options = properties["runtime_options"]
    refs = {}
    for runtime, target in RUNTIME_OPTIONS.items():
        module_name, _, class_name = target.partition(":")
        options_model = getattr(importlib.import_module(module_name), class_name)
        options_schema = options_model.model_json_schema()
        name = options_schema.get("title", class_name)
        defs[name] = options_schema
        refs[runtime] = {"$ref": f"#/$defs/{name}"}
    described = ", ".join(f"{runtime}: {ref['$ref']}" for runtime, ref in refs.items())
    runtime_options["description"] = (
        f"Options of the model's runtime; their schema depends on the runtime ({described}). "
        f"See docs/runtimes/."
    )
    runtime_options["x-runtime-options"] = refs
    return schema


def render() -> str:
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if {OUT.relative_to(ROOT)} is stale; write nothing",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    text = render()
    relative = OUT.relative_to(ROOT)
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.is_file() else ""
        if current == text:
            print(f"{relative} is up to date")
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"{relative} (committed)",
            f"{relative} (generated)",
        )
        sys.stdout.writelines(diff)
        print(f"{relative} is stale: run python scripts/gen_model_schema.py", file=sys.stderr)
        return 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
