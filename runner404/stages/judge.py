"""`judge`: the multi-stage VLM duel for every prompt stem (judge.md §7), then the match.

Duels run `concurrency` at a time; every VLM call of every duel shares one in-flight limit
(`max_inflight`), and the calls of one step that do not depend on each other run together. A duel
is an item: `<out>/<stem>.json` is written when it ends, so a rerun asks the VLM nothing already
decided. A side whose stem folder is missing, or lacks a required PNG or has one that is not a
well-formed PNG (structure and CRCs), has "no preview" (never a crash); a duel that fails is
recorded as `skipped` with its error. Every run rewrites `<out>/duels.json` (all records, prompt
order) and `<out>/match.json` (score, margin, verdict against `win_margin`, counts by deciding
stage).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

from runner404 import png
from runner404.engine import atomic
from runner404.engine.context import ItemFailure, StageContext
from runner404.judge import duel, messages
from runner404.judge.calls import CallSpec, ImageRef, calls_for
from runner404.judge.embeddings import read_embeddings
from runner404.judge.match import score_match
from runner404.judge.rules import Rules, required_files, rules_from
from runner404.judge.vlm import ImageCache, VlmClient, VlmError
from runner404.prompts import Prompt, PromptSet

DEFAULT_CONCURRENCY = 16  # a duel has up to 8 calls in flight (S1, S4); 16 duels keep 32 seqs busy through their gaps


def present_files(folder: Path, needed: list[str]) -> set[str] | None:
    """The needed files of a stem folder that exist and are well-formed PNGs; None without the
    folder. The render stage inflated every PNG when it received it; the structure and CRCs
    still catch a file truncated or damaged since, at a small part of the cost."""
    if not folder.is_dir():
        return None
    present = set()
    for name in needed:
        try:
            png.check((folder / name).read_bytes())
        except (OSError, png.PngError):
            continue
        present.add(name)
    return present


class Duel:
    """One duel's I/O: resolves images, builds messages, sends calls, emits the stage log."""

    def __init__(self, ctx: StageContext, client: VlmClient, rules: Rules, templates: messages.Templates,
                 seed: int, prompt: Prompt, prompt_image: str, sides: dict[str, Path]):
        self.ctx, self.client, self.rules, self.t = ctx, client, rules, templates
        self.seed, self.prompt, self.prompt_image, self.sides = seed, prompt, prompt_image, sides

    def log(self, line: str) -> None:
        self.ctx.event("duel_log", stage=self.ctx.id, item=self.prompt.stem, line=line)

    def image(self, ref: ImageRef) -> str | Path:
        return self.prompt_image if ref.side == "prompt" else self.sides[ref.side] / (ref.path or "")

    def chat(self, call: CallSpec, extra: dict[str, Any]) -> list[dict]:
        images = [self.image(ref) for ref in call.images]
        if call.stage in ("s1", "s3"):
            system, parts = messages.prompt_match(self.t, *images, angle=call.angle_description or "")
        elif call.stage == "s2bv":
            system, parts = messages.best_view(self.t, *images)
        elif call.stage == "s2ac":
            system, parts = messages.artifact_compare(self.t, *images)
        elif call.stage == "s2cl_decompose":
            system, parts = messages.checklist_decompose(self.t, *images)
        elif call.stage == "s2cl_verify":
            system, parts = messages.checklist_verify(self.t, *images, extra["main_object"], extra["features"])
        elif call.stage == "s4":
            system, parts = messages.side_guard(self.t, *images, view=call.angle_description or call.view or "")
        else:
            system, parts = messages.explain(self.t, *images)
        return [{"role": "system", "content": system}, {"role": "user", "content": self.client.content(parts)}]

    async def ask(self, call: CallSpec, **extra: Any) -> dict:
        return await self.client.call(self.chat(call, extra), call, self.rules)

    async def ask_or_none(self, call: CallSpec, **extra: Any) -> dict | None:
        """For calls without a fallback, whose failure the decision logic handles (checklist)."""
        try:
            return await self.ask(call, **extra)
        except VlmError:
            return None

    async def pairs(self, stage: str, **kw: Any) -> dict[str, tuple[dict, dict]]:
        """AB and BA calls of a step, asked together: {view: (ab, ba)}."""
        calls = calls_for(stage, self.rules, self.seed, **kw)
        replies = await asyncio.gather(*(self.ask(call) for call in calls))
        grouped: dict[str, dict[str, dict]] = {}
        for call, reply in zip(calls, replies):
            grouped.setdefault(call.view or "", {})[call.order or ""] = reply
        return {view: (pair["AB"], pair["BA"]) for view, pair in grouped.items()}

    def emit(self, stage: str, result: Any) -> None:
        self.log(duel.stage_line(self.prompt.stem, stage, result.record(self.rules)))

    async def run(self) -> dict:
        rules, started = self.rules, time.monotonic()
        explain = asyncio.ensure_future(self.ask(calls_for("explain", rules, self.seed)[0]))
        try:
            s1 = duel.decide_s1(await self.pairs("s1"), rules)
            self.emit("S1", s1)
            if s1.choice != duel.DRAW:
                return duel.duel_record(self.prompt.stem, self.prompt.image_url, rules, s1=s1,
                                        issues=(await explain)["issues"])
            s2 = await self.s2()
            self.emit("S2", s2)
            s3 = await self.s3() if s2.choice == duel.DRAW else None
            if s3 is not None:
                self.emit("S3", s3)
            primary = duel.primary_decision(s2, s3, rules)
            s4_calls = calls_for("s4", rules, self.seed)
            verdicts = await asyncio.gather(*(self.ask(call) for call in s4_calls))
            by_side: dict[str, dict[str, dict]] = {"A": {}, "B": {}}
            for call, reply in zip(s4_calls, verdicts):
                by_side[call.order or ""][call.view or ""] = reply
            s4 = duel.decide_s4(primary.choice, by_side["A"], by_side["B"], rules)
            self.emit("S4", s4)
            return duel.duel_record(self.prompt.stem, self.prompt.image_url, rules, s1=s1, s2=s2, s3=s3, s4=s4,
                                    issues=(await explain)["issues"],
                                    elapsed_seconds=time.monotonic() - started)
        finally:
            explain.cancel()

    async def s2(self) -> duel.S2Result:
        rules = self.rules
        views = duel.best_views(read_embeddings(self.sides["A"] / "embeddings.npz"),
                                read_embeddings(self.sides["B"] / "embeddings.npz"), rules)

        async def best_view() -> duel.PenaltyPair | None:
            if views is None:
                return None
            (ab, ba), = (await self.pairs("s2bv", best_views=views)).values()
            return duel.penalty_pair(ab, ba)

        async def artifact_compare() -> duel.PenaltyPair:
            (ab, ba), = (await self.pairs("s2ac")).values()
            return duel.penalty_pair(ab, ba)

        async def checklist() -> duel.ChecklistResult:
            decomposition = await self.ask_or_none(calls_for("s2cl_decompose", rules, self.seed)[0])
            verify_a = verify_b = None
            if decomposition is not None:
                a_call, b_call = calls_for("s2cl_verify", rules, self.seed)
                verify_a, verify_b = await asyncio.gather(
                    *(self.ask_or_none(call, main_object=decomposition["main_object"],
                                       features=decomposition["features"]) for call in (a_call, b_call)))
            return duel.checklist_result(decomposition, verify_a, verify_b, rules)

        bv, ac, cl = await asyncio.gather(best_view(), artifact_compare(), checklist())
        return duel.decide_s2(bv, ac, cl, rules)

    async def s3(self) -> duel.S3Result:
        rules = self.rules
        try:
            gate = duel.gray_stats((self.sides["A"] / rules.s3.image).read_bytes(),
                                   (self.sides["B"] / rules.s3.image).read_bytes(), rules)
        except OSError as exc:
            gate = duel.gate_unavailable(str(exc))
        if not gate.fired:
            return duel.decide_s3(gate, None, None, rules)
        (ab, ba), = (await self.pairs("s3")).values()
        return duel.decide_s3(gate, ab, ba, rules)


def write_record(out: Path, record: dict) -> Path:
    path = out / f"{record['stem']}.json"
    atomic.write_text(path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path


def write_match(ctx: StageContext, prompt_set: PromptSet, rules_spec: Any) -> dict:
    """duels.json (every stem with a record, in prompt order) and match.json."""
    out = ctx.output_dir
    records = []
    for prompt in prompt_set.prompts:
        try:
            records.append(json.loads((out / f"{prompt.stem}.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    atomic.write_text(out / "duels.json", json.dumps({"results": records}, indent=2, ensure_ascii=False) + "\n")
    score = score_match(records, float(ctx.params.get("win_margin", 0.07)))
    match = {"left_dir": ctx.params["left"], "right_dir": ctx.params["right"], "rules": rules_spec,
             "seed": ctx.params["seed"], "prompts": len(prompt_set.prompts), **score.as_dict()}
    atomic.write_text(out / "match.json", json.dumps(match, indent=2, ensure_ascii=False) + "\n")
    return match


async def run(ctx: StageContext) -> None:
    params = ctx.params
    rules_spec = params.get("rules", "404-cli")
    try:
        rules = rules_from(rules_spec)
    except ValueError as exc:
        raise ItemFailure(f"rules: {exc}") from None
    templates = messages.Templates(ctx.path(params["templates"]) if params.get("templates") else None)
    prompt_set = ctx.manifest.prompt_sets[ctx.stage.prompts or ""]
    by_stem = {p.stem: p for p in prompt_set.prompts}
    left, right = ctx.path(params["left"]), ctx.path(params["right"])
    needed = required_files(rules)
    out = ctx.output_dir
    out.mkdir(parents=True, exist_ok=True)
    max_inflight = int(params.get("max_inflight", 32))
    limit = asyncio.Semaphore(max_inflight)
    images = ImageCache()  # shared: the duels of every workload send the same prompt images
    clients: list[VlmClient] = []
    lock = asyncio.Lock()
    timeout = rules.vlm.timeout

    async def client_for(stem: str) -> VlmClient:
        """VLM clients are made (and the judge pod started) only when a duel needs one."""
        async with lock:
            if not clients:
                for workload in await ctx.workloads():
                    clients.append(VlmClient(workload.url, limit, timeout=timeout, max_inflight=max_inflight,
                                             images=images,
                                             on_warning=lambda line: ctx.event("vlm_warning", stage=ctx.id,
                                                                               line=line)))
                client_for.cycle = itertools.cycle(clients)  # type: ignore[attr-defined]
        return next(client_for.cycle)  # type: ignore[attr-defined]

    async def judge(stem: str) -> list[Path]:
        prompt = by_stem[stem]
        sides = {"A": left / stem, "B": right / stem}
        ctx.event("duel_log", stage=ctx.id, item=stem, line=duel.judging_line(stem))
        preview = duel.check_previews(present_files(sides["A"], needed), present_files(sides["B"], needed), rules)
        try:
            if preview is not None:
                record = duel.duel_record(stem, prompt.image_url, rules, preview=preview)
            else:
                match = Duel(ctx, await client_for(stem), rules, templates, int(params["seed"]), prompt,
                             prompt_set.image_url(prompt), sides)
                record = await match.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one failing duel never aborts the others; it is recorded
            reason = f"{type(exc).__name__}: {exc}"
            write_record(out, duel.skipped_record(stem, prompt.image_url, reason))
            raise ItemFailure(f"duel failed: {reason}") from None
        ctx.event("duel_log", stage=ctx.id, item=stem, line=duel.final_line(record))
        return [await asyncio.to_thread(write_record, out, record)]  # its fsync keeps other duels waiting

    try:
        if ctx.todo:
            await ctx.map(ctx.todo, judge)
    finally:
        for client in clients:
            await client.aclose()
    match = write_match(ctx, prompt_set, rules_spec)
    ctx.summary.append(
        f"match: {match['right_dir']} vs {match['left_dir']}: score {match['score']:+d} over {match['duels']} duels, "
        f"margin {match['margin']:+.3f} ({'qualifies' if match['qualifies'] else 'does not qualify'} at "
        f"{match['win_margin']:g}); decided by " + ", ".join(f"{k} {v}" for k, v in match["by_stage"].items() if v))
