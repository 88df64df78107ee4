"""Competition data files (protocols.md §6) and the round rules of the commit commands.

Files are read from a base that is an http(s) URL (GET, 10 s timeout, redirects followed), a
`file://` URL or a local folder: `state.json`, `config.json`, `rounds/<n>/schedule.json`,
`rounds/<n>/prompts.txt`, `rounds/<n>/seed.json`. The base defaults to the public competition
repository and can be overridden by an argument or `RUNNER404_COMPETITION_URL`
(`competition_base`).

Every failure is a `CompetitionError` (exit 1) whose text follows the classic tool
(classic-cli.md §3.12): `Failed to fetch <file> from <url>: <err>` when the file cannot be read
or is not JSON, `Failed to parse <file>: <err>` when its content does not fit the model. Commands
prefix it (`Failed to fetch state: ...`).

Round rules (pure functions):
- `round_to_commit`: refuses before the current round's earliest reveal block; otherwise picks the
  round from the *predicted reveal block* (current block + blocks_until_reveal + a safety
  margin), because validators bucket commitments by reveal block (classic-cli.md D3), and says
  whether the commit straddles the boundary.
- `commitment_window`: the reveal blocks that count for a round when listing commitments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import httpx

from runner404.chain.codec import RevealWindow
from runner404.errors import Runner404Error, UsageError

DEFAULT_COMPETITION_URL = "https://raw.githubusercontent.com/404-Repo/404-active-competition/main"
COMPETITION_URL_ENV = "RUNNER404_COMPETITION_URL"
FETCH_TIMEOUT = 10.0
BLOCKS_UNTIL_REVEAL = 2
DEFAULT_REVEAL_MARGIN = 3  # blocks: drand lag and inclusion delay on top of blocks_until_reveal
STAGES = ("open", "miner_generation", "downloading", "duels", "finalizing", "finished", "paused")


class CompetitionError(Runner404Error):
    """A competition file could not be fetched or parsed."""


class RoundError(Runner404Error):
    """The round rules refuse the request (too early to commit, round not revealed yet)."""


def competition_base(explicit: str | None = None,
                     environ: Mapping[str, str] | None = None) -> str:
    """The competition base: `explicit`, else `$RUNNER404_COMPETITION_URL`, else the public
    repository. Empty values count as unset; a trailing '/' is removed."""
    env = os.environ if environ is None else environ
    for candidate in (explicit, env.get(COMPETITION_URL_ENV)):
        if candidate and candidate.strip():
            return candidate.strip().rstrip("/") or "/"
    return DEFAULT_COMPETITION_URL


# --- models ----------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _int_field(data: dict[str, Any], key: str, *, required: bool = True,
               minimum: int | None = 0) -> int | None:
    if key not in data or data[key] is None:
        if required:
            raise ValueError(f"{key}: field required")
        return None
    value = data[key]
    if not _is_int(value):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key}: must be ≥ {minimum}, got {value}")
    return value


def _str_field(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    if key not in data or data[key] is None:
        if required:
            raise ValueError(f"{key}: field required")
        return None
    if not isinstance(data[key], str):
        raise ValueError(f"{key}: expected a string, got {data[key]!r}")
    return data[key]


def _num_field(data: dict[str, Any], key: str) -> float | None:
    if key not in data or data[key] is None:
        return None
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class CompetitionState:
    current_round: int
    stage: str
    next_stage_eta: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> CompetitionState:
        data = _require_object(data)
        return cls(current_round=_int_field(data, "current_round"),  # type: ignore[arg-type]
                   stage=_str_field(data, "stage"),  # type: ignore[arg-type]
                   next_stage_eta=_str_field(data, "next_stage_eta", required=False))


@dataclass(frozen=True)
class Schedule:
    earliest_reveal_block: int
    latest_reveal_block: int
    generation_deadline_block: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> Schedule:
        data = _require_object(data)
        earliest = _int_field(data, "earliest_reveal_block")
        latest = _int_field(data, "latest_reveal_block")
        assert earliest is not None and latest is not None
        if latest < earliest:
            raise ValueError(f"latest_reveal_block {latest} is before earliest_reveal_block "
                             f"{earliest}")
        return cls(earliest, latest, _int_field(data, "generation_deadline_block", required=False))


@dataclass(frozen=True)
class CompetitionConfig:
    """`config.json` (protocols.md §6.2). Known fields are type-checked when present; all of
    them are optional here because no command depends on them yet. `raw` keeps the whole file."""

    name: str | None = None
    first_evaluation_date: str | None = None
    generation_stage_minutes: int | None = None
    win_margin: float | None = None
    weight_decay: float | None = None
    weight_floor: float | None = None
    prompts_per_round: int | None = None
    carryover_prompts: int | None = None
    round_duration_days: float | None = None
    round_start_time: str | None = None
    audit_repeats: int = 3
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Any) -> CompetitionConfig:
        data = _require_object(data)
        repeats = _int_field(data, "audit_repeats", required=False, minimum=1)
        return cls(
            name=_str_field(data, "name", required=False),
            first_evaluation_date=_str_field(data, "first_evaluation_date", required=False),
            generation_stage_minutes=_int_field(data, "generation_stage_minutes", required=False),
            win_margin=_num_field(data, "win_margin"),
            weight_decay=_num_field(data, "weight_decay"),
            weight_floor=_num_field(data, "weight_floor"),
            prompts_per_round=_int_field(data, "prompts_per_round", required=False),
            carryover_prompts=_int_field(data, "carryover_prompts", required=False),
            round_duration_days=_num_field(data, "round_duration_days"),
            round_start_time=_str_field(data, "round_start_time", required=False),
            audit_repeats=3 if repeats is None else repeats,
            raw=dict(data))


def _seed_from_json(data: Any) -> int:
    data = _require_object(data)
    seed = _int_field(data, "seed")
    assert seed is not None
    if seed >= 1 << 32:
        raise ValueError(f"seed: must be a 32-bit unsigned integer, got {seed}")
    return seed


# --- fetching --------------------------------------------------------------------------------

def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class Competition:
    """Reads the competition files under one base (see the module docstring)."""

    def __init__(self, base: str | Path | None = None, *, timeout: float = FETCH_TIMEOUT):
        base = str(base) if base is not None else DEFAULT_COMPETITION_URL
        self.base = base.rstrip("/") or "/"
        self.timeout = timeout
        scheme = urlsplit(self.base).scheme.lower()
        if scheme in ("http", "https"):
            self._kind = "http"
            self._root: Path | None = None
        elif scheme == "file":
            parts = urlsplit(self.base)
            if parts.netloc not in ("", "localhost"):
                raise UsageError(f"file:// URL with a remote host is not supported: {self.base}")
            self._kind = "file"
            self._root = Path(url2pathname(unquote(parts.path)))
        elif "://" in self.base:
            raise UsageError(f"Unsupported competition URL: {self.base} (use http(s)://, file:// "
                             "or a folder)")
        else:
            self._kind = "folder"
            self._root = Path(self.base).expanduser()

    def __repr__(self) -> str:
        return f"Competition({self.base!r})"

    def url(self, relpath: str) -> str:
        """Where a file is read from, as shown in messages."""
        if self._kind == "folder":
            assert self._root is not None
            return str(self._root / relpath)
        return f"{self.base}/{relpath}"

    def _read(self, relpath: str) -> bytes:
        if self._kind == "http":
            response = httpx.get(self.url(relpath), timeout=self.timeout, follow_redirects=True)
            response.raise_for_status()
            return response.content
        assert self._root is not None
        return (self._root / relpath).read_bytes()

    def fetch(self, relpath: str) -> bytes:
        """The raw bytes of a file; `CompetitionError` "Failed to fetch ..." otherwise."""
        try:
            return self._read(relpath)
        except (httpx.HTTPError, OSError, httpx.InvalidURL, ValueError) as exc:
            raise CompetitionError(f"Failed to fetch {Path(relpath).name} from "
                                   f"{self.url(relpath)}: {_describe(exc, self.timeout)}") from None

    def _json(self, relpath: str) -> Any:
        raw = self.fetch(relpath)
        try:
            return json.loads(raw)
        except ValueError as exc:  # a non-JSON body counts as a fetch failure (classic)
            raise CompetitionError(f"Failed to fetch {Path(relpath).name} from "
                                   f"{self.url(relpath)}: {exc}") from None

    def _model(self, relpath: str, build: Callable[[Any], Any]) -> Any:
        data = self._json(relpath)
        try:
            return build(data)
        except ValueError as exc:
            raise CompetitionError(f"Failed to parse {Path(relpath).name}: {exc}") from None

    # --- files -----------------------------------------------------------------------------

    def state(self) -> CompetitionState:
        return self._model("state.json", CompetitionState.from_json)

    def config(self) -> CompetitionConfig:
        return self._model("config.json", CompetitionConfig.from_json)

    def schedule(self, round_number: int) -> Schedule:
        return self._model(f"rounds/{_round(round_number)}/schedule.json", Schedule.from_json)

    def seed(self, round_number: int) -> int:
        return self._model(f"rounds/{_round(round_number)}/seed.json", _seed_from_json)

    def prompt_lines(self, round_number: int) -> list[tuple[int, str]]:
        """The round's prompt image URLs with their line numbers, one per non-blank line, in file
        order (a byte-order mark is not part of the first URL)."""
        raw = self.fetch(self.prompts_path(round_number))
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CompetitionError(f"Failed to parse prompts.txt: {exc}") from None
        return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]

    def prompts(self, round_number: int) -> list[str]:
        """The round's prompt image URLs, one per non-blank line, in file order."""
        return [url for _, url in self.prompt_lines(round_number)]

    @staticmethod
    def prompts_path(round_number: int) -> str:
        return f"rounds/{_round(round_number)}/prompts.txt"

    def window(self, round_number: int, current_round: int | None = None) -> RevealWindow:
        """`commitment_window` for a round, reading state and schedules as needed."""
        if current_round is None:
            current_round = self.state().current_round
        return commitment_window(round_number, current_round, self.schedule)


def _round(value: Any) -> int:
    if not _is_int(value) or value < 0:
        raise UsageError(f"Round must be a non-negative integer, got {value!r}")
    return value


# --- round rules -----------------------------------------------------------------------------

@dataclass(frozen=True)
class RoundChoice:
    """Which round a commit made now counts for.

    `straddles` is true when the classic rule (current block ≤ latest reveal block → current
    round) and the predicted reveal block disagree: the reveal may land on either side of the
    boundary. `round` is then the predicted one (the next round); callers warn or refuse unless
    forced.
    """

    round: int
    current_round: int
    current_block: int
    predicted_reveal_block: int
    latest_reveal_block: int
    straddles: bool

    @property
    def warning(self) -> str | None:
        if not self.straddles:
            return None
        return (f"Block {self.current_block} is within round {self.current_round}'s reveal "
                f"window (latest reveal block {self.latest_reveal_block}), but the reveal is "
                f"expected around block {self.predicted_reveal_block}, so the commitment will "
                f"most likely count for round {self.round}, possibly for round "
                f"{self.current_round}")


def round_to_commit(current_round: int, schedule: Schedule, current_block: int,
                    reveal_margin: int = DEFAULT_REVEAL_MARGIN, *,
                    blocks_until_reveal: int = BLOCKS_UNTIL_REVEAL) -> RoundChoice:
    """The round a commit submitted at `current_block` counts for (`schedule` is the current
    round's). Raises `RoundError` before the earliest reveal block."""
    for value, what in ((current_round, "current_round"), (current_block, "current_block"),
                        (reveal_margin, "reveal_margin"),
                        (blocks_until_reveal, "blocks_until_reveal")):
        if not _is_int(value) or value < 0:
            raise UsageError(f"{what} must be a non-negative integer, got {value!r}")
    if current_block < schedule.earliest_reveal_block:
        raise RoundError(f"Current block {current_block} is before the earliest reveal block "
                         f"{schedule.earliest_reveal_block}")
    predicted = current_block + blocks_until_reveal + reveal_margin
    latest = schedule.latest_reveal_block
    in_current = predicted <= latest
    return RoundChoice(
        round=current_round if in_current else current_round + 1,
        current_round=current_round, current_block=current_block,
        predicted_reveal_block=predicted, latest_reveal_block=latest,
        straddles=not in_current and current_block <= latest)


def resolve_round(spec: int | str, current_round: int) -> int:
    """A round given as a number, `current` or `next`."""
    if spec == "current":
        return current_round
    if spec == "next":
        return current_round + 1
    if isinstance(spec, str) and spec.strip().isdigit():
        return int(spec)
    return _round(spec)


def commitment_window(round_number: int, current_round: int,
                      schedules: Mapping[int, Schedule] | Callable[[int], Schedule]) -> RevealWindow:
    """The reveal blocks that count for `round_number` (protocols.md §6.4):

    - a past or the current round: its schedule's earliest..latest reveal block;
    - the next round: every block after the current round's latest reveal block;
    - later rounds: `RoundError` "Round <n> is not yet revealed. Next round is <current+1>."
    `schedules` maps a round number to its schedule (a mapping or a function such as
    `Competition.schedule`).
    """
    _round(round_number)
    if round_number > current_round + 1:
        raise RoundError(f"Round {round_number} is not yet revealed. Next round is "
                         f"{current_round + 1}.")

    def schedule_of(n: int) -> Schedule:
        if callable(schedules):
            return schedules(n)
        try:
            return schedules[n]
        except KeyError:
            raise RoundError(f"No schedule for round {n}") from None

    if round_number <= current_round:
        schedule = schedule_of(round_number)
        return RevealWindow(schedule.earliest_reveal_block, schedule.latest_reveal_block)
    return RevealWindow(schedule_of(current_round).latest_reveal_block + 1, None)
