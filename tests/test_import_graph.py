"""No import circles among the modules of app/ and sidecar/ (STYLE.md: "no import circles"), and none of the
dashboard's modules in a running sidecar.

Imports are read from the source with `ast`, those under `if TYPE_CHECKING:` and inside
functions included: a type-only or a deferred import that closes a circle still says that
a type or a function sits in the wrong module. The few known circles are listed edge by
edge with who owns them; a new circle fails, and so does a listed edge that is gone (so
the list cannot go stale).
"""

from __future__ import annotations

import ast
import socket
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, free_port, sample_app

PACKAGES = ("app", "sidecar")

# Type-only imports that close a circle in the relay's modules (issue 17's rewrite, owned by the
# relay work; reported, to be moved into a lower module or a third one): importer -> imported.
KNOWN: frozenset[tuple[str, str]] = frozenset({
    ("sidecar.connection", "sidecar.proxy"),
    ("sidecar.relay_state", "sidecar.proxy"),
    ("sidecar.relay_state", "sidecar.passthrough"),
})


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement anywhere in `tree` may refer to (relative ones resolved)."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports."""
    files = {module_name(path, root): path for package in packages for path in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        names = imported_names(ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py")
        graph[module] = {name for name in names if name in files and name != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_circles_in_app_and_sidecar() -> None:
    graph = import_graph(ROOT, PACKAGES)
    gone = sorted(edge for edge in KNOWN if edge[1] not in graph.get(edge[0], set()))
    assert gone == [], f"these known circle edges are gone: take them out of KNOWN in {__file__}"
    for importer, imported in KNOWN:
        graph[importer].discard(imported)
    found = circles(graph)
    details = "\n".join(f"{c}: " + "; ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) for c in found)
    assert found == [], f"import circles (move the shared type or function into the lower module or a third):\n" \
                        f"{details}"


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_circles_are_found_through_type_only_deferred_and_relative_imports(tmp_path: Path) -> None:
    write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "pkg/b.py": "def f():\n    from . import a\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from ..d import x\n",
        "pkg/d.py": "import pkg.sub.c\nx = 1\n",
        "pkg/e.py": "from pkg import a\nimport os\n",  # imports into a circle, not part of one
    })
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.e"] == {"pkg", "pkg.a"}
    assert circles(graph) == [["pkg.a", "pkg.b"], ["pkg.d", "pkg.sub.c"]]
    graph["pkg.a"].discard("pkg.b")
    assert circles(graph) == [["pkg.d", "pkg.sub.c"]]


# Modules no sidecar needs: each one imported is resident memory in every pod (issue 17). ujson is the
# dashboard's: in a sidecar it would map libstdc++ (1.3 MB) for two small encodes a second. tornado.web (1.7 MB
# with what it brings: templates, locale, cookies) is the dashboard's too: the admin port is served below it.
NOT_IN_SIDECAR = ("app.dashboard", "app.demo", "app.inject", "ujson", "tornado.web")
# HTTP/2's tracker and its libraries (hpack's tables, h2, hyperframe): imported at the first HTTP/2 connection.
HTTP2 = ("sidecar.http2", "hpack", "h2", "hyperframe")
# A client's HTTP/2 connection preface and an empty SETTINGS frame (RFC 9113 3.4): enough to be detected.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def imported_at_run_time(log: str) -> set[str]:
    """The modules a process imported, from the lines PYTHONPROFILEIMPORTTIME (`-X importtime`) writes."""
    return {line.rpartition("|")[2].strip() for line in log.splitlines() if line.startswith("import time:")}


def within(modules: Iterable[str], packages: tuple[str, ...]) -> list[str]:
    """The modules that are one of `packages` or inside one."""
    return sorted(m for m in modules if m in packages or m.startswith(tuple(f"{p}." for p in packages)))


def test_a_working_sidecar_imports_nothing_it_does_not_use(run_app: Any) -> None:
    """`python -m app --mode sidecar`, relaying HTTP/1, reporting (to a dashboard that refuses), sampling,
    probed and scraped: every module it imported, lazy ones included, is read from `-X importtime`. Neither
    dashboard, demo and inject modules, nor ujson and tornado.web, nor HTTP/2's libraries until a client
    speaks HTTP/2 to it."""
    port, admin, dashboard = free_port(), free_port(), free_port()
    with sample_app() as (_, target):
        sidecar = run_app(["--mode", "sidecar", "--host", "127.0.0.1", "--port", str(port), "--admin-port",
                           str(admin), "--target-port", str(target), "--dashboard", f"http://127.0.0.1:{dashboard}",
                           "--pod", "shop-1-x", "--stats-interval", "0.2", "--resources-interval", "0.2"],
                          wait_ports=[port, admin], env={"PYTHONPROFILEIMPORTTIME": "1"})
        for url in (f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{admin}/metrics",
                    f"http://127.0.0.1:{admin}/readyz", f"http://127.0.0.1:{admin}/healthz"):
            with urllib.request.urlopen(url, timeout=10) as reply:
                assert reply.status == 200, url
        time.sleep(0.6)  # a few reporting and sampling rounds
        http1 = imported_at_run_time(sidecar.output)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(H2_PREFACE)
            deadline = time.monotonic() + 10
            while not within(imported_at_run_time(sidecar.output), HTTP2) and time.monotonic() < deadline:
                time.sleep(0.05)
        assert sidecar.stop() == 0, sidecar.output
    assert {"sidecar.proxy", "sidecar.report.client", "prometheus_client.exposition"} <= http1, sidecar.output
    assert within(http1, NOT_IN_SIDECAR + HTTP2) == []
    modules = imported_at_run_time(sidecar.output)
    assert {"sidecar.http2.tracker", "hpack"} <= modules  # the same reading sees the lazy import once it happens
    assert within(modules, NOT_IN_SIDECAR) == []
