#!/usr/bin/env bash
# A pod on the real node runs a real container: Python from the node's image
# (tests/k8s/images) computes something with numpy and prints it; the line is
# read back through the API server from kubelet (`kubectl logs`), and the
# container's exit code is the program's.
. "$(dirname "$0")/lib.sh"
require_real_node
new_namespace check-real-pod

real_node_python_pod hello '
import platform, socket, sys, numpy, sklearn
print(f"hello from {socket.gethostname()}: python {platform.python_version()},"
      f" numpy {numpy.__version__}, sklearn {sklearn.__version__}, sum {numpy.arange(10).sum()}")
sys.exit(3)
' | kubectl apply -n "$NS" -f -

kubectl wait -n "$NS" --for=jsonpath='{.status.phase}'=Failed pod/hello --timeout="${WAIT}s"
expect "pod node" "$(jp pod/hello '{.spec.nodeName}')" "$REAL_NODE"
expect "container exit code" "$(jp pod/hello '{.status.containerStatuses[0].state.terminated.exitCode}')" 3
expect "pod log" "$(kubectl logs -n "$NS" hello)" \
  "hello from hello: python 3.11.2, numpy 1.24.2, sklearn 1.2.1, sum 45"
info "PASS"
