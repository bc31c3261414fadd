"""Mothership: service-mesh telemetry without a control plane.

`python -m app --mode sidecar|dashboard|demo` runs one of the three roles.
"""

__version__ = "0.1.0"
