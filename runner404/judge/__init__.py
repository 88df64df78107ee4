"""The multi-stage VLM duel judge (reference: judge.md), as a pure library.

- `rules`: every constant per preset (`404-cli`, `validator`) and manifest overrides;
- `calls`: the VLM calls of each step as data, and the per-attempt temperature/seed/backoff;
- `replies`: response schemas, lenient reply parsing, neutral fallbacks;
- `duel`: the S1-S4 decisions, the final winner and the duel record;
- `match`: match score, margin and verdict from duel records.

The `judge` stage drives these with its own I/O; `runner404.judge.duel`'s docstring gives the order.
"""
