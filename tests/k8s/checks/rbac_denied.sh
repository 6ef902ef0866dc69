#!/usr/bin/env bash
# Token authentication and RBAC are real: the limited user (no bindings) is
# authenticated but forbidden, the admin is allowed, and a bad token is rejected.
. "$(dirname "$0")/lib.sh"
new_namespace check-rbac
limited=$STATE/kubeconfig-limited

expect "admin can create pods" "$(kubectl auth can-i create pods -n "$NS" || true)" yes
expect "limited user can create pods" "$(kubectl --kubeconfig "$limited" auth can-i create pods -n "$NS" 2>/dev/null || true)" no
expect "limited user identity" "$(kubectl --kubeconfig "$limited" auth whoami -o jsonpath='{.status.userInfo.username}')" sluice-limited
if out=$(kubectl --kubeconfig "$limited" get pods -n "$NS" 2>&1); then
  fail "limited user listed pods: $out"
fi
echo "$out" | grep -q 'Forbidden\|forbidden' || fail "want Forbidden, got: $out"
info "ok: limited user is Forbidden"
if out=$(kubectl --token not-a-token get pods -n "$NS" 2>&1); then fail "bad token accepted"; fi
echo "$out" | grep -qi 'unauthorized\|provide credentials' || fail "want Unauthorized, got: $out"
info "ok: bad token is Unauthorized"
# Granting a Role makes the same request succeed.
kubectl create role -n "$NS" pod-reader --verb=get,list --resource=pods >/dev/null
kubectl create rolebinding -n "$NS" limited-reads --role=pod-reader --user=sluice-limited >/dev/null
kubectl --kubeconfig "$limited" get pods -n "$NS" >/dev/null || fail "limited user still denied after RoleBinding"
info "ok: RoleBinding grants access"
info "PASS"
