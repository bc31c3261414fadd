#!/bin/bash
# Inside the VM (started by mothership-pod-test.service): the pod tests, their
# output on the serial console and in pytest.log, their exit status in
# `result` for the host to read from the disk image afterwards.
set -o pipefail
cd /opt/mothership || exit 1
echo "cgroup: $(stat -fc %T /sys/fs/cgroup) (cgroup2fs is v2)" | tee /dev/ttyS0
PYTHONUNBUFFERED=1 python3 -m pytest -v --tb=short --durations=0 -rs -p no:cacheprovider tests/test_pods.py 2>&1 | tee /dev/ttyS0 > pytest.log
echo $? > result
sync
