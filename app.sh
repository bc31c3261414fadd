#!/bin/sh
# The image's start command when a Deployment gives none: OpenShift's Python
# S2I builder runs $APP_SCRIPT (app.sh), and so does the Containerfile.
# MODE picks what runs (dashboard unless set: sidecar, dashboard or demo);
# every other setting comes from its environment variable, as documented in
# the README, or from the arguments given to this script.
MODE="${MODE:-dashboard}"
export MODE
exec python -m app "$@"
