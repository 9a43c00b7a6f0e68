"""Validate a Compose file against the vendored Compose JSON schema. Runs in
deploy/tools/.venv (jsonschema is not in the project's lock):
    deploy/tools/.venv/bin/python deploy/tools/validate_compose.py SCHEMA COMPOSE_JSON
The Compose file comes as JSON (the caller parsed the YAML, merge keys and
all), so this venv needs nothing but jsonschema. Prints one line per error.
"""
import json
import sys

import jsonschema


def main(schema_path, document_path):
    with open(schema_path) as f:
        schema = json.load(f)
    with open(document_path) as f:
        document = json.load(f)
    # Its "$schema" ends in "#", which jsonschema does not recognise (it would
    # fall back to 2020-12, with a warning): name the draft it declares.
    assert "draft/2019-09" in schema["$schema"], schema["$schema"]
    validator_class = jsonschema.Draft201909Validator
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(document), key=lambda e: list(e.absolute_path))
    for error in errors:
        print(f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}")
    print(f"{validator_class.__name__}: {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
