"""Per-second, per-route summaries of exchanges: the exact half of a batch.

A sidecar adds every exchange to a `SummaryBuilder`; each stats batch carries
the cells it drained beside a capped list of raw samples, so the dashboard's
rates and percentiles stay exact however many samples were left out. The
dashboard builds the same cells from raw samples when a batch has none (the
article's payloads). Wire form of one cell:

    {"t": 1732470000, "route": "/users/{id}", "method": "GET", "count": 12,
     "status": {"2xx": 11, "5xx": 1}, "failures": 1,
     "hist": [[18, 3], [19, 9]], "sum": 14.2, "min": 0.9, "max": 2.1,
     "bytes_in": 960, "bytes_out": 20480, "protocol": "http/1.1"}

`protocol` is absent from older sidecars' cells; a gRPC cell also counts its
calls by status code, `"grpc": {"0": 10, "5": 2}` (calls that ended without
one, reset for instance, are in `count` only).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.core.histogram import Histogram
from app.core.sample import FAILURE_ERRORS, Record, Sample, status_class

CellKey = tuple[int, str, str, str]  # (epoch second, route, method, protocol or "")


class Cell:
    """Everything about one route's exchanges that started in one second."""

    __slots__ = ("bytes_in", "bytes_out", "failures", "grpc", "hist", "status")

    def __init__(self, grpc: bool = False) -> None:
        self.status: dict[str, int] = {}
        self.failures = 0
        self.hist = Histogram()
        self.bytes_in = 0
        self.bytes_out = 0
        self.grpc: dict[int, int] | None = {} if grpc else None  # gRPC calls by status code

    @property
    def count(self) -> int:
        return self.hist.count

    def add(self, sample: Sample) -> None:
        self.count_one(sample["response"]["status"], sample.get("error"), sample["time"],
                       sample.get("bytes_in") or 0, sample.get("bytes_out") or 0, sample.get("grpc_status"))

    def add_record(self, record: Record) -> None:
        self.count_one(record.status, record.error, record.time, record.bytes_in, record.bytes_out,
                       record.grpc_status)

    def count_one(self, code: int, error: str | None, ms: float, bytes_in: int, bytes_out: int,
                  grpc_code: int | None) -> None:
        """One more exchange (once per exchange in a sidecar, and per raw sample in the dashboard)."""
        klass = status_class(code)
        status = self.status
        status[klass] = status.get(klass, 0) + 1
        if code >= 500 or error in FAILURE_ERRORS:  # `is_failure`, spelled out
            self.failures += 1
        self.hist.add(ms)
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        grpc = self.grpc
        if grpc is not None and grpc_code is not None:  # a gRPC cell (other protocols pay for one test)
            grpc[grpc_code] = grpc.get(grpc_code, 0) + 1

    def merge(self, other: Cell) -> None:
        for klass, n in other.status.items():
            self.status[klass] = self.status.get(klass, 0) + n
        self.failures += other.failures
        self.hist.merge(other.hist)
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        if other.grpc is not None:
            mine = self.grpc if self.grpc is not None else {}
            for code, n in other.grpc.items():
                mine[code] = mine.get(code, 0) + n
            self.grpc = mine

    def to_wire(self, key: CellKey) -> dict[str, Any]:
        t, route, method, protocol = key
        out = {
            "t": t, "route": route, "method": method, "count": self.count,
            "status": dict(self.status), "failures": self.failures,
            "hist": self.hist.to_wire(), "sum": round(self.hist.total, 3),
            "min": round(self.hist.low, 3), "max": round(self.hist.high, 3),
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
        }
        if protocol:
            out["protocol"] = protocol
        if self.grpc is not None:
            out["grpc"] = {str(code): n for code, n in sorted(self.grpc.items())}
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> tuple[CellKey, Cell]:
        """Build from an already-validated wire dict (see `app.core.wire`)."""
        grpc = data.get("grpc")
        cell = cls(grpc is not None)
        if grpc is not None:
            cell.grpc = {int(code): n for code, n in grpc.items()}
        cell.status = dict(data["status"])
        cell.failures = data["failures"]
        cell.hist.merge_wire(data["hist"], data["sum"], data["min"], data["max"])
        cell.bytes_in = data["bytes_in"]
        cell.bytes_out = data["bytes_out"]
        return (data["t"], data["route"], data["method"], data.get("protocol", "")), cell


class SummaryBuilder:
    """Accumulates cells keyed by (second, route, method) until drained."""

    def __init__(self) -> None:
        self.cells: dict[CellKey, Cell] = {}

    def add(self, sample: Sample) -> None:
        self.cell(int(sample["started"] // 1000), sample["route"], sample["method"],
                  sample.get("protocol", "")).add(sample)

    def add_record(self, record: Record) -> None:
        self.cell(int(record.started // 1000), record.route, record.method, record.protocol).add_record(record)

    def cell(self, second: int, route: str, method: str, protocol: str) -> Cell:
        key = (second, route, method, protocol)
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = Cell(protocol == "grpc")
        return cell

    def __len__(self) -> int:
        return len(self.cells)

    def drain(self) -> list[dict[str, Any]]:
        cells, self.cells = self.cells, {}
        return [cell.to_wire(key) for key, cell in sorted(cells.items())]


def summarise(samples: Iterable[Sample]) -> list[dict[str, Any]]:
    builder = SummaryBuilder()
    for sample in samples:
        builder.add(sample)
    return builder.drain()
