"""The project as the image runs it: a copy in build/compiled/ whose hot path is compiled by mypyc.

The sources are copied there and setup.py builds, in place and with
`MOTHERSHIP_COMPILE=1`, the modules pyproject.toml lists under
`[tool.mothership] compiled`, exactly as the image's wheel does. The copy is
kept and rebuilt only when a source changed (a digest of them is kept
beside it). `bench.sidecar_bench` runs its `sidecar` target from this tree
(`pysidecar` is the same code as Python), and `--test` runs the sidecar's
tests against the compiled modules (`make test-compiled`, in CI).

    python -m bench.compiled            # build (or reuse) build/compiled, print where
    python -m bench.compiled --test     # then run the sidecar's tests in it

`build_at(ref)` builds an earlier commit the same way, in build/at-<commit>/,
for a benchmark that compares before and after in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "compiled"
LOCK = ROOT / "build" / ".compiled.lock"  # one build at a time: two in one tree break each other's
COPIED = ("app", "sidecar", "static", "templates", "tests", "bench", "setup.py", "pyproject.toml", "README.md",
          "MANIFEST.in")
# The tests that exercise the compiled modules: the relay, every protocol's framing and tracker, the
# telemetry per exchange, and the sidecar process end to end (with real peers: curl, grpcio, hypercorn).
SIDECAR_TESTS = (
    "test_http1.py", "test_chunked.py", "test_framing.py", "test_heads.py", "test_exchange.py",
    "test_exchange_metrics.py", "test_buffer.py", "test_summary.py", "test_histogram.py", "test_routes.py",
    "test_detect.py", "test_first_bytes.py", "test_opaque.py", "test_passthrough.py", "test_sides.py",
    "test_proxy.py", "test_http2_blocks.py", "test_http2_frames.py", "test_http2_grpc.py", "test_http2_tracker.py",
    "test_protocols_grpc.py", "test_protocols_h2c.py", "test_faults.py", "test_hostile_sidecar.py",
    "test_sidecar_main.py", "test_tls_hello.py", "test_admin.py",
)


class CompileError(RuntimeError):
    """mypyc, or the C compiler after it, failed (or is missing)."""


def compiled_modules() -> list[str]:
    """pyproject.toml's list: source paths relative to the repository."""
    modules: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mothership"]["compiled"]
    return modules


def _sources() -> Iterator[Path]:
    for name in COPIED:
        path = ROOT / name
        if path.is_file():
            yield path
        else:
            yield from sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def digest() -> str:
    """Of every copied file's path and bytes, and of the interpreter: what the build depends on."""
    h = hashlib.sha256(sys.version.encode())
    for path in _sources():
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def is_compiled(tree: Path, module: str) -> bool:
    """Whether `module` (a source path) has its extension beside it in `tree`."""
    source = tree / module
    return any(source.parent.glob(f"{source.stem}.*.so"))


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Held while a tree is checked or built: a second bench (or test) started meanwhile waits for the
    first one's build and then finds it done, instead of building into the same files at once."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


def build(python: str = sys.executable, quiet: bool = True) -> Path:
    """The compiled tree, built unless it is up to date; CompileError says why it could not be."""
    with exclusive():
        return _build(python, quiet)


def _build(python: str, quiet: bool) -> Path:
    stamp = TREE / ".digest"
    wanted = digest()
    if stamp.exists() and stamp.read_text() == wanted:
        return TREE
    shutil.rmtree(TREE, ignore_errors=True)
    for source in _sources():  # what the digest covers, and nothing else
        copy = TREE / source.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, copy)
    _compile(TREE, compiled_modules(), python, quiet)
    stamp.write_text(wanted)
    return TREE


def build_at(ref: str, python: str = sys.executable, quiet: bool = True) -> Path:
    """The project as it was at git `ref`, compiled as `build` compiles it (built once per commit)."""
    with exclusive():
        return _build_at(ref, python, quiet)


def _build_at(ref: str, python: str, quiet: bool) -> Path:
    tree = export_at(ref)
    stamp = tree / ".built"
    if not stamp.exists():
        modules: list[str] = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["mothership"]["compiled"]
        _compile(tree, modules, python, quiet)
        stamp.write_text("compiled\n")
    return tree


def export_at(ref: str) -> Path:
    """build/at-<commit>/: the files of git `ref` (as `git archive` gives them), kept once exported."""
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=ROOT,
                           capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise CompileError(f"{ref!r} is not a commit in {ROOT}")
    commit = found.stdout.strip()
    tree = ROOT / "build" / f"at-{commit[:12]}"
    done = tree / ".exported"
    if done.exists():
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        raise CompileError(f"git archive {commit[:12]} failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    done.write_text(commit + "\n")
    return tree


def _compile(tree: Path, modules: Sequence[str], python: str, quiet: bool) -> None:
    """setup.py's mypyc build, in place in `tree`; CompileError unless every module in `modules` is built."""
    env = {**os.environ, "MOTHERSHIP_COMPILE": "1"}
    done = subprocess.run([python, "setup.py", "--quiet", "build_ext", "--inplace"], cwd=tree, env=env,
                          capture_output=quiet, text=True, check=False)
    missing = [m for m in modules if not is_compiled(tree, m)]
    if done.returncode != 0 or missing:
        tail = "\n".join((done.stderr or done.stdout or "").strip().splitlines()[-15:])
        raise CompileError(f"mypyc build in {tree} failed (exit {done.returncode}; not compiled: "
                           f"{', '.join(missing) or 'none'}):\n{tail}")


def sidecar_tree(python: bool = False) -> tuple[Path, str]:
    """Where a bench runs the sidecar from, and a note for its output: the compiled tree (as the image runs
    it), or the checkout itself (as Python) when asked or when the tree cannot be built."""
    if python:
        return ROOT, "the sidecar runs as Python (--python)"
    try:
        return build(), f"the sidecar runs compiled by mypyc, as the image does ({TREE})"
    except CompileError as exc:
        return ROOT, f"the sidecar is not compiled, it runs as Python here: {exc}"


def run_tests(tree: Path, extra: Sequence[str] = ()) -> int:
    """pytest on SIDECAR_TESTS inside the compiled tree, where its modules shadow nothing but themselves."""
    tests = [f"tests/{name}" for name in SIDECAR_TESTS]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, *extra],
                          cwd=tree, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compiled", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", action="store_true", help="run the sidecar's tests against the compiled tree")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    try:
        tree = build(quiet=False)
    except CompileError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"compiled: {len(compiled_modules())} modules in {tree}")
    return run_tests(tree, args.pytest_args) if args.test else 0


if __name__ == "__main__":
    sys.exit(main())
