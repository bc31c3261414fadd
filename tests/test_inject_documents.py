"""Manifest streams split into documents, loaded, and written back in the style they came in."""

from __future__ import annotations

import pytest

from app.inject.documents import InjectError, load, plain, split


def test_split_keeps_every_byte_and_finds_every_document() -> None:
    text = "# lead\na: 1\n--- # second\nb: 2\n---\n--- {c: 3}\n...\nd: 4\n---\n"
    chunks = split(text)
    assert "".join(head + body for head, body in chunks) == text
    assert [head for head, _ in chunks] == ["", "--- # second\n", "---\n", "--- ", "", "---\n"]
    assert [body for _, body in chunks] == ["# lead\na: 1\n", "b: 2\n", "", "{c: 3}\n...\n", "d: 4\n", ""]


def test_a_marker_must_stand_alone_at_the_start_of_a_line() -> None:
    text = "a: |\n  ---\n  text\nb: ---x\n----\n"
    assert split(text) == [("", text)]


def test_load_names_the_document_and_the_line_of_a_syntax_error() -> None:
    text = "a: 1\n---\nb: 2\n---\nkind: Pod\nmetadata: {name: [x}\n"
    with pytest.raises(InjectError, match=r"^f\.yaml document 3: not YAML \(.* at line 6\): give Kubernetes"):
        load(text, "f.yaml")


def test_duplicate_keys_are_refused_rather_than_one_silently_dropped() -> None:
    with pytest.raises(InjectError, match="document 1: not YAML"):
        load("kind: Pod\nkind: Service\n", "f.yaml")


def test_json_and_flow_yaml_are_told_apart() -> None:
    (as_json,) = load('{"kind": "Pod", "n": 1}\n', "j")
    (as_yaml,) = load("{kind: Pod, n: 1}\n", "y")
    assert as_json.is_json and not as_yaml.is_json
    assert plain(as_json.data) == plain(as_yaml.data) == {"kind": "Pod", "n": 1}


def test_unchanged_documents_are_their_original_text() -> None:
    text = "kind: ConfigMap   # odd spacing kept\ndata:\n    a:   'x'\n"
    (doc,) = load(text, "f")
    assert doc.render(changed=False) == text


@pytest.mark.parametrize("text", [
    # kubectl's style: `- ` at its key's column
    "kind: Pod\nspec:\n  containers:\n  - name: a\n    ports:\n    - containerPort: 1\n",
    # the Kubernetes docs' style: `- ` indented under its key
    "kind: Pod\nspec:\n  containers:\n    - name: a\n      ports:\n        - containerPort: 1\n",
    # four-space mappings
    "kind: Pod\nspec:\n    containers:\n        - name: a\n          image: x\n",
])
def test_changed_documents_keep_their_indentation_style(text: str) -> None:
    (doc,) = load(text, "f")
    doc.data["spec"]["containers"].append({"name": "b", "ports": [{"containerPort": 2}]})
    out = doc.render(changed=True)
    assert out.startswith(text)  # the original lines, then the new entry in the same style
    del doc.data["spec"]["containers"][-1]
    assert doc.render(changed=True) == text


def test_changed_documents_keep_comments_quotes_nulls_and_long_lines() -> None:
    long = "x" * 300
    text = (f"# head\nkind: Pod  # kind\nmetadata:\n  creationTimestamp: null\n  name: 'quoted'\n"
            f"  annotations:\n    long: {long}\n")
    (doc,) = load(text, "f")
    doc.data["metadata"]["labels"] = {"a": "b"}
    assert doc.render(changed=True) == text + "  labels:\n    a: b\n"


def test_json_is_written_back_as_json_with_its_indentation() -> None:
    text = '{\n  "kind": "Pod",\n  "spec": {}\n}\n'
    (doc,) = load(text, "f")
    doc.data["spec"]["x"] = 1
    assert doc.render(changed=True) == '{\n  "kind": "Pod",\n  "spec": {\n    "x": 1\n  }\n}\n'
