"""A manifest stream as documents: split at `---`, each loaded with ruamel.yaml's round-trip
loader (or as JSON) and written back in the style it came in. A document nothing changed is
given back as its original text, so comments, quotes and spacing outside our edits survive.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

# A document marker is `---` or `...` at the start of a line, followed by a space or the line's end
# (YAML 1.2, 9.1.2); no scalar may hold one at column 0, so splitting lines is exact.
_MARKER = re.compile(r"^(---|\.\.\.)(?=[ \t\r\n]|$)")


class InjectError(ValueError):
    """Input `inject` cannot use: one line naming the object and what to do."""


@dataclass
class Document:
    source: str  # the file's name, or "standard input"
    number: int  # 1 for the file's first document
    head: str  # the `---` line before the body, as given ("" for none)
    text: str  # the body as given
    data: Any  # the loaded body (None for an empty document)
    is_json: bool

    @property
    def where(self) -> str:
        """`deploy.yaml document 2`, for messages."""
        return f"{self.source} document {self.number}"

    def render(self, changed: bool) -> str:
        if not changed:
            return self.head + self.text
        if self.is_json:
            body = json.dumps(self.data, indent=_json_indent(self.text), ensure_ascii=False)
            return self.head + body + ("\n" if self.text.endswith("\n") else "")
        out = io.StringIO()
        round_trip(*_yaml_indent(self.text)).dump(self.data, out)
        return self.head + out.getvalue()


def round_trip(mapping: int = 2, offset: int = 0) -> YAML:
    """A ruamel.yaml round-trip instance: quotes kept, lines never re-wrapped."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    # `creationTimestamp: null`, as kubectl writes it, rather than ruamel's bare `creationTimestamp:`
    yaml.representer.add_representer(type(None), _null)
    return yaml


def _null(representer: Any, _: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def split(text: str) -> list[tuple[str, str]]:
    """(marker line, body) per document; the first has no marker unless the stream starts with one."""
    chunks: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines(keepends=True):
        marker = _MARKER.match(line)
        if marker and marker.group(1) == "---":
            rest = line[3:]
            if rest.strip() == "" or rest.strip().startswith("#"):
                chunks.append((line, []))
            else:  # `--- {kind: Pod}`: the content belongs to the body
                chunks.append(("--- ", [rest.lstrip(" \t")]))
        elif marker:  # `...` ends the document; whatever follows starts another
            chunks[-1][1].append(line)
            chunks.append(("", []))
        else:
            chunks[-1][1].append(line)
    return [(head, "".join(lines)) for head, lines in chunks if head or lines]


def load(text: str, source: str) -> list[Document]:
    """Every document of one file (`source` names it in messages); InjectError if one does not parse."""
    documents = []
    line = 1
    for number, (head, body) in enumerate(split(text), start=1):
        line += head.count("\n")
        documents.append(_load_one(source, number, head, body, line))
        line += body.count("\n")
    return documents


def _load_one(source: str, number: int, head: str, body: str, first_line: int) -> Document:
    where = f"{source} document {number}"
    if body.lstrip().startswith(("{", "[")):
        try:
            return Document(source, number, head, body, json.loads(body), is_json=True)
        except ValueError:
            pass  # flow-style YAML, not JSON: the YAML loader decides
    try:
        data = round_trip().load(body)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        at = f" at line {first_line + mark.line}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InjectError(f"{where}: not YAML ({problem}{at}): give Kubernetes manifests in YAML or JSON") from None
    return Document(source, number, head, body, data, is_json=False)


def plain(node: Any) -> Any:
    """The data without ruamel's comment and style wrappers: for comparing before and after."""
    if isinstance(node, dict):
        return {str(key): plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [plain(item) for item in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return str(node)


def flow(items: list[Any]) -> CommentedSeq:
    """A YAML list written on one line (`["python", "-m", "app"]`)."""
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def mapping(**items: Any) -> CommentedMap:
    return CommentedMap(items)


def quoted(text: str) -> DoubleQuotedScalarString:
    """A string written in double quotes, as Kubernetes' docs write `"8080"` and `"true"`."""
    result: DoubleQuotedScalarString = DoubleQuotedScalarString(text)
    return result


def _yaml_indent(text: str) -> tuple[int, int]:
    """(mapping indent, offset of `- ` under its key) as this document uses them; kubectl's style by default."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    found_mapping: int | None = None
    found_offset: int | None = None
    for previous, line in itertools.pairwise(lines):
        if not previous.rstrip().endswith(":"):
            continue
        key_column = len(previous) - len(previous.lstrip())
        if previous.lstrip().startswith("- "):
            key_column += 2
        column = len(line) - len(line.lstrip())
        if line.lstrip().startswith("- ") and found_offset is None and column >= key_column:
            found_offset = column - key_column
        elif not line.lstrip().startswith("- ") and found_mapping is None and column > key_column:
            found_mapping = column - key_column
        if found_mapping is not None and found_offset is not None:
            break
    return found_mapping or 2, found_offset or 0


def _json_indent(text: str) -> int:
    lines = text.lstrip().splitlines()
    if len(lines) > 1:
        second = lines[1]
        return max(1, len(second) - len(second.lstrip()))
    return 4  # kubectl's
