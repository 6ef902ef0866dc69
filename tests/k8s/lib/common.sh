# shellcheck shell=bash
# Logging helpers shared by tests/k8s scripts.
log() { printf '[k8s %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf '[k8s] error: %s\n' "$*" >&2; exit 1; }
