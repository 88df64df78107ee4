"""`${{ … }}` expressions in manifest values: Jinja2, sandboxed, strict.

Names: `vars`, `env` (the process environment), `secrets`, `prompts.<id>` and
`stages.<id>.outputs`. A value that is exactly one expression keeps the expression's type
(`seed: ${{ vars.seed }}` stays an integer); text around expressions makes a string. An undefined
name is an error at the position of the expression, never an empty string. Referring to
`stages.<id>` records a dependency edge.

`prompts.<id>` describes a prompt set: `seed` (its `seed:`, the seed of its file, or the round's
`seed.json`) and, for a round prompt set, `round` (the number, also when written `current`),
`competition_url` and `config` (the competition's `config.json`, e.g.
`${{ prompts.round.config.win_margin }}`). Prompt sets are resolved before everything else and
cannot refer to `prompts` or `stages` themselves; a round set's `competition_url` default (the
environment, else the public repository) and `round: current` are written into the resolved tree,
so the rest of the pipeline sees one concrete round. Files are read lazily, only when referred to.

Jinja2 itself is in `sandbox`, imported on the first expression evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner404.diagnostics import Diagnostic, Mark, did_you_mean
from runner404.errors import Runner404Error
from runner404.manifest.load import Document, JsonPath
from runner404.secret import Secret

_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)
# `stages.render-good.outputs` reads as one dotted name, as in CI expression languages; Jinja
# would parse `render - good`, so dashed segments become subscripts before compiling.
_DOTTED = re.compile(r"\b(?:vars|env|secrets|stages|prompts)(?:\.[A-Za-z_][A-Za-z0-9_-]*)+")
_DASHED_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*-[A-Za-z0-9_-]*)")


def _dashes_to_subscripts(source: str) -> str:
    return _DOTTED.sub(lambda m: _DASHED_SEGMENT.sub(lambda s: f"['{s.group(1)}']", m.group(0)), source)
TOP_LEVEL_NAMES = ("vars", "env", "secrets", "stages", "prompts")
# Files each stage kind writes, as `stages.<id>.outputs.<key>` (relative to its output folder).
STAGE_OUTPUT_FILES: dict[str, dict[str, str]] = {
    "generate": {}, "render": {}, "fetch": {}, "commit": {}, "commitments": {},
    "judge": {"duels": "duels.json", "match": "match.json"},
    "report": {"json": "report.json", "markdown": "summary.md", "html": "report.html", "junit": "junit.xml"},
}
NO_SECTIONS = {"version", "secrets", "$schema"}  # never interpolated


def default_output(stage_id: str) -> str:
    return f"out/{stage_id}"


def _undefined(hint: str, name: str, obj: Any = None) -> Any:
    """An undefined name whose error message is `hint` (a Jinja2 StrictUndefined)."""
    from runner404.manifest.sandbox import StrictName

    return StrictName(hint=hint, name=name) if obj is None else StrictName(hint=hint, obj=obj, name=name)


@dataclass(frozen=True)
class _Unset:
    """A top-level name that may not be used here (`vars` inside vars:), made a Jinja2 undefined
    only when an expression is evaluated: manifests without expressions never import Jinja2."""

    hint: str
    name: str


class Namespace:
    """A read-only mapping whose missing keys explain themselves (and `default()` still works)."""

    def __init__(self, path: str, data: Mapping[str, Any], missing: str = "is not defined"):
        self._path, self._data, self._missing = path, data, missing

    def __getitem__(self, key: str) -> Any:
        if key in self._data:
            return wrap(self._data[key], f"{self._path}.{key}")
        hint = f"'{self._path}.{key}' {self._missing}{did_you_mean(key, self._data)}"
        return _undefined(hint, key, self)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __str__(self) -> str:
        return str(unwrap(self))

    def plain(self) -> dict:
        return {k: unwrap(v) for k, v in self._data.items()}


def wrap(value: Any, path: str) -> Any:
    return Namespace(path, value) if isinstance(value, dict) else value


def unwrap(value: Any) -> Any:
    if isinstance(value, Namespace):
        return value.plain()
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


@dataclass(frozen=True)
class StageRef:
    """`stages.<target>` used inside stage `source` (None outside stages) at `mark`."""

    source: str | None
    target: str
    mark: Mark


class ExpressionError(Exception):
    pass


class Interpolator:
    def __init__(self, doc: Document, environ: Mapping[str, str], base_dir: Path):
        self.doc = doc
        self.environ, self.base_dir = environ, base_dir
        self._competitions: dict[str, Any] = {}  # competition_url -> CachedCompetition
        self.errors: list[Diagnostic] = []
        self.refs: list[StageRef] = []
        self.failed: set[JsonPath] = set()  # values whose expressions failed (already reported)
        self.secrets = self._secrets(doc.data.get("secrets"), environ, base_dir)
        self.context: dict[str, Any] = {
            "env": Namespace("env", environ, "is not set in the environment"),
            "secrets": Namespace("secrets", self.secrets, "is not declared under secrets:"),
        }
        self._stage_outputs: dict[str, Any] = {}
        self._resolving: set[str] = set()
        self._where: tuple[str | None, Mark] = (None, Mark(doc.file, 1, 1))

    @staticmethod
    def _secrets(section: Any, environ: Mapping[str, str], base_dir: Path) -> dict[str, Secret]:
        if not isinstance(section, dict):
            return {}
        return {
            name: Secret.from_source(name, source, base_dir, environ)
            for name, source in section.items()
            if isinstance(source, dict) and len(source) == 1
            and isinstance(source.get("env", source.get("file")), str)
        }

    def run(self) -> dict:
        data = self.doc.data
        result = dict(data)
        if isinstance(data.get("vars"), dict):
            hint = "vars cannot refer to other vars (their values see env and secrets only)"
            self.context["vars"] = _Unset(hint, "vars")
            result["vars"] = self.walk(data["vars"], ("vars",))
            self.context["vars"] = Namespace("vars", result["vars"])
        else:
            self.context["vars"] = Namespace("vars", {})
        self.context["stages"] = _Unset("prompt sets cannot refer to stages", "stages")
        if isinstance(data.get("prompts"), dict):
            self.context["prompts"] = _Unset("prompt sets cannot refer to other prompt sets", "prompts")
            result["prompts"] = _PromptSets.resolve(self, self.walk(data["prompts"], ("prompts",)))
            self.context["prompts"] = _PromptSets(self, result["prompts"])
        else:
            self.context["prompts"] = _PromptSets(self, {})
        self.context["stages"] = _Stages(self)
        for key, value in data.items():
            if key not in NO_SECTIONS and key not in ("vars", "prompts"):
                result[key] = self.walk(value, (key,))
        return result

    # -- walking ---------------------------------------------------------------------------

    def walk(self, value: Any, path: JsonPath) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if "${{" in key:
                    self.errors.append(Diagnostic.at(self.doc.key_mark(path + (key,)),
                                                     "expressions are not allowed in keys"))
                out[key] = self.walk(item, path + (key,))
            return out
        if isinstance(value, list):
            return [self.walk(item, path + (i,)) for i, item in enumerate(value)]
        if isinstance(value, str) and "${{" in value:
            return self.string(value, path)
        return value

    def string(self, text: str, path: JsonPath) -> Any:
        mark = self.doc.mark(path)
        stage = path[1] if len(path) > 1 and path[0] == "stages" else None
        saved, self._where = self._where, (stage, mark)
        try:
            whole = _EXPR.fullmatch(text)
            if whole and "}}" not in whole.group(1):
                return self.evaluate(whole.group(1), text, mark, native=True)
            parts: list[Any] = []
            pos = 0
            for match in _EXPR.finditer(text):
                parts.append(text[pos:match.start()])
                parts.append(self.evaluate(match.group(1), match.group(0), mark, native=False))
                pos = match.end()
            rest = text[pos:]
            if "${{" in rest:
                raise self.error(mark, rest[rest.index("${{"):], "unterminated expression: missing '}}'")
            parts.append(rest)
            if any(isinstance(p, Secret) for p in parts):
                return Secret.join([p for p in parts if p != ""])
            return "".join(str(p) for p in parts)
        except ExpressionError:
            self.failed.add(path)
            return text
        finally:
            self._where = saved

    def evaluate(self, source: str, shown: str, mark: Mark, native: bool) -> Any:
        from runner404.manifest.sandbox import ENV, TemplateError, Undefined

        context = {name: _undefined(value.hint, value.name) if isinstance(value, _Unset) else value
                   for name, value in self.context.items()}
        try:
            value = ENV.compile_expression(_dashes_to_subscripts(source), undefined_to_none=False)(context)
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()
        except ExpressionError:
            raise
        except TemplateError as exc:
            raise self.error(mark, shown, getattr(exc, "message", None) or str(exc)) from None
        except Exception as exc:  # the sandbox surfaces Python errors, e.g. 1/0 or "a" - 1
            raise self.error(mark, shown, f"{type(exc).__name__}: {exc}") from None
        value = unwrap(value)
        if not isinstance(value, str | int | float | bool | list | dict | Secret | type(None)):
            raise self.error(mark, shown, f"evaluates to a {type(value).__name__}, not a value")
        if not native and isinstance(value, dict | list):
            raise self.error(mark, shown, "a mapping or list cannot be embedded in text")
        return value if native or isinstance(value, Secret) else ("" if value is None else str(value))

    def error(self, mark: Mark, shown: str, message: str) -> ExpressionError:
        snippet = mark.snippet or ""
        at = snippet.find(shown.splitlines()[0] if shown else shown, mark.col - 1)
        if at >= 0:
            mark = Mark(mark.file, mark.line, at + 1, at + 1 + len(shown.splitlines()[0]), mark.snippet)
        self.errors.append(Diagnostic.at(mark, f"in {shown.strip()}: {message}"))
        return ExpressionError(message)

    # -- round prompt sets (prompts.<id>) ----------------------------------------------------

    def competition(self, setting: str) -> Any:
        """The (cached) competition files under a prompt set's `competition_url`."""
        from runner404.rounds import open_competition

        if setting not in self._competitions:
            self._competitions[setting] = open_competition(setting, self.environ, self.base_dir)
        return self._competitions[setting]

    def _set_mark(self, sid: str) -> Mark:
        path = ("prompts", sid, "round")
        return self.doc.mark(path) if path in self.doc.marks else self.doc.key_mark(("prompts", sid))

    def set_failed(self, sid: str, message: str) -> None:
        """A prompt set that cannot be read: reported once, at its `round:`."""
        if ("prompts", sid) not in self.failed:
            self.failed.add(("prompts", sid))
            self.errors.append(Diagnostic.at(self._set_mark(sid), f"prompt set '{sid}': {message}"))

    def stale_warnings(self, sid: str, competition: Any) -> None:
        shown = {d.message for d in self.errors}
        for line in competition.stale:
            message = f"prompt set '{sid}': {line}"
            if message not in shown:
                self.errors.append(Diagnostic.at(self._set_mark(sid), message, "warning"))

    # -- stages.<id>.outputs -----------------------------------------------------------------

    def stage_outputs(self, stage_id: str) -> dict[str, str] | None:
        if stage_id in self._stage_outputs:
            return self._stage_outputs[stage_id]
        stage = self.doc.data["stages"][stage_id]
        kind = stage.get("uses") if isinstance(stage, dict) else None
        if kind not in STAGE_OUTPUT_FILES:
            return None
        folder = stage.get("output", default_output(stage_id))
        if isinstance(folder, str) and "${{" in folder:
            if stage_id in self._resolving:
                return None  # the output refers to itself; reported where it is evaluated
            self._resolving.add(stage_id)
            try:
                folder = self.string(folder, ("stages", stage_id, "output"))
            finally:
                self._resolving.discard(stage_id)
        if not isinstance(folder, str):
            folder = default_output(stage_id)
        outputs = {"dir": folder}
        outputs.update({k: f"{folder.rstrip('/')}/{name}" for k, name in STAGE_OUTPUT_FILES[kind].items()})
        self._stage_outputs[stage_id] = outputs
        return outputs


class _Stages:
    """`stages`: looking a stage up records the dependency edge."""

    def __init__(self, interpolator: Interpolator):
        self._ip = interpolator
        stages = interpolator.doc.data.get("stages")
        self._ids = list(stages) if isinstance(stages, dict) else []

    def __getitem__(self, stage_id: str) -> Any:
        if stage_id not in self._ids:
            hint = f"unknown stage '{stage_id}'{did_you_mean(stage_id, self._ids)}"
            return _undefined(hint, stage_id, self)
        source, mark = self._ip._where
        self._ip.refs.append(StageRef(source, stage_id, mark))
        outputs = self._ip.stage_outputs(stage_id)
        if outputs is None:
            return Namespace(f"stages.{stage_id}", {"outputs": {}})
        return Namespace(f"stages.{stage_id}", {"outputs": outputs})

    def __contains__(self, stage_id: object) -> bool:
        return stage_id in self._ids

    def __iter__(self):
        return iter(self._ids)


# -- prompts.<id> ----------------------------------------------------------------------------

class _Unavailable(Exception):
    """A `prompts.<id>.<key>` that cannot be given; the text is the expression's error."""


_REPORTED = "reported at the prompt set"


class _AlreadyReported(ExpressionError):
    pass


class _PromptSets:
    """`prompts`: one `_PromptSet` per declared prompt set."""

    def __init__(self, interpolator: Interpolator, section: dict):
        self._ip, self._section = interpolator, section
        self._views: dict[str, _PromptSet] = {}

    @staticmethod
    def resolve(ip: Interpolator, section: dict) -> dict:
        """Write a round set's `competition_url` default and its `round: current` as a number."""
        for sid, spec in section.items():
            path = ("prompts", sid)
            if not isinstance(spec, dict) or "round" not in spec or path in ip.failed:
                continue
            # here, not at the top: they import httpx, which manifests without round sets never need
            from runner404.chain.competition import competition_base
            from runner404.rounds import current_round

            if "competition_url" not in spec:
                spec["competition_url"] = competition_base(None, ip.environ)
            if spec["round"] != "current" or not isinstance(spec["competition_url"], str):
                continue  # a number, or something the schema reports
            try:
                competition = ip.competition(spec["competition_url"])
            except Runner404Error as exc:
                ip.set_failed(sid, str(exc))
                continue
            try:
                spec["round"] = current_round(competition)
            except Runner404Error as exc:
                ip.set_failed(sid, f"round: current needs the competition's state: {exc}")
            ip.stale_warnings(sid, competition)
        return section

    def __getitem__(self, sid: str) -> Any:
        if sid not in self._section:
            hint = f"unknown prompt set '{sid}'{did_you_mean(sid, self._section)}"
            return _undefined(hint, sid, self)
        if sid not in self._views:
            self._views[sid] = _PromptSet(self._ip, sid, self._section[sid])
        return self._views[sid]

    def __contains__(self, sid: object) -> bool:
        return sid in self._section

    def __iter__(self):
        return iter(self._section)


class _PromptSet(Namespace):
    """`prompts.<id>`: its keys are read lazily (a round's seed.json only when `seed` is used)."""

    def __init__(self, interpolator: Interpolator, sid: str, spec: Any):
        self._ip, self._sid = interpolator, sid
        self._spec = spec if isinstance(spec, dict) else {}
        keys = ["seed"] + (["round", "competition_url", "config"] if "round" in self._spec else [])
        super().__init__(f"prompts.{sid}", dict.fromkeys(keys))
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._data:
            if key in ("round", "competition_url", "config"):
                hint = f"'{self._path}.{key}' is defined for round prompt sets (round:) only"
            else:
                hint = f"'{self._path}.{key}' is not defined{did_you_mean(key, self._data)}"
            hint += f"; prompt set '{self._sid}' has: {', '.join(self._data)}"
            return _undefined(hint, key, self)
        try:
            if key not in self._cache:
                self._cache[key] = self._value(key)
        except _Unavailable as exc:
            if str(exc) == _REPORTED:
                from runner404.manifest.sandbox import Reported

                return Reported(hint=f"prompt set '{self._sid}' could not be read", obj=self, name=key)
            return _undefined(str(exc), key, self)
        return wrap(self._cache[key], f"{self._path}.{key}")

    def plain(self) -> dict:
        from runner404.manifest.sandbox import Undefined

        return {k: unwrap(v) for k in self._data if not isinstance(v := self[k], Undefined)}

    def _value(self, key: str) -> Any:
        from runner404.prompts import PromptError, read_prompt_file

        ip, sid, spec = self._ip, self._sid, self._spec
        if any(path[:2] == ("prompts", sid) for path in ip.failed):  # the set or one of its values
            raise _Unavailable(_REPORTED)
        if key == "seed" and isinstance(spec.get("seed"), int):
            return spec["seed"]
        if "round" in spec:
            if not isinstance(spec["round"], int) or not isinstance(spec.get("competition_url"), str):
                raise _Unavailable(_REPORTED)  # the schema reports the value
            if key in ("round", "competition_url"):
                return spec[key]
            try:
                competition = ip.competition(spec["competition_url"])
            except Runner404Error as exc:
                ip.set_failed(sid, str(exc))
                raise _Unavailable(_REPORTED) from None
            try:
                if key == "config":
                    return competition.config().raw
                return competition.seed(spec["round"])
            except Runner404Error as exc:
                if key == "config":
                    raise _Unavailable(f"prompt set '{sid}': {exc}") from None
                ip.set_failed(sid, str(exc))
                raise _Unavailable(_REPORTED) from None
            finally:
                ip.stale_warnings(sid, competition)
        seed = None
        if isinstance(spec.get("file"), str):
            try:
                _, seed = read_prompt_file(ip.base_dir / Path(spec["file"]).expanduser(), spec["file"])
            except PromptError as exc:
                raise _Unavailable(f"prompt set '{sid}' could not be read: {exc.problems[0][1]}") from None
        if seed is None:
            where = " (or 'seed' in its file)" if "file" in spec else ""
            raise _Unavailable(f"prompt set '{sid}' has no seed: set seed: on it{where}")
        return seed
