"""The pod's resources: CPU, memory and the container's cgroup limits."""
