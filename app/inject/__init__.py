"""`python -m app --mode inject`: the sidecar added to (or taken out of) the user's own manifests.

`documents` reads and writes the YAML or JSON stream, `workloads` finds pod
templates in every kind, `sidecar` is the container added, `ports` decides
which app port it fronts, `injector` changes one pod template and keeps what
undoes it, `manifests` runs the whole input and `cli` is the command line.
"""
