"""Validate rendered Kubernetes objects against the Kubernetes JSON schemas
bundled in kubernetes-validate. Runs in deploy/tools/.venv (not in the
project's lock):
    deploy/tools/.venv/bin/python deploy/tools/validate_k8s.py VERSION OBJECTS_JSON [CUSTOM_API_VERSION...]
OBJECTS_JSON is a list of objects (the caller rendered the overlay with
`kubectl kustomize`). Objects whose apiVersion is one of CUSTOM_API_VERSION
(custom resources: no schema is bundled for them) are skipped and counted;
any other object without a schema is an error (a typo in apiVersion or kind).
strict=True: a field the schema does not know is an error too.
Prints one line per error and a closing count line.
"""
import json
import sys

import kubernetes_validate


def main(version, document_path, *custom_api_versions):
    with open(document_path) as f:
        objects = json.load(f)
    errors, validated, skipped = [], 0, 0
    for obj in objects:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if obj.get("apiVersion") in custom_api_versions:
            skipped += 1
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            validated += 1
        except kubernetes_validate.ValidationError as error:
            path = "/".join(map(str, error.path)) or "<root>"
            errors.append(f"{where}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{where}: no schema for {obj.get('apiVersion')} {obj.get('kind')} ({error})")
    for line in errors:
        print(line)
    print(f"kubernetes {version}: {validated} valid, {skipped} custom resources skipped, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
