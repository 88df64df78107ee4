"""YAML loading with positions: runner404.manifest.load (load_yaml, read_manifest, Document)."""

from __future__ import annotations

import pytest

from runner404.errors import ManifestError
from runner404.manifest.load import MAX_DEPTH, MAX_NODES, load_yaml, read_manifest

FILE = "m.yaml"


def load(text: str | bytes):
    raw = text.encode() if isinstance(text, str) else text
    return load_yaml(raw, FILE)


def errors(text: str | bytes) -> list:
    with pytest.raises(ManifestError) as info:
        load(text)
    return info.value.diagnostics


def only_error(text: str | bytes):
    diagnostics = errors(text)
    assert len(diagnostics) == 1, diagnostics
    return diagnostics[0]


def where(mark) -> tuple[int, int]:
    return mark.line, mark.col


# -- positions ---------------------------------------------------------------------------------

NESTED = """\
name: demo
stages:
  render:
    uses: render
    input: js/
  judge:
    left: [a, b]
    list:
      - first
      - {key: 5}
"""


def test_value_marks_are_one_based_line_and_column():
    doc = load(NESTED)
    assert where(doc.mark(("name",))) == (1, 7)
    assert where(doc.mark(("stages", "render", "uses"))) == (4, 11)
    assert where(doc.mark(("stages", "render", "input"))) == (5, 12)


def test_key_marks_point_at_the_key_not_the_value():
    doc = load(NESTED)
    assert where(doc.key_mark(("name",))) == (1, 1)
    assert where(doc.key_mark(("stages", "render"))) == (3, 3)
    assert where(doc.key_mark(("stages", "render", "input"))) == (5, 5)


def test_marks_follow_list_indexes_in_block_and_flow_lists():
    doc = load(NESTED)
    assert where(doc.mark(("stages", "judge", "left", 0))) == (7, 12)
    assert where(doc.mark(("stages", "judge", "left", 1))) == (7, 15)
    assert where(doc.mark(("stages", "judge", "list", 0))) == (9, 9)
    assert where(doc.mark(("stages", "judge", "list", 1, "key"))) == (10, 15)
    assert where(doc.key_mark(("stages", "judge", "list", 1, "key"))) == (10, 10)


def test_a_scalar_mark_carries_the_source_line_and_its_extent():
    mark = load(NESTED).mark(("stages", "render", "input"))
    assert mark.file == FILE
    assert mark.snippet == "    input: js/"
    assert mark.end_col == 15  # exclusive: underlines "js/"


def test_mark_of_an_unknown_path_falls_back_to_the_nearest_ancestor():
    doc = load(NESTED)
    assert doc.mark(("stages", "render", "missing", 3)) == doc.mark(("stages", "render"))
    assert doc.key_mark(("stages", "render", "missing")) == doc.mark(("stages", "render"))
    assert where(doc.mark(("nothing",))) == (1, 1)


# -- what keys and values become ------------------------------------------------------------------


def test_keys_stay_the_text_written():
    data = load("on: a\nyes: b\nno: c\n1: d\nnull: e\n1.5: f\n").data
    assert data == {"on": "a", "yes": "b", "no": "c", "1": "d", "null": "e", "1.5": "f"}
    assert all(isinstance(key, str) for key in data)


def test_values_are_still_typed():
    data = load("a: 1\nb: true\nc: 1.5\nd: ~\ne: 'on'\nf: 0x10\n").data
    assert data == {"a": 1, "b": True, "c": 1.5, "d": None, "e": "on", "f": 16}


def test_dates_stay_the_text_written():
    data = load("day: 2024-01-02\nwhen: 2024-01-02T10:00:00Z\n").data
    assert data == {"day": "2024-01-02", "when": "2024-01-02T10:00:00Z"}


def test_a_non_mapping_document_loads_as_is():
    assert load("- 1\n- two\n").data == [1, "two"]


def test_duplicate_keys_name_both_lines():
    diagnostic = only_error("a: 1\nb: 2\na: 3\n")
    assert where(diagnostic) == (3, 1)
    assert "duplicate key 'a'" in diagnostic.message
    assert "line 1" in diagnostic.message
    assert diagnostic.snippet == "a: 3"


def test_every_duplicate_is_reported_including_nested_ones():
    diagnostics = errors("a: 1\na: 2\nb:\n  c: 1\n  c: 2\na: 3\n")
    assert [(d.line, d.col) for d in diagnostics] == [(2, 1), (5, 3), (6, 1)]
    assert "first defined at line 4" in diagnostics[1].message


def test_same_key_in_different_mappings_is_fine():
    assert load("a:\n  x: 1\nb:\n  x: 2\n").data == {"a": {"x": 1}, "b": {"x": 2}}


def test_complex_keys_are_rejected():
    assert "mapping keys must be plain text" in only_error("{a: 1}: x\n").message


# -- merge keys ------------------------------------------------------------------------------------


def test_merge_key_copies_the_anchored_mapping():
    data = load("base: &b {x: 1, y: 2}\ncopy:\n  <<: *b\n  z: 3\n").data
    assert data["copy"] == {"x": 1, "y": 2, "z": 3}
    assert "<<" not in data["copy"]


def test_merge_key_never_overrides_explicit_keys_before_or_after_it():
    data = load("base: &b {x: 1, y: 2}\nafter:\n  <<: *b\n  x: 9\nbefore:\n  x: 8\n  <<: *b\n").data
    assert data["after"] == {"x": 9, "y": 2}
    assert data["before"] == {"x": 8, "y": 2}


def test_merge_list_earlier_sources_win():
    assert load("c: {<<: [{x: 1}, {x: 2, y: 3}]}\n").data == {"c": {"x": 1, "y": 3}}


def test_merged_keys_keep_the_position_of_their_source():
    doc = load("base: &b\n  x: 1\ncopy:\n  <<: *b\n")
    assert where(doc.mark(("copy", "x"))) == (2, 6)


def test_merge_of_a_scalar_is_an_error():
    assert "merge key '<<' takes a mapping" in only_error("c: {<<: 5}\n").message


def test_chained_merge_keys_are_flattened():
    text = "base: &base {x: 1}\nmid: &mid\n  <<: *base\n  y: 2\ntop:\n  <<: *mid\n  z: 3\n"
    assert load(text).data["top"] == {"x": 1, "y": 2, "z": 3}


# -- rejected input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["!!python/object:os.system", "!custom", "!!binary"])
def test_unsupported_tags_are_rejected_at_the_value(tag):
    diagnostic = only_error(f"a: 1\nb: {tag} x\n")
    assert where(diagnostic) == (2, 4)
    assert "unsupported YAML tag" in diagnostic.message


def test_standard_tags_are_accepted():
    assert load("a: !!str 5\nb: !!int '7'\n").data == {"a": "5", "b": 7}


def test_every_conflict_marker_is_reported():
    text = "a: 1\n<<<<<<< HEAD\nb: 2\n||||||| base\nb: 0\n=======\nb: 3\n>>>>>>> branch\n"
    diagnostics = errors(text)
    assert [d.line for d in diagnostics] == [2, 4, 6, 8]
    assert all("merge-conflict marker" in d.message for d in diagnostics)
    assert "'<<<<<<<'" in diagnostics[0].message and "'>>>>>>>'" in diagnostics[3].message


def test_seven_equals_inside_text_is_not_a_conflict_marker():
    assert load("a: |\n  =======x\n").data == {"a": "=======x\n"}


def test_utf8_bom_is_accepted_and_positions_ignore_it():
    doc = load(b"\xef\xbb\xbfname: demo\n")
    assert doc.data == {"name": "demo"}
    assert where(doc.key_mark(("name",))) == (1, 1)


def test_non_utf8_byte_reports_line_and_column():
    diagnostic = only_error(b"a: 1\nbb: caf\xe9\n")
    assert where(diagnostic) == (2, 8)
    assert "not valid UTF-8" in diagnostic.message and "0xe9" in diagnostic.message


def test_non_utf8_byte_after_a_bom_names_the_right_byte():
    diagnostic = only_error(b"\xef\xbb\xbfx: \xff\n")
    assert "0xff" in diagnostic.message
    assert where(diagnostic) == (1, 4)


def test_non_utf8_column_counts_characters_not_bytes():
    diagnostic = only_error("x: éé".encode() + b"\xff\n")
    assert where(diagnostic) == (1, 6)


@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff"])
def test_utf16_is_rejected(bom):
    diagnostic = only_error(bom + "a: 1\n".encode("utf-16-le"))
    assert "UTF-16" in diagnostic.message


def test_control_characters_are_rejected_with_their_position():
    diagnostic = only_error(b"a: 1\n\x07b: 2\n")
    assert where(diagnostic) == (2, 1)
    assert "#x0007" in diagnostic.message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_empty_file(text):
    assert "empty" in only_error(text).message


def test_multiple_documents_are_rejected_at_the_second():
    diagnostic = only_error("a: 1\n---\nb: 2\n")
    assert where(diagnostic) == (2, 1)
    assert "single document" in diagnostic.message


def test_syntax_error_points_at_the_problem():
    diagnostic = only_error("a: 1\nb: c: d\n")
    assert where(diagnostic) == (2, 5)
    assert diagnostic.message == "YAML syntax error: mapping values are not allowed here"


def test_syntax_error_at_end_of_file_points_where_the_construct_began():
    diagnostic = only_error('a: 1\nb: "never closed\n')
    assert where(diagnostic) == (2, 4)
    assert diagnostic.snippet == 'b: "never closed'


def test_tab_indentation_is_explained():
    assert "tabs" in only_error("a:\n\tb: 1\n").message


def test_recursive_alias_is_stopped():
    diagnostic = only_error("a: &a [*a]\n")
    assert f"more than {MAX_DEPTH} levels" in diagnostic.message
    assert where(diagnostic) == (1, 4)


def test_recursive_alias_through_a_mapping_and_a_merge_is_stopped():
    assert "recursive alias" in only_error("a: &a {b: *a}\n").message
    assert "recursive alias" in only_error("a: &a {<<: *a}\n").message


def test_alias_bomb_is_stopped_with_one_error():
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):  # 10**9 values once expanded
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    diagnostic = only_error("\n".join(lines) + "\n")
    assert f"more than {MAX_NODES} values" in diagnostic.message


# -- read_manifest ---------------------------------------------------------------------------------


def test_read_manifest_reads_a_file_and_names_it(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("a: 1\n")
    assert read_manifest(path).data == {"a": 1}
    assert read_manifest(path).file == str(path)
    assert read_manifest(path, "shown.yaml").mark(("a",)).file == "shown.yaml"


def test_read_manifest_missing_file(tmp_path):
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path / "nope.yaml", "nope.yaml")
    [diagnostic] = info.value.diagnostics
    assert (diagnostic.file, diagnostic.message) == ("nope.yaml", "file not found")


def test_read_manifest_directory(tmp_path):
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path, "dir")
    [diagnostic] = info.value.diagnostics
    assert "is a directory" in diagnostic.message
