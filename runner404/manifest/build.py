"""Cross-reference checks and the typed Manifest.

Runs on the resolved tree after schema validation and is defensive about its shape: a part the
schema already rejected is skipped here, so every diagnostic is reported once and the user sees
all independent errors in one pass.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runner404.diagnostics import Diagnostic, did_you_mean
from runner404.manifest.interpolate import STAGE_OUTPUT_FILES, StageRef, default_output
from runner404.manifest.load import Document
from runner404.manifest.model import Edge, Health, Manifest, Pod, Provider, Stage, parse_duration
from runner404.manifest.validate import where
from runner404.plan.graph import find_cycle
from runner404.pods.presets import DEFAULT_HEALTH, DEFAULT_PORT, PRESET_FOR_KIND, PRESETS
from runner404.prompts import PromptError, PromptSet, build_prompts, read_prompt_file
from runner404.secret import Secret

STAGE_COMMON = ("uses", "needs", "description", "output")
# Which stage parameters name folders written by other stages (implicit dependency edges).
INPUT_PARAMS = {"render": ("input",), "judge": ("left", "right"), "report": ("input",)}
# Pod keys that only make sense for one provider type.
PROVIDER_ONLY = {"command": "local", "url": "endpoint", "image": "targon", "resource": "targon"}


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


class ManifestBuilder:
    def __init__(self, doc: Document, data: dict, refs: list[StageRef], path: Path, file: str,
                 broken: set[tuple] = frozenset()):
        self.doc, self.data, self.refs, self.path, self.file = doc, data, refs, path, file
        self.broken = broken  # paths already reported (schema or expression errors)
        self.base_dir = path.parent
        self.diags: list[Diagnostic] = []

    def is_broken(self, path: tuple) -> bool:
        """Whether something at or under `path` was already reported."""
        return any(p[:len(path)] == path for p in self.broken)

    def error(self, path: tuple, message: str, key: bool = False, severity: str = "error") -> None:
        mark = self.doc.key_mark(path) if key else self.doc.mark(path)
        self.diags.append(Diagnostic.at(mark, message, severity))

    def warn(self, path: tuple, message: str, key: bool = False) -> None:
        self.error(path, message, key, "warning")

    # -- whole manifest ----------------------------------------------------------------------

    def build(self, secrets: dict[str, Secret]) -> Manifest:
        default_provider = self.provider(self.data.get("provider"), ("provider",))
        pods = {pid: pod for pid, spec in _mapping(self.data.get("pods")).items()
                if (pod := self.pod(pid, spec, default_provider)) is not None}
        prompt_sets = {sid: ps for sid, spec in _mapping(self.data.get("prompts")).items()
                       if (ps := self.prompt_set(sid, spec)) is not None}
        stages = {sid: st for sid, spec in _mapping(self.data.get("stages")).items()
                  if (st := self.stage(sid, spec)) is not None}
        for stage in stages.values():
            self.check_stage(stage, pods, prompt_sets, default_provider)
        edges = self.edges(stages)
        self.check_cycles(stages, edges)
        self.check_view_sets(stages, edges)
        self.check_outputs(stages)
        self.check_unused(stages)
        return Manifest(
            file=self.file, path=self.path, name=str(self.data.get("name", "")),
            description=self.data.get("description"), vars=_mapping(self.data.get("vars")),
            secrets=secrets, pods=pods, prompt_sets=prompt_sets, stages=stages, edges=edges,
            data=self.data,
        )

    # -- providers and pods ------------------------------------------------------------------

    def provider(self, spec: Any, path: tuple) -> Provider | None:
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict) or spec.get("type") not in ("targon", "local", "endpoint"):
            return None  # the schema reported it
        kind = spec["type"]
        api_key = spec.get("api_key")
        if kind == "targon":
            if api_key is None:
                self.error(path, f"{where(path)}: the targon provider needs api_key, "
                                 "e.g. api_key: ${{ secrets.targon }}", key=True)
            elif not isinstance(api_key, Secret):
                self.warn(path + ("api_key",), f"{where(path)}.api_key is written in the manifest; "
                                               "declare it under secrets: and use ${{ secrets.<name> }}")
        else:
            for key in ("api_key", "base_url"):
                if key in spec:
                    self.error(path + (key,), f"{where(path)}.{key} applies to the targon provider only", key=True)
        return Provider(kind, api_key, spec.get("base_url"))

    def pod(self, pid: str, spec: Any, default: Provider | None) -> Pod | None:
        if not isinstance(spec, dict):
            return None
        path = ("pods", pid)
        provider = self.provider(spec["provider"], path + ("provider",)) if "provider" in spec else None
        if provider is None and "provider" not in spec:
            provider = Provider("endpoint") if "url" in spec and "command" not in spec else default
        if provider is None:
            if "provider" not in spec and "provider" not in self.data:
                self.error(path, f"pod '{pid}' has no provider: set provider: at the top of the "
                                 "manifest or on the pod (targon, local or endpoint)", key=True)
            return None
        preset = spec.get("preset") if isinstance(spec.get("preset"), str) and spec["preset"] in PRESETS else None
        defaults = dict(PRESETS.get(preset, {}))
        if provider.type != "targon":  # the classic images, resources and vLLM args are Targon's
            for key in ("image", "resource", "args", "env"):
                defaults.pop(key, None)
        merged = {**defaults, **spec}
        merged["health"] = {**DEFAULT_HEALTH, **defaults.get("health", {}), **_mapping(spec.get("health"))}
        merged["env"] = {**defaults.get("env", {}), **_mapping(spec.get("env"))}
        ok = True
        for key, only in PROVIDER_ONLY.items():
            if key in spec and provider.type != only:
                self.error(path + (key,), f"pod '{pid}': {key} applies to {only} pods only "
                                          f"(this pod's provider is {provider.type})", key=True)
                ok = False
        if provider.type == "endpoint":
            for key in ("args", "env"):
                if key in spec:
                    self.error(path + (key,), f"pod '{pid}': {key} cannot be set on an endpoint "
                                              "(it is already running)", key=True)
                    ok = False
            if isinstance(spec.get("replicas"), int) and spec["replicas"] > 1:
                self.error(path + ("replicas",), f"pod '{pid}': an endpoint is a single service; "
                                                 "replicas must be 1")
                ok = False
        required = {"targon": ("image",), "local": ("command",), "endpoint": ("url",)}[provider.type]
        for key in required:
            if key not in merged:
                extra = " (the generator preset runs your own image)" if key == "image" and preset == "generator" else ""
                self.error(path, f"pod '{pid}': {provider.type} pods need {key}{extra}", key=True)
                ok = False
        if provider.type == "targon" and "resource" not in merged:
            self.error(path, f"pod '{pid}': targon pods need a resource, e.g. h200-small", key=True)
            ok = False
        if not ok:
            return None
        try:
            health = Health(str(merged["health"]["path"]), parse_duration(merged["health"]["timeout"]),
                            parse_duration(merged["health"]["interval"]))
        except (ValueError, KeyError):
            return None  # a malformed duration was reported by the schema
        command = merged.get("command")
        if isinstance(command, str):
            command = command.split()
        return Pod(
            id=pid, provider=provider, name=str(merged.get("name") or f"{self.data.get('name')}-{pid}"),
            image=merged.get("image"), resource=merged.get("resource"),
            port=int(merged.get("port", DEFAULT_PORT)), args=tuple(str(a) for a in merged.get("args", ())),
            env={k: v if isinstance(v, Secret) else str(v) for k, v in merged["env"].items()},
            command=tuple(command) if command else None, url=merged.get("url"), health=health,
            replicas=int(merged.get("replicas", 1)), keep=bool(merged.get("keep", False)),
            preset=preset, description=spec.get("description"),
        )

    # -- prompt sets -------------------------------------------------------------------------

    def prompt_set(self, sid: str, spec: Any) -> PromptSet | None:
        if not isinstance(spec, dict) or self.is_broken(("prompts", sid)):
            return None
        path = ("prompts", sid)
        sources = [k for k in ("file", "items", "round") if k in spec]
        if len(sources) != 1:
            if sources == ["file", "items"]:
                message = "has both file and items: give exactly one"
            elif sources:
                message = f"has {' and '.join(sources)}: give exactly one of file, items or round"
            else:
                message = "has none of file, items or round: give exactly one"
            self.error(path, f"prompt set '{sid}' {message}", key=True)
            return None
        if "competition_url" in spec and "round" not in spec:
            self.error(path + ("competition_url",), f"prompt set '{sid}': competition_url applies to round "
                                                    "prompt sets only (round: <n> or current)", key=True)
            return None
        seed = spec.get("seed") if isinstance(spec.get("seed"), int) else None
        if "round" in spec:
            return self.round_prompt_set(sid, spec, seed)
        images_from = self.base_dir
        try:
            if "file" in spec:
                if not isinstance(spec["file"], str):
                    return None
                file = self.base_dir / Path(spec["file"]).expanduser()
                prompts, file_seed = read_prompt_file(file, spec["file"])
                seed = seed if seed is not None else file_seed
                images_from = file.parent
            else:
                if not isinstance(spec["items"], list):
                    return None
                prompts = build_prompts(spec["items"], where="items")
        except PromptError as exc:
            for index, message in exc.problems:
                if "items" in spec and index is not None:
                    self.error(path + ("items", index), f"prompt set '{sid}': {message}")
                else:
                    self.error(path + ("file",), f"prompt set '{sid}': {message}")
            return None
        prompt_set = PromptSet(sid, tuple(prompts), seed, images_from)
        missing = False
        for index, prompt in enumerate(prompt_set.prompts):
            local = prompt_set.local_image(prompt)
            if local is not None and not local.is_file():
                where_ = ("items", index) if "items" in spec else ("file",)
                self.error(path + where_, f"prompt set '{sid}': image of '{prompt.stem}' not found: {prompt.image_url}")
                missing = True
        return None if missing else prompt_set

    def round_prompt_set(self, sid: str, spec: dict, seed: int | None) -> PromptSet | None:
        """`round: <n>` (interpolation turned `current` into a number and filled in competition_url)."""
        from runner404.errors import Runner404Error
        from runner404.rounds import open_competition, read_round

        path = ("prompts", sid)
        number, setting = spec.get("round"), spec.get("competition_url")
        if not isinstance(number, int) or isinstance(number, bool) or not isinstance(setting, str):
            return None  # reported by the schema or by interpolation
        at = path + ("round",)
        try:
            competition = open_competition(setting, {}, self.base_dir)
            found = read_round(competition, number)
        except Runner404Error as exc:
            self.error(at, f"prompt set '{sid}': {exc}")
            return None
        for line in found.stale:
            self.warn(at, f"prompt set '{sid}': {line}")
        labels = [f"{found.relpath} line {no}" for no, _ in found.urls]
        try:
            prompts = build_prompts([url for _, url in found.urls], labels=labels)
        except PromptError as exc:
            for _, message in exc.problems:
                self.error(at, f"prompt set '{sid}': {message}")
            return None
        return PromptSet(sid, tuple(prompts), seed if seed is not None else found.seed, self.base_dir,
                         round=number, source=competition.base)

    # -- stages ------------------------------------------------------------------------------

    def stage(self, sid: str, spec: Any) -> Stage | None:
        if not isinstance(spec, dict) or not isinstance(spec.get("uses"), str) \
                or spec["uses"] not in STAGE_OUTPUT_FILES | {"pod": 0, "stop-pods": 0}:
            return None
        kind = spec["uses"]
        output = None
        if kind in STAGE_OUTPUT_FILES:
            output = spec.get("output") if isinstance(spec.get("output"), str) else default_output(sid)
        needs = spec.get("needs") if isinstance(spec.get("needs"), list) else []
        return Stage(
            id=sid, kind=kind, params={k: v for k, v in spec.items() if k not in STAGE_COMMON},
            needs=tuple(n for n in needs if isinstance(n, str)), output=output,
            description=spec.get("description"), mark=self.doc.key_mark(("stages", sid)),
        )

    def check_stage(self, stage: Stage, pods: dict[str, Pod], prompt_sets: dict[str, PromptSet],
                    default_provider: Provider | None) -> None:
        path = ("stages", stage.id)
        declared_pods = _mapping(self.data.get("pods"))
        if stage.pod is not None and isinstance(stage.pod, str):
            if stage.pod not in declared_pods:
                self.error(path + ("pod",), f"stage '{stage.id}': unknown pod '{stage.pod}'"
                                            f"{did_you_mean(stage.pod, declared_pods)}")
            else:
                wanted = PRESET_FOR_KIND.get(stage.kind)
                preset = _mapping(declared_pods[stage.pod]).get("preset")
                if wanted and preset and preset != wanted:
                    self.error(path + ("pod",), f"stage '{stage.id}' ({stage.kind}) uses pod '{stage.pod}' "
                                                f"whose preset is '{preset}'; a {stage.kind} stage needs "
                                                f"a {wanted} pod")
        prompts = stage.prompts
        declared_sets = _mapping(self.data.get("prompts"))
        if isinstance(prompts, str) and prompts not in declared_sets:
            self.error(path + ("prompts",), f"stage '{stage.id}': unknown prompt set '{prompts}'"
                                            f"{did_you_mean(prompts, declared_sets)}")
        if stage.kind == "generate" and "seed" not in stage.params and prompts in prompt_sets \
                and prompt_sets[prompts].seed is None:
            self.error(path, f"stage '{stage.id}' has no seed: set seed: on the stage or on "
                             f"prompt set '{prompts}' (or 'seed' in its file)", key=True)
        declared_stages = _mapping(self.data.get("stages"))
        for index, need in enumerate(stage.needs):
            if need == stage.id:
                self.error(path + ("needs", index), f"stage '{stage.id}' cannot need itself")
            elif need not in declared_stages:
                self.error(path + ("needs", index), f"stage '{stage.id}' needs unknown stage "
                                                    f"'{need}'{did_you_mean(need, declared_stages)}")
        if stage.kind == "commit":
            has_hash = "hash" in stage.params
            has_repo = "repo" in stage.params or "cdn_url" in stage.params
            if has_hash == has_repo:
                self.error(path, f"stage '{stage.id}' commits either hash: or repo: and cdn_url:, "
                                 f"{'not both' if has_hash else 'but has neither'}", key=True)
            elif has_repo:
                for key in ("repo", "cdn_url"):
                    if key not in stage.params:
                        self.error(path, f"stage '{stage.id}': repo: and cdn_url: go together; "
                                         f"{key} is missing", key=True)
        if stage.kind == "fetch":
            self.check_fetch(stage)
        if stage.kind == "judge" and not self.is_broken(path + ("rules",)):
            from runner404.judge.rules import rules_from

            try:
                rules_from(stage.params.get("rules"))
            except ValueError as exc:
                self.error(path + ("rules",), f"stage '{stage.id}': rules: {exc}")
        if stage.kind == "stop-pods":
            if not any(stage.params.get(k) for k in ("names", "prefix", "owned")):
                self.error(path, f"stage '{stage.id}' deletes nothing: give names:, prefix: or owned: true",
                           key=True)
            if default_provider is None or default_provider.type != "targon":
                self.error(path, f"stage '{stage.id}' deletes Targon workloads and needs "
                                 "provider: targon at the top of the manifest", key=True)

    def check_fetch(self, stage: Stage) -> None:
        """The URL template of a fetch stage: only `{stem}` is replaced; http(s), file:// or a folder."""
        from runner404.collector import template_problem

        url = stage.params.get("url")
        if isinstance(url, str) and not self.is_broken(("stages", stage.id, "url")):
            problem = template_problem(url)
            if problem:
                self.error(("stages", stage.id, "url"), f"stage '{stage.id}': url: {problem}")

    # -- graph -------------------------------------------------------------------------------

    def edges(self, stages: dict[str, Stage]) -> list[Edge]:
        edges: list[Edge] = []
        for stage in stages.values():
            for index, need in enumerate(stage.needs):
                if need in stages and need != stage.id:
                    edges.append(Edge(stage.id, need, "needs", self.doc.mark(("stages", stage.id, "needs", index))))
        for ref in self.refs:
            if ref.source in stages and ref.target in stages and ref.source != ref.target:
                edges.append(Edge(ref.source, ref.target, "expression", ref.mark))
            elif ref.source == ref.target and ref.source is not None:
                self.diags.append(Diagnostic.at(ref.mark, f"stage '{ref.source}' refers to its own outputs"))
        outputs = {self.resolve(s.output): s.id for s in stages.values() if s.output}
        for stage in stages.values():
            for key in INPUT_PARAMS.get(stage.kind, ()):
                value = stage.params.get(key)
                if isinstance(value, str):
                    producer = outputs.get(self.resolve(value))
                    if producer and producer != stage.id:
                        edges.append(Edge(stage.id, producer, "path", self.doc.mark(("stages", stage.id, key))))
        unique: dict[tuple[str, str], Edge] = {}
        for edge in edges:
            unique.setdefault((edge.stage, edge.on), edge)
        return list(unique.values())

    def check_cycles(self, stages: dict[str, Stage], edges: list[Edge]) -> None:
        deps: dict[str, list[str]] = {}
        for edge in edges:
            deps.setdefault(edge.stage, []).append(edge.on)
        cycle = find_cycle(list(stages), deps)
        if cycle:
            first = next(e for e in edges if e.stage == cycle[0] and e.on == cycle[1])
            self.diags.append(Diagnostic.at(first.mark, "dependency cycle: " + " → ".join(cycle)
                                            + " (each stage needs the next)"))

    def check_view_sets(self, stages: dict[str, Stage], edges: list[Edge]) -> None:
        """Warn when a judge's rules need views that the render stage feeding it does not make."""
        judges = [stage for stage in stages.values() if stage.kind == "judge"]
        if not judges:
            return  # and the judge's rules stay unimported (start-up time)
        from runner404.judge.rules import required_files, rules_from
        from runner404.views import stem_files, view_sets

        for stage in judges:
            try:
                needed = set(required_files(rules_from(stage.params.get("rules"))))
            except ValueError:
                continue
            for edge in edges:
                producer = stages.get(edge.on)
                if edge.stage != stage.id or producer is None or producer.kind != "render":
                    continue
                try:
                    made = set(stem_files(view_sets(producer.params.get("views"))))
                except (KeyError, TypeError):
                    continue
                if needed - made:
                    self.warn(("stages", stage.id, "rules"), f"stage '{stage.id}' needs "
                              f"{', '.join(sorted(needed - made))}, which stage '{producer.id}' does not "
                              "render (set its views: to match the rules preset); those duels would have "
                              "no preview")

    def resolve(self, folder: str) -> str:
        return os.path.normpath(self.base_dir / Path(folder).expanduser())

    def check_outputs(self, stages: dict[str, Stage]) -> None:
        claimed: list[tuple[str, str]] = []
        for stage in stages.values():
            if not stage.output:
                continue
            mine = self.resolve(stage.output)
            for other, theirs in claimed:
                if mine == theirs or mine.startswith(theirs + os.sep) or theirs.startswith(mine + os.sep):
                    path = ("stages", stage.id, "output")
                    if path not in self.doc.marks:  # the default folder: point at the stage
                        path = ("stages", stage.id)
                    self.error(path, f"stage '{stage.id}' writes to {stage.output}, which overlaps the "
                                     f"output folder of stage '{other}'; give each stage its own output:",
                               key=len(path) == 2)
                    break
            claimed.append((stage.id, mine))

    def check_unused(self, stages: dict[str, Stage]) -> None:
        used_pods = {s.pod for s in stages.values()}
        for pid in _mapping(self.data.get("pods")):
            if pid not in used_pods:
                self.warn(("pods", pid), f"pod '{pid}' is not used by any stage", key=True)
        used_sets = {s.prompts for s in stages.values()}
        for sid in _mapping(self.data.get("prompts")):
            if sid not in used_sets:
                self.warn(("prompts", sid), f"prompt set '{sid}' is not used by any stage", key=True)
