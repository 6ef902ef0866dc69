#!/usr/bin/env python3
"""Finally step `report`: print how the run ended.

--status is the run's status as sluice reports it to finally steps
(Succeeded, Failed, Error or Cancelled). The step itself succeeds whatever
the run's status was: it reports, it does not judge.
"""
import argparse
import os
import sys

STATUSES = ("Succeeded", "Failed", "Error", "Cancelled")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status", required=True, help="one of " + ", ".join(STATUSES))
    parser.add_argument("--run", required=True, help="the run id")
    args = parser.parse_args()
    if args.status not in STATUSES:
        print(f"report: error: unknown --status {args.status!r}; expected one of "
              f"{', '.join(STATUSES)}", file=sys.stderr)
        sys.exit(2)

    verdict = {
        "Succeeded": "every step succeeded or was skipped by its condition",
        "Failed": "a step failed; see `sluice status` and `sluice logs` for which and why",
        "Error": "sluice could not run a step (spawn failure, lost process, ...)",
        "Cancelled": "the run was cancelled",
    }[args.status]
    lines = [
        f"run       {args.run}",
        f"pipeline  {os.environ.get('SLUICE_PIPELINE', 'retrain')}",
        f"status    {args.status}",
        f"          {verdict}",
    ]
    width = max(len(line) for line in lines)
    print("+" + "-" * (width + 2) + "+")
    for line in lines:
        print(f"| {line:<{width}} |")
    print("+" + "-" * (width + 2) + "+")


if __name__ == "__main__":
    main()
