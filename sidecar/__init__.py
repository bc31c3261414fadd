"""The sidecar: a transparent HTTP/1.x proxy that times every exchange and reports it."""
