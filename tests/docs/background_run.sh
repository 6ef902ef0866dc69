# Sourced by doc blocks that act on a running run (their marker:
# setup=". \"$DOCTEST_DIR/background_run.sh\" FILE [run options]"): starts
# `sluice run FILE [run options]` in the background and returns once its
# first step has started (the run is recorded and Running), waiting at most
# 60 s for that line. $RUN_PID is the sluice process.
coproc BACKGROUND_RUN { exec sluice run "$@" 2>&1; }
RUN_PID=$BACKGROUND_RUN_PID
started=
while IFS= read -t 60 -r line <&"${BACKGROUND_RUN[0]}"; do
  case $line in
    "["*"] start "*) started=1; break ;;
  esac
done
# Keep reading its output (a background job does not inherit the
# coprocess's descriptor: pass a copy).
exec {run_out}<&"${BACKGROUND_RUN[0]}"
cat <&"$run_out" > background-run.log &
[ -n "$started" ]
