"""`${{ … }}` expressions, `--set` and `--vars-file`, through load_manifest on small manifests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runner404.errors import ManifestError, UsageError
from runner404.manifest import load_manifest
from runner404.secret import Secret, SecretUnavailable

HEAD = """\
version: 1
name: probe
provider: local
"""
RENDERER = """\
renderer:
  preset: renderer
  command: python -m runner404.sim renderer
"""
RENDER = """\
render:
  uses: render
  pod: renderer
  input: js/
"""


def block(name: str, body: str) -> str:
    return f"{name}:\n" + textwrap.indent(textwrap.dedent(body), "  ") if body else ""


def manifest(*, vars: str = "", secrets: str = "", pod: str = "", render: str = "", stages: str = "") -> str:
    """A minimal valid manifest; `pod` and `render` add lines to the renderer pod and the render stage."""
    renderer = RENDERER + textwrap.indent(textwrap.dedent(pod), "  ")
    render_stage = RENDER + textwrap.indent(textwrap.dedent(render), "  ")
    return (HEAD + block("secrets", secrets) + block("vars", vars) + block("pods", renderer)
            + block("stages", render_stage + textwrap.dedent(stages)))


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str, *, environ: dict | None = None, **kwargs):
    return load_manifest(write(tmp_path, text), environ=environ or {}, **kwargs)


def failures(tmp_path: Path, text: str, **kwargs) -> list:
    with pytest.raises(ManifestError) as info:
        load(tmp_path, text, **kwargs)
    return [d for d in info.value.diagnostics if d.severity == "error"]


def failure(tmp_path: Path, text: str, **kwargs):
    diagnostics = failures(tmp_path, text, **kwargs)
    assert len(diagnostics) == 1, diagnostics
    return diagnostics[0]


def position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first `needle` in `text`."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in text")


def report(title: str, input: str = "x/") -> str:
    """A report stage whose free-text `title` shows what an expression became."""
    return f'report:\n  uses: report\n  input: {input}\n  title: "{title}"\n'


def test_the_minimal_manifest_loads(tmp_path):
    manifest_ = load(tmp_path, manifest())
    assert list(manifest_.stages) == ["render"]
    assert manifest_.stages["render"].params["input"] == "js/"
    assert manifest_.warnings == []


# -- types -----------------------------------------------------------------------------------------


def test_a_whole_expression_keeps_an_int(tmp_path):
    m = load(tmp_path, manifest(vars="n: 3\n", render="concurrency: ${{ vars.n }}\n"))
    assert m.stages["render"].params["concurrency"] == 3
    assert type(m.stages["render"].params["concurrency"]) is int


def test_a_whole_expression_keeps_a_bool(tmp_path):
    m = load(tmp_path, manifest(vars="keep: true\n", pod="keep: ${{ vars.keep }}\n"))
    assert m.data["pods"]["renderer"]["keep"] is True
    assert m.pods["renderer"].keep is True


def test_a_whole_expression_keeps_a_mapping(tmp_path):
    views = "{white: [{name: front, theta: 0, phi: 0}], gray: [{name: g, theta: 90, phi: -10}]}"
    m = load(tmp_path, manifest(vars=f"views: {views}\n", render="views: ${{ vars.views }}\n"))
    assert m.stages["render"].params["views"] == {
        "white": [{"name": "front", "theta": 0, "phi": 0}], "gray": [{"name": "g", "theta": 90, "phi": -10}]}


def test_a_whole_expression_keeps_a_list(tmp_path):
    stage = "report:\n  uses: report\n  input: x/\n  formats: ${{ vars.formats }}\n"
    m = load(tmp_path, manifest(vars="formats: [json, html]\n", stages=stage))
    assert m.stages["report"].params["formats"] == ["json", "html"]


def test_text_around_an_expression_makes_a_string(tmp_path):
    m = load(tmp_path, manifest(vars="seed: 42\n", stages=report("Seed ${{ vars.seed }}!")))
    assert m.stages["report"].params["title"] == "Seed 42!"


def test_two_expressions_side_by_side_make_a_string(tmp_path):
    m = load(tmp_path, manifest(vars="seed: 42\n", stages=report("${{ vars.seed }}${{ vars.seed }}")))
    assert m.stages["report"].params["title"] == "4242"


def test_an_int_in_text_is_a_schema_error_not_silently_coerced(tmp_path):
    text = manifest(vars="n: 3\n", render='concurrency: "n=${{ vars.n }}"\n')
    diagnostic = failure(tmp_path, text)
    assert "expected integer" in diagnostic.message


# -- env ---------------------------------------------------------------------------------------------


def test_env_reads_the_given_environ(tmp_path):
    m = load(tmp_path, manifest(vars="host: ${{ env.HOST }}\nn: ${{ env.N | int }}\n"),
             environ={"HOST": "box", "N": "5"})
    assert m.vars == {"host": "box", "n": 5}


def test_env_does_not_read_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER404_PROBE_VAR", "leaked")
    diagnostic = failure(tmp_path, manifest(vars="x: ${{ env.RUNNER404_PROBE_VAR }}\n"), environ={})
    assert "'env.RUNNER404_PROBE_VAR' is not set in the environment" in diagnostic.message


# -- undefined names ---------------------------------------------------------------------------------


def assert_points_at(diagnostic, text: str, expression: str) -> None:
    assert diagnostic.file.endswith("m.yaml")
    assert (diagnostic.line, diagnostic.col) == position(text, expression)
    assert diagnostic.end_col == diagnostic.col + len(expression)
    assert f"in {expression}" in diagnostic.message


def test_undefined_var_points_at_the_expression_with_a_suggestion(tmp_path):
    text = manifest(vars="seed: 42\n", stages=report("Seed ${{ vars.sed }}"))
    diagnostic = failure(tmp_path, text)
    assert_points_at(diagnostic, text, "${{ vars.sed }}")
    assert "'vars.sed' is not defined (did you mean 'seed'?)" in diagnostic.message


def test_undefined_env(tmp_path):
    text = manifest(stages=report("${{ env.HOME_DIR }}"))
    diagnostic = failure(tmp_path, text, environ={"HOME_DIRS": "/x"})
    assert_points_at(diagnostic, text, "${{ env.HOME_DIR }}")
    assert "'env.HOME_DIR' is not set in the environment (did you mean 'HOME_DIRS'?)" in diagnostic.message


def test_undeclared_secret(tmp_path):
    text = manifest(secrets="token: {env: TOKEN}\n", vars="auth: ${{ secrets.tokn }}\n")
    diagnostic = failure(tmp_path, text)
    assert_points_at(diagnostic, text, "${{ secrets.tokn }}")
    assert "'secrets.tokn' is not declared under secrets: (did you mean 'token'?)" in diagnostic.message


def test_unknown_stage(tmp_path):
    text = manifest(stages=report("x", input="${{ stages.rendr.outputs.dir }}"))
    diagnostic = failure(tmp_path, text)
    assert_points_at(diagnostic, text, "${{ stages.rendr.outputs.dir }}")
    assert "unknown stage 'rendr' (did you mean 'render'?)" in diagnostic.message


def test_unknown_top_level_name_lists_the_available_ones(tmp_path):
    text = manifest(vars="seed: 1\n", stages=report("${{ varz.seed }}"))
    diagnostic = failure(tmp_path, text)
    assert_points_at(diagnostic, text, "${{ varz.seed }}")
    assert "undefined name 'varz' (did you mean 'vars'?)" in diagnostic.message
    assert "names available: vars, env, secrets, stages" in diagnostic.message


def test_the_second_expression_on_a_line_is_located(tmp_path):
    text = manifest(vars="seed: 1\n", stages=report("${{ vars.seed }} and ${{ vars.sed }}"))
    assert_points_at(failure(tmp_path, text), text, "${{ vars.sed }}")


def test_a_stage_without_outputs_has_no_dir(tmp_path):
    warm = "warm:\n  uses: pod\n  pod: renderer\n"
    text = manifest(stages=warm + report("x", input="${{ stages.warm.outputs.dir }}"))
    assert "'stages.warm.outputs.dir' is not defined" in failure(tmp_path, text).message


def test_vars_cannot_refer_to_vars(tmp_path):
    text = manifest(vars="a: 1\nb: ${{ vars.a }}\n")
    assert_points_at(failure(tmp_path, text), text, "${{ vars.a }}")


def test_vars_referring_to_vars_is_explained(tmp_path):
    message = failure(tmp_path, manifest(vars="a: 1\nb: ${{ vars.a }}\n")).message
    assert "did you mean 'vars'" not in message


def test_other_expression_errors_are_reported(tmp_path):
    cases = {
        "${{ vars.seed": "unterminated expression",
        "${{ 1/0 }}": "ZeroDivisionError",
        "${{ {'a': 1} }} x": "cannot be embedded in text",
        "${{ ''.__class__ }}": "unsafe",
    }
    for expression, expected in cases.items():
        message = failure(tmp_path, manifest(vars="seed: 1\n", stages=report(expression))).message
        assert expected in message, (expression, message)


# -- stages.<id>.outputs -------------------------------------------------------------------------------


def test_outputs_dir_defaults_to_out_stage_id(tmp_path):
    m = load(tmp_path, manifest(stages=report("${{ stages.render.outputs.dir }}")))
    assert m.stages["report"].params["title"] == "out/render"


def test_outputs_dir_is_the_stages_output(tmp_path):
    m = load(tmp_path, manifest(render="output: renders/good\n",
                                stages=report("${{ stages.render.outputs.dir }}")))
    assert m.stages["report"].params["title"] == "renders/good"


def test_outputs_dir_resolves_an_expression_in_output(tmp_path):
    m = load(tmp_path, manifest(vars="base: renders\n", render="output: ${{ vars.base }}/good\n",
                                stages=report("${{ stages.render.outputs.dir }}")))
    assert m.stages["render"].output == "renders/good"
    assert m.stages["report"].params["title"] == "renders/good"


JUDGE = """\
judge:
  preset: judge
  command: python -m runner404.sim vlm
"""


def judge_manifest(extra_stages: str) -> str:
    duel = ("duel:\n  uses: judge\n  pod: judge\n  prompts: demo\n  seed: 1\n"
            "  left: ${{ stages.render.outputs.dir }}\n  right: other/\n")
    text = manifest(stages=duel + extra_stages)
    text = text.replace("pods:\n", "prompts:\n  demo:\n    items: [https://example.com/a.png]\npods:\n" + textwrap.indent(JUDGE, "  "))
    return text


def test_judge_outputs_have_duels_and_match(tmp_path):
    m = load(tmp_path, judge_manifest(report("${{ stages.duel.outputs.duels }} ${{ stages.duel.outputs.match }}")))
    assert m.stages["report"].params["title"] == "out/duel/duels.json out/duel/match.json"


def test_report_outputs(tmp_path):
    first = "first:\n  uses: report\n  input: x/\n  output: reports/\n"
    names = ("json", "markdown", "html", "junit")
    title = " ".join(f"${{{{ stages.first.outputs.{n} }}}}" for n in names)
    m = load(tmp_path, manifest(stages=first + report(title)))
    assert m.stages["report"].params["title"].split() == [
        "reports/report.json", "reports/summary.md", "reports/report.html", "reports/junit.xml"]


def test_a_stage_referring_to_its_own_outputs_is_an_error(tmp_path):
    text = manifest(stages=report("x", input="${{ stages.report.outputs.dir }}/sub"))
    assert "stage 'report' refers to its own outputs" in failure(tmp_path, text).message


# -- dependency edges ----------------------------------------------------------------------------------


def edges(manifest_) -> dict[tuple[str, str], str]:
    return {(e.stage, e.on): e.why for e in manifest_.edges}


def test_a_reference_creates_an_expression_edge_at_the_expression(tmp_path):
    text = manifest(stages=report("x", input="${{ stages.render.outputs.dir }}"))
    m = load(tmp_path, text)
    assert edges(m) == {("report", "render"): "expression"}
    [edge] = m.edges
    assert (edge.mark.line, edge.mark.col) == position(text, "${{ stages.render.outputs.dir }}")
    assert m.dependencies("report") == ["render"]


def test_a_literal_input_equal_to_an_output_creates_a_path_edge(tmp_path):
    m = load(tmp_path, manifest(render="output: renders/good\n", stages=report("x", input="./renders/good/")))
    assert edges(m) == {("report", "render"): "path"}


def test_a_default_output_folder_creates_a_path_edge(tmp_path):
    m = load(tmp_path, manifest(stages=report("x", input="out/render")))
    assert edges(m) == {("report", "render"): "path"}


def test_an_unrelated_input_creates_no_edge(tmp_path):
    assert load(tmp_path, manifest(stages=report("x", input="elsewhere/"))).edges == []


def test_dashed_stage_ids_read_as_dotted_names(tmp_path):
    second = "render-good:\n  uses: render\n  pod: renderer\n  input: js2/\n"
    dotted = load(tmp_path, manifest(stages=second + report("x", input="${{ stages.render-good.outputs.dir }}")))
    subscript = load(tmp_path, manifest(stages=second + report("x", input="${{ stages['render-good'].outputs.dir }}")))
    assert dotted.stages["report"].params["input"] == "out/render-good"
    assert subscript.stages["report"].params["input"] == "out/render-good"
    assert edges(dotted) == edges(subscript) == {("report", "render-good"): "expression"}


def test_dashes_outside_dotted_names_still_subtract(tmp_path):
    m = load(tmp_path, manifest(vars="n: ${{ 10-3 }}\n"))
    assert m.vars["n"] == 7


# -- secrets ---------------------------------------------------------------------------------------


SECRETS = "key: {env: API_KEY}\ntoken: {file: token.txt}\n"


def test_secrets_resolve_to_masked_secret_objects(tmp_path):
    m = load(tmp_path, manifest(secrets=SECRETS, vars="key: ${{ secrets.key }}\n"),
             environ={"API_KEY": "sk-123"})
    value = m.vars["key"]
    assert isinstance(value, Secret)
    assert str(value) == repr(value) == "***"
    assert value.reveal() == "sk-123"
    assert value == m.secrets["key"]


def test_a_missing_secret_env_var_fails_only_on_reveal(tmp_path):
    m = load(tmp_path, manifest(secrets=SECRETS, vars="key: ${{ secrets.key }}\n"), environ={})
    with pytest.raises(SecretUnavailable, match="API_KEY is not set"):
        m.vars["key"].reveal()


def test_a_file_secret_is_read_lazily_relative_to_the_manifest(tmp_path):
    m = load(tmp_path, manifest(secrets=SECRETS, vars="token: ${{ secrets.token }}\n"))
    with pytest.raises(SecretUnavailable, match="token.txt"):
        m.vars["token"].reveal()
    (tmp_path / "token.txt").write_text("file-value\n")
    assert m.vars["token"].reveal() == "file-value"
    (tmp_path / "token.txt").write_text("rotated\n")
    assert m.vars["token"].reveal() == "rotated"


def test_text_with_a_secret_becomes_a_secret(tmp_path):
    m = load(tmp_path, manifest(secrets=SECRETS, vars='auth: "Bearer ${{ secrets.key }}!"\n'),
             environ={"API_KEY": "sk-123"})
    auth = m.vars["auth"]
    assert isinstance(auth, Secret)
    assert str(auth) == "***"
    assert auth.names == ("key",)
    assert auth.reveal() == "Bearer sk-123!"


def test_a_secret_passed_through_a_var_stays_a_secret(tmp_path):
    text = manifest(secrets=SECRETS, vars='auth: "Bearer ${{ secrets.key }}"\n',
                    stages=report("${{ vars.auth }}"))
    m = load(tmp_path, text, environ={"API_KEY": "sk-123"})
    assert m.stages["report"].params["title"].reveal() == "Bearer sk-123"


def test_a_secret_in_a_pod_env_reaches_the_pod(tmp_path):
    m = load(tmp_path, manifest(secrets=SECRETS, pod="env: {TOKEN: '${{ secrets.key }}'}\n"),
             environ={"API_KEY": "sk-123"})
    token = m.pods["renderer"].env["TOKEN"]
    assert isinstance(token, Secret)
    assert token.reveal() == "sk-123"


# -- --set -------------------------------------------------------------------------------------------


SEEDED = dict(vars="seed: 42\n", render="concurrency: ${{ vars.seed }}\n")


def test_set_overrides_a_var(tmp_path):
    m = load(tmp_path, manifest(**SEEDED), sets=["vars.seed=7"])
    assert m.vars["seed"] == 7
    assert m.stages["render"].params["concurrency"] == 7


def test_set_values_are_parsed_as_yaml(tmp_path):
    m = load(tmp_path, manifest(**SEEDED), sets=["vars.flag=true", "vars.list=[1, two]", "vars.text=007x"])
    assert m.vars["flag"] is True
    assert m.vars["list"] == [1, "two"]
    assert m.vars["text"] == "007x"


def test_set_creates_nested_keys(tmp_path):
    m = load(tmp_path, manifest(**SEEDED), sets=["vars.deep.er.key=1"])
    assert m.vars["deep"] == {"er": {"key": 1}}


def test_set_a_stage_parameter_directly(tmp_path):
    m = load(tmp_path, manifest(**SEEDED), sets=["stages.render.concurrency=5"])
    assert m.stages["render"].params["concurrency"] == 5


@pytest.mark.parametrize("assignment", ["vars.seed", "vars..seed=1", "=1", "vars.seed=[1"])
def test_a_bad_set_is_a_usage_error(tmp_path, assignment):
    with pytest.raises(UsageError, match="--set"):
        load(tmp_path, manifest(**SEEDED), sets=[assignment])


def test_set_through_a_scalar_is_reported_at_the_set(tmp_path):
    diagnostic = failure(tmp_path, manifest(**SEEDED), sets=["vars.seed.x=1"])
    assert diagnostic.file == "--set"
    assert "'vars.seed' is not a mapping" in diagnostic.message


def test_a_wrongly_typed_set_value_is_reported_at_the_set(tmp_path):
    diagnostic = failure(tmp_path, manifest(**SEEDED), sets=["stages.render.concurrency=many"])
    assert diagnostic.file == "--set"
    assert diagnostic.snippet == "stages.render.concurrency=many"
    assert "expected integer" in diagnostic.message


# -- --vars-file -----------------------------------------------------------------------------------


def test_vars_files_merge_into_vars(tmp_path):
    extra = write(tmp_path, "seed: 9\nname: extra\n", "vars.yaml")
    m = load(tmp_path, manifest(**SEEDED), vars_files=[extra])
    assert m.vars == {"seed": 9, "name": "extra"}
    assert m.stages["render"].params["concurrency"] == 9


def test_vars_files_create_vars_when_the_manifest_has_none(tmp_path):
    extra = write(tmp_path, "seed: 3\n", "vars.yaml")
    m = load(tmp_path, manifest(render="concurrency: ${{ vars.seed }}\n"), vars_files=[extra])
    assert m.stages["render"].params["concurrency"] == 3


def test_set_wins_over_vars_files(tmp_path):
    extra = write(tmp_path, "seed: 9\n", "vars.yaml")
    m = load(tmp_path, manifest(**SEEDED), vars_files=[extra], sets=["vars.seed=5"])
    assert m.vars["seed"] == 5


def test_an_expression_error_in_a_vars_file_points_at_the_vars_file(tmp_path):
    extra_text = "seed: 9\nhost: ${{ env.NO_SUCH }}\n"
    extra = write(tmp_path, extra_text, "vars.yaml")
    diagnostic = failure(tmp_path, manifest(**SEEDED), vars_files=[extra])
    assert diagnostic.file == str(extra)
    assert (diagnostic.line, diagnostic.col) == position(extra_text, "${{ env.NO_SUCH }}")


def test_a_type_error_from_a_vars_file_value_is_reported(tmp_path):
    extra = write(tmp_path, "seed: lots\n", "vars.yaml")
    diagnostic = failure(tmp_path, manifest(**SEEDED), vars_files=[extra])
    assert "expected integer, got string 'lots'" in diagnostic.message


def test_yaml_problems_in_a_vars_file_name_the_vars_file(tmp_path):
    duplicate = write(tmp_path, "seed: 1\nseed: 2\n", "dup.yaml")
    listing = write(tmp_path, "- 1\n", "list.yaml")
    for extra, expected in ((duplicate, "duplicate key 'seed'"), (listing, "must be a mapping")):
        diagnostic = failure(tmp_path, manifest(**SEEDED), vars_files=[extra])
        assert diagnostic.file == str(extra)
        assert expected in diagnostic.message


# -- keys and filters --------------------------------------------------------------------------------


def test_expressions_in_keys_are_rejected_at_the_key(tmp_path):
    text = manifest(vars="'${{ env.K }}': 1\n")
    diagnostics = failures(tmp_path, text, environ={"K": "k"})
    rejected = [d for d in diagnostics if d.message == "expressions are not allowed in keys"]
    assert len(rejected) == 1
    assert (rejected[0].line, rejected[0].col) == position(text, "'${{ env.K }}'")


def test_jinja_filters_work(tmp_path):
    text = manifest(vars='n: ${{ env.MISSING | default(3) }}\nup: ${{ env.NAME | upper }}\n'
                         'mixed: "${{ env.NAME | upper }}-x"\n')
    m = load(tmp_path, text, environ={"NAME": "bob"})
    assert m.vars == {"n": 3, "up": "BOB", "mixed": "BOB-x"}
