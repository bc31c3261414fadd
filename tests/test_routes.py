"""Route templating's bounds: long routes cut with a mark, and `RouteCap` keeping the busiest routes."""

from __future__ import annotations

from app.core import routes
from app.core.routes import CUT_MARK, MAX_ROUTE_CHARS, OVERFLOW_ROUTE, RouteCap


def test_a_long_route_is_cut_with_a_mark() -> None:
    long = "/" + "a" * 2100
    route = routes.template(long)
    assert len(route) == MAX_ROUTE_CHARS and route.endswith(CUT_MARK) and route.startswith("/aaa")
    assert routes.template("/users/42") == "/users/{id}" and routes.cut("/x") == "/x"
    assert routes.cut("x" * MAX_ROUTE_CHARS) == "x" * MAX_ROUTE_CHARS


def test_routes_are_admitted_while_there_is_room() -> None:
    cap = RouteCap(3)
    assert [cap(r) for r in ("/a", "/b", "/a", "/c", "/d")] == ["/a", "/b", "/a", "/c", OVERFLOW_ROUTE]
    assert len(cap) == 3 and "/d" not in cap and cap.overflowed == 1


def test_a_flood_of_throwaway_paths_does_not_freeze_the_set() -> None:
    """Issue 16: after 5,000 throwaway paths, a new real route was counted as {other} until a restart."""
    cap = RouteCap(100)
    for i in range(5000):
        cap(f"/junk/{i}")
    assert len(cap) == 100 and cap.evicted == 0  # seen once each: none worth a place
    labels = [cap("/api/new") for _ in range(3)]
    assert labels[-1] == "/api/new" and "/api/new" in cap and cap.evicted == 1
    # And while the flood goes on, a route used now and then still gets in.
    for i in range(20_000):
        cap(f"/more-junk/{i}")
        if i % 50 == 0:
            cap("/api/steady")
    assert cap("/api/steady") == "/api/steady"


def test_cold_routes_leave_for_busier_ones_and_owners_hear_of_it() -> None:
    cap = RouteCap(2, decay_every=100)
    evicted: list[str] = []
    cap.on_evict.append(evicted.append)
    for _ in range(50):
        cap("/hot")
    cap("/once")
    for _ in range(400):  # /hot goes quiet: its count halves every 100 calls
        cap("/new")
    assert "/new" in cap and evicted and set(evicted) <= {"/hot", "/once"}
    assert cap.label("/new") == "/new" and cap.label("/nowhere") == OVERFLOW_ROUTE


def test_the_candidates_stay_bounded() -> None:
    cap = RouteCap(10)
    for i in range(100_000):
        cap(f"/junk/{i}")
    assert len(cap._candidates) <= cap._max_candidates
