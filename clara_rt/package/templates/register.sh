#!/bin/sh
# Register this bundle's pipeline ({{PIPELINE}}) with the clara-rt server: the ExecStartPost= of
# clara-rt.service. Waits until the server's /health answers, then runs
# `clara-rt create pipeline --replace` (the token comes from $CLARA_RT_TOKEN, as for any client).
#
#   sh register.sh VENV URL [TIMEOUT_S]     e.g. sh register.sh /opt/clara-rt/venv http://127.0.0.1:8000
set -eu

[ $# -ge 2 ] || { echo "usage: sh register.sh VENV URL [TIMEOUT_S]" >&2; exit 2; }
VENV=$1
URL=$2
TIMEOUT=${3:-60}
BUNDLE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P)

"$VENV/bin/python" - "$URL" "$TIMEOUT" <<'PY'
import sys, time, urllib.request

url, timeout = sys.argv[1].rstrip("/") + "/health", float(sys.argv[2])
deadline = time.monotonic() + timeout
while True:
    try:
        with urllib.request.urlopen(url, timeout=2):
            break
    except OSError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"register.sh: {url} did not answer within {timeout:g} s: {exc}")
        time.sleep(0.2)
PY
exec "$VENV/bin/clara-rt" create pipeline -p "$BUNDLE/pipeline/pipeline.yaml" --replace --host "$URL"
