"""Prompt sets: the stem rule, inline entries, prompts JSON files and text files of URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner404.prompts import Prompt, PromptError, PromptSet, build_prompts, read_prompt_file, stem_from_url


def problems(entries, **kwargs) -> list[tuple[int | None, str]]:
    with pytest.raises(PromptError) as info:
        build_prompts(entries, **kwargs)
    return info.value.problems


def file_problems(path: Path, display: str | None = None) -> list[tuple[int | None, str]]:
    with pytest.raises(PromptError) as info:
        read_prompt_file(path, display)
    return info.value.problems


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- stem_from_url -------------------------------------------------------------------------------


def test_stem_is_the_last_segment_up_to_its_first_dot_lowercased():
    assert stem_from_url("https://example.org/round/7/Apple.PNG") == "apple"
    assert stem_from_url("https://example.org/archive.tar.gz") == "archive"


def test_stem_ignores_query_and_fragment():
    assert stem_from_url("https://example.org/a/boat.png?size=512&v=2#top") == "boat"
    assert stem_from_url("https://example.org/a/boat.png#frag.ment") == "boat"


def test_stem_of_a_local_path():
    assert stem_from_url("images/cactus.png") == "cactus"
    assert stem_from_url("images/duck?size=2.5") == "duck"
    assert stem_from_url("images/owl.png#views/front") == "owl"
    assert stem_from_url("/abs/path/Lamp.jpeg") == "lamp"


def test_stem_of_windows_style_paths():
    assert stem_from_url("images\\mug.png") == "mug"
    assert stem_from_url("C:\\Users\\me\\Tree.PNG") == "tree"


def test_stem_of_a_folder_url_is_the_folder():
    assert stem_from_url("https://example.org/prompts/vase/") == "vase"


def test_stem_of_any_scheme():
    assert stem_from_url("S3://bucket/k/Obj.glb") == "obj"


# -- build_prompts -------------------------------------------------------------------------------


def test_strings_and_objects_become_prompts():
    prompts = build_prompts(["https://x.org/a.png", {"image_url": "b.png"}, {"stem": "c", "image_url": "q.png"}])
    assert prompts == [Prompt("a", "https://x.org/a.png"), Prompt("b", "b.png"), Prompt("c", "q.png")]


def test_given_stems_and_urls_are_stripped_and_stems_lowercased():
    [prompt] = build_prompts([{"stem": "  Apple ", "image_url": "  a.png \n"}])
    assert prompt == Prompt("apple", "a.png")


def test_duplicate_stems_name_both_entries():
    assert problems(["x/a.png", "y/b.png", {"stem": "A", "image_url": "z.png"}]) == [
        (2, "prompts[2]: duplicate stem 'a' (also prompts[0])")]


def test_bad_given_stem():
    [(index, message)] = problems([{"stem": "a-b", "image_url": "x.png"}])
    assert index == 0
    assert message == "prompts[0]: stem 'a-b' (given) must be lowercase letters and digits only"


def test_bad_derived_stem_names_the_url():
    [(_, message)] = problems(["https://x.org/my-file.png"])
    assert "stem 'my-file' (derived from 'https://x.org/my-file.png')" in message


def test_url_without_a_path_has_no_valid_stem():
    [(_, message)] = problems(["https://x.org"])
    assert "stem ''" in message


def test_non_object_entries():
    assert problems(["a.png", 5, ["b.png"]]) == [
        (1, "prompts[1] must be an object"), (2, "prompts[2] must be an object")]


@pytest.mark.parametrize("url", ["", "   ", None, 3])
def test_empty_or_missing_image_url(url):
    entry = {"stem": "a"} if url is None else {"image_url": url}
    assert problems([entry]) == [(0, "prompts[0].image_url must be a non-empty string")]


@pytest.mark.parametrize("stem", ["", "  ", 3])
def test_empty_or_non_string_given_stem(stem):
    assert problems([{"stem": stem, "image_url": "a.png"}]) == [
        (0, "prompts[0].stem must be a non-empty string when provided")]


def test_every_problem_is_reported_and_where_names_the_entries():
    found = problems([5, "ok.png", {"image_url": ""}, "ok.png"], where="items")
    assert [index for index, _ in found] == [0, 2, 3]
    assert found[0][1].startswith("items[0]")
    assert "also items[1]" in found[2][1]


def test_labels_name_the_entries():
    found = problems(["a.png", "b.png", "A.png"], labels=["line 2", "line 4", "line 9"])
    assert found == [(2, "line 9: duplicate stem 'a' (also line 2)")]


def test_prompt_set_stems_keep_order():
    prompt_set = PromptSet("demo", tuple(build_prompts(["z.png", "a.png", "m.png"])), None)
    assert prompt_set.stems == ["z", "a", "m"]


# -- read_prompt_file: JSON ------------------------------------------------------------------------


def test_json_file_with_an_int_seed(tmp_path):
    path = write(tmp_path, "p.json", '{"prompts": [{"stem": "apple", "image_url": "a.png"}, "b.png"], "seed": 42}')
    assert read_prompt_file(path) == ([Prompt("apple", "a.png"), Prompt("b", "b.png")], 42)


def test_json_file_without_a_seed(tmp_path):
    assert read_prompt_file(write(tmp_path, "p.json", '{"prompts": ["a.png"]}'))[1] is None


@pytest.mark.parametrize("seed, expected", [('"12"', 12), ('" 7 "', 7), ("0", 0)])
def test_json_numeric_seeds(tmp_path, seed, expected):
    path = write(tmp_path, "p.json", f'{{"prompts": ["a.png"], "seed": {seed}}}')
    assert read_prompt_file(path)[1] == expected


@pytest.mark.parametrize("seed", ["-1", "true", "1.5", '"abc"', "[]"])
def test_json_bad_seed(tmp_path, seed):
    path = write(tmp_path, "p.json", f'{{"prompts": ["a.png"], "seed": {seed}}}')
    assert file_problems(path, "prompts.json") == [(None, "prompts.json: 'seed' in prompts JSON must be an integer")]


def test_json_bad_seed_and_bad_entries_are_reported_together(tmp_path):
    path = write(tmp_path, "p.json", '{"prompts": ["a.png", 4], "seed": "x"}')
    assert file_problems(path, "p.json") == [
        (None, "p.json: 'seed' in prompts JSON must be an integer"),
        (1, "p.json: prompts[1] must be an object")]


def test_bad_json_names_line_and_column(tmp_path):
    path = write(tmp_path, "p.json", '{"prompts": [\n  "a.png",\n]}')
    [(index, message)] = file_problems(path, "shown.json")
    assert index is None
    assert message.startswith("invalid JSON in shown.json at line 3 column 1:")


@pytest.mark.parametrize("text", ['{"prompts": []}', '{"seed": 1}', '["a.png"]', '{"prompts": "a.png"}'])
def test_json_needs_a_non_empty_prompts_list(tmp_path, text):
    path = write(tmp_path, "p.json", text)
    assert file_problems(path, "p.json") == [(None, "p.json: JSON must contain a non-empty 'prompts' list")]


def test_json_content_is_recognised_whatever_the_suffix_and_with_a_bom(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes(b'\xef\xbb\xbf  {"prompts": ["a.png"], "seed": 3}')
    assert read_prompt_file(path) == ([Prompt("a", "a.png")], 3)


# -- read_prompt_file: text -----------------------------------------------------------------------


def test_text_file_skips_comments_and_blank_lines(tmp_path):
    path = write(tmp_path, "p.txt", "# header\n\nhttps://x.org/a.png\n   # indented comment\n  b.png  \n\n")
    assert read_prompt_file(path) == ([Prompt("a", "https://x.org/a.png"), Prompt("b", "b.png")], None)


def test_text_file_problems_name_the_line(tmp_path):
    path = write(tmp_path, "p.txt", "# c\nhttps://x.org/a.png\n\nhttps://x.org/bad-name.png\nhttps://x.org/A.jpg\n")
    assert [message for _, message in file_problems(path, "round/p.txt")] == [
        "round/p.txt line 4: stem 'bad-name' (derived from 'https://x.org/bad-name.png') "
        "must be lowercase letters and digits only",
        "round/p.txt line 5: duplicate stem 'a' (also round/p.txt line 2)",
    ]


def test_text_file_without_urls(tmp_path):
    path = write(tmp_path, "p.txt", "# only comments\n\n   \n")
    assert file_problems(path, "p.txt") == [(None, "p.txt lists no image URLs")]


# -- read_prompt_file: reading problems and display naming -------------------------------------------


def test_missing_file_is_named_as_displayed(tmp_path):
    assert file_problems(tmp_path / "nope.json", "sets/nope.json") == [
        (None, "prompts file sets/nope.json not found")]


def test_non_utf8_file(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"https://x.org/\xff.png\n")
    [(_, message)] = file_problems(path, "p.txt")
    assert message.startswith("prompts file p.txt is not UTF-8 text")
    assert "at byte 14" in message


def test_display_defaults_to_the_path(tmp_path):
    path = write(tmp_path, "p.json", "{}")
    assert file_problems(path) == [(None, f"{path}: JSON must contain a non-empty 'prompts' list")]


def test_display_is_used_in_entry_messages(tmp_path):
    path = write(tmp_path, "p.json", '{"prompts": ["a.png", "a.png"]}')
    [(_, message)] = file_problems(path, "rel/p.json")
    assert message == "rel/p.json: prompts[1]: duplicate stem 'a' (also prompts[0])"
