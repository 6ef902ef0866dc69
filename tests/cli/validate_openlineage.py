#!/usr/bin/env python3
"""Validates OpenLineage events written by `sluice export openlineage`.

    validate_openlineage.py EVENTS.jsonl

Each line is parsed into the official client's classes
(openlineage.client.event_v2.RunEvent and its Run/Job/Dataset/facet classes,
whose attrs validators check runId UUIDs and eventTime), and checked for the
fields the OpenLineage spec (2-0-2) requires: eventType, eventTime,
run.runId, job.namespace, job.name, producer, schemaURL. The JSON schema file
itself is not packaged for offline use, so this is the check available here.

Exit codes: 0 valid, 1 invalid (each problem printed), 77 the client is not
installed (pip install -r tests/requirements.txt).
"""
import json
import sys
import uuid

try:
    from openlineage.client import event_v2
    from openlineage.client.generated import parent_run
except ImportError as e:  # pragma: no cover
    print(f"openlineage-python is not installed ({e}); pip install -r tests/requirements.txt")
    sys.exit(77)

REQUIRED = ("eventType", "eventTime", "run", "job", "producer", "schemaURL")
EVENT_TYPES = {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}


def dataset(d, cls):
    return cls(namespace=d["namespace"], name=d["name"], facets={})


def check(event, where):
    problems = []
    for key in REQUIRED:
        if key not in event:
            problems.append(f"{where}: missing {key}")
    if problems:
        return problems
    if event["eventType"] not in EVENT_TYPES:
        problems.append(f"{where}: eventType {event['eventType']!r} is not one of {sorted(EVENT_TYPES)}")
    for key in ("namespace", "name"):
        if not event["job"].get(key):
            problems.append(f"{where}: job.{key} is empty")
    try:
        uuid.UUID(event["run"]["runId"])
    except (KeyError, ValueError):
        problems.append(f"{where}: run.runId is not a UUID")
    if not event["schemaURL"].startswith("https://openlineage.io/spec/"):
        problems.append(f"{where}: schemaURL {event['schemaURL']!r} is not an OpenLineage spec URL")
    run_facets = {}
    parent = event["run"].get("facets", {}).get("parent")
    if parent:
        run_facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent["run"]["runId"]),
            job=parent_run.Job(namespace=parent["job"]["namespace"], name=parent["job"]["name"]),
        )
    try:
        event_v2.RunEvent(
            eventType=event_v2.RunState[event["eventType"]],
            eventTime=event["eventTime"],
            run=event_v2.Run(runId=event["run"]["runId"], facets=run_facets),
            job=event_v2.Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
            producer=event["producer"],
            inputs=[dataset(d, event_v2.InputDataset) for d in event.get("inputs", [])],
            outputs=[dataset(d, event_v2.OutputDataset) for d in event.get("outputs", [])],
        )
    except Exception as e:  # attrs validators raise ValueError/TypeError
        problems.append(f"{where}: openlineage client rejects it: {type(e).__name__}: {e}")
    return problems


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    problems = []
    count = 0
    with open(sys.argv[1], encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            count += 1
            try:
                event = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"line {n}: not JSON: {e}")
                continue
            problems.extend(check(event, f"line {n}"))
    for p in problems:
        print(p)
    if count == 0:
        print("no events")
        return 1
    print(f"{count} events, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
