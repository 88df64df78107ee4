"""The VLM calls of a duel as data, and the per-attempt rules (judge.md §4, §5, §7).

`calls_for(stage, rules, seed)` lists the calls of one step of a duel: their label, response
model and JSON schema, the images in order (as references the driver resolves), the seed base,
max_tokens, attempts and neutral fallback. `attempts(call, rules)` gives, per attempt k, the
temperature, the seed sent and the pause after a failure; `request_params` builds the request
body without the messages. The driver owns the I/O: it builds messages from the prompt texts,
sends each attempt, runs `parse_reply` on the content and falls back or raises as §4 says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner404.judge.replies import checklist_schema, fallback_for, schema_of
from runner404.judge.rules import CallRule, Rules, white_image

STAGES = ("explain", "s1", "s2bv", "s2ac", "s2cl_decompose", "s2cl_verify", "s3", "s4")


@dataclass(frozen=True)
class ImageRef:
    """An image of a call: the prompt image (`side="prompt"`, no path) or a file of side A or B,
    relative to that side's stem folder."""

    side: str
    path: str | None = None


PROMPT = ImageRef("prompt")


@dataclass(frozen=True)
class CallSpec:
    """One VLM call (judge.md §5 table)."""

    stage: str                  # one of STAGES
    label: str
    response: str               # Penalty, Checklist, Verification, SideGuard, Issues
    schema: Mapping[str, Any]   # JSON schema of the response model
    images: tuple[ImageRef, ...]
    seed_base: int              # shifted by +k+100 per attempt (see `attempts`)
    max_tokens: int
    max_retries: int            # attempts
    fallback: Mapping[str, Any] | None   # neutral reply when every attempt failed; None: raise
    order: str | None = None    # "AB" / "BA" (model 1 is A / B), or "A" / "B" for one-sided calls
    view: str | None = None     # S1 angle, S4 side view or BV view pair ("front|back")
    angle_description: str | None = None

    @property
    def schema_name(self) -> str:
        return f"{self.label}-response"

    def response_format(self) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": self.schema_name, "schema": self.schema}}


@dataclass(frozen=True)
class Attempt:
    """Attempt k of a call (judge.md §4)."""

    k: int
    temperature: float
    seed: int
    backoff: float   # seconds to sleep when this attempt fails (0 after the last one)


def attempts(call: CallSpec, rules: Rules) -> tuple[Attempt, ...]:
    """Temperature 0.0 first, then 0.1 + 0.05·k; seed sent = base + k + 100 (the first attempt
    too); sleep 0.5·(k+1) s after a failed attempt that is not the last (judge.md §4)."""
    vlm = rules.vlm
    total = call.max_retries

    def temperature(k: int) -> float:
        return vlm.first_temperature if k == 0 else vlm.retry_temperature_base + vlm.retry_temperature_step * k

    return tuple(Attempt(k=k, temperature=temperature(k), seed=call.seed_base + k + vlm.attempt_seed_offset,
                         backoff=vlm.backoff_seconds * (k + 1) if k + 1 < total else 0.0)
                 for k in range(total))


def request_params(call: CallSpec, attempt: Attempt, rules: Rules) -> dict[str, Any]:
    """The chat-completions body of one attempt, without `messages` (judge.md §4)."""
    return {
        "model": rules.vlm.model,
        "temperature": attempt.temperature,
        "seed": attempt.seed,
        "max_tokens": call.max_tokens,
        "response_format": call.response_format(),
    }


def attempt_failed_message(call: CallSpec, attempt: Attempt, error: BaseException) -> str:
    """`<label>: attempt <k+1>/<n> failed: <ExceptionType>: <first 160 chars>` (judge.md §4)."""
    failure = f"{type(error).__name__}: {str(error)[:160]}"
    return f"{call.label}: attempt {attempt.k + 1}/{call.max_retries} failed: {failure}"


def all_failed_message(call: CallSpec) -> str:
    return f"{call.label}: all {call.max_retries} attempts failed; falling back to neutral"


# ---------------------------------------------------------------------------------------------
# The plan

def _spec(stage: str, rule: CallRule, rules: Rules, label: str, images: tuple[ImageRef, ...], seed: int,
          **extra: Any) -> CallSpec:
    schema = schema_of(rule.response)
    if rule.response == "Checklist":
        schema = checklist_schema(rules.s2.checklist_min_features, rules.s2.checklist_max_features)
    return CallSpec(stage=stage, label=label, response=rule.response, schema=schema, images=images,
                    seed_base=seed, max_tokens=rule.max_tokens, max_retries=rules.vlm.attempts_of(rule),
                    fallback=fallback_for(rule.response) if rule.fallback else None, **extra)


def _pair(stage: str, rule: CallRule, rules: Rules, path_a: str, path_b: str, seeds: tuple[int, int],
          **extra: Any) -> tuple[CallSpec, CallSpec]:
    """The AB call (A as model 1) and the BA call (B as model 1) on the same files."""
    label_ab, label_ba = (rule.labels * 2)[:2]
    a, b = ImageRef("A", path_a), ImageRef("B", path_b)
    return (_spec(stage, rule, rules, label_ab, (PROMPT, a, b), seeds[0], order="AB", **extra),
            _spec(stage, rule, rules, label_ba, (PROMPT, b, a), seeds[1], order="BA", **extra))


def _explain(rules: Rules, seed: int) -> list[CallSpec]:
    rule = rules.vlm.calls.explain
    images = (PROMPT, ImageRef("A", rules.grid), ImageRef("B", rules.grid))
    return [_spec("explain", rule, rules, rule.labels[0], images, seed)]


def _s1(rules: Rules, seed: int) -> list[CallSpec]:
    calls: list[CallSpec] = []
    for angle in rules.s1.angles:
        path = white_image(angle.label)
        calls += _pair("s1", rules.vlm.calls.s1, rules, path, path, (seed, seed),
                       view=angle.label, angle_description=angle.description)
    return calls


def _s2bv(rules: Rules, seed: int, best_views: tuple[str, str] | None) -> list[CallSpec]:
    if best_views is None:
        raise ValueError("the s2bv calls need best_views=(view of A, view of B); without them BV abstains")
    view_a, view_b = best_views
    return list(_pair("s2bv", rules.vlm.calls.s2bv, rules, white_image(view_a), white_image(view_b),
                      (seed, seed), view=f"{view_a}|{view_b}"))


def _s2ac(rules: Rules, seed: int) -> list[CallSpec]:
    return list(_pair("s2ac", rules.vlm.calls.s2ac, rules, rules.grid, rules.grid, (seed, seed)))


def _s2cl_decompose(rules: Rules, seed: int) -> list[CallSpec]:
    rule = rules.vlm.calls.s2cl_decompose
    return [_spec("s2cl_decompose", rule, rules, rule.labels[0], (PROMPT,), seed)]


def _s2cl_verify(rules: Rules, seed: int) -> list[CallSpec]:
    rule = rules.vlm.calls.s2cl_verify
    offset_a, offset_b = rules.s2.verify_seed_offsets
    return [_spec("s2cl_verify", rule, rules, rule.labels[0], (PROMPT, ImageRef(side, rules.grid)), seed + offset,
                  order=side) for side, offset in (("A", offset_a), ("B", offset_b))]


def _s3(rules: Rules, seed: int) -> list[CallSpec]:
    offset_ab, offset_ba = rules.s3.seed_offsets
    return list(_pair("s3", rules.vlm.calls.s3, rules, rules.s3.image, rules.s3.image,
                      (seed + offset_ab, seed + offset_ba), angle_description=rules.s3.angle_description))


def _s4(rules: Rules, seed: int) -> list[CallSpec]:
    rule, s4 = rules.vlm.calls.s4, rules.s4
    reference = white_image(s4.reference_view)
    calls = []
    for side, offset in zip(("A", "B"), s4.seed_offsets):
        for i, view in enumerate(s4.views):
            images = (ImageRef(side, reference), ImageRef(side, white_image(view.label)))
            calls.append(_spec("s4", rule, rules, rule.labels[0], images, seed + offset + s4.seed_step * i,
                               order=side, view=view.label, angle_description=view.description))
    return calls


def calls_for(stage: str, rules: Rules, seed: int, *, best_views: tuple[str, str] | None = None) -> list[CallSpec]:
    """The calls of one step of a duel with duel seed `seed` (judge.md §5 table):

    - `explain`: 1 call; `s1`: AB then BA per S1 angle (8); `s2bv`: AB, BA on each side's best
      view (`best_views` from `duel.best_views`); `s2ac`: AB, BA on the grids;
      `s2cl_decompose`: 1; `s2cl_verify`: A (S+100) then B (S+200); `s3`: AB (S), BA (S+7) on
      the gray image; `s4`: A's four side views (S+5000+100·i) then B's (S+6000+100·i).
    """
    builders = {"explain": _explain, "s1": _s1, "s2ac": _s2ac, "s2cl_decompose": _s2cl_decompose,
                "s2cl_verify": _s2cl_verify, "s3": _s3, "s4": _s4}
    if stage == "s2bv":
        return _s2bv(rules, seed, best_views)
    if stage not in builders:
        raise ValueError(f"unknown judge stage {stage!r} (expected one of {', '.join(STAGES)})")
    return builders[stage](rules, seed)
