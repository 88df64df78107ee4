"""Chain access for the commit and commitments stages.

Everything in this package is pure Python and never imports bittensor. The one module that will
(`bittensor_adapter`) is loaded lazily by `client.open_chain` for real endpoints; `sim:PATH`
endpoints use the offline rehearsal chain in `rehearsal.py`.

- `codec`: payload JSON, validation, size limit, SCALE framing, tolerant decoding, parsing.
- `client`: the `ChainClient` protocol, `WalletRef`, `CommitReceipt`, `ChainError`, `open_chain`.
- `pallet`: a dict-backed model of the Commitments pallet shared by the fake and the rehearsal.
- `fake`: `FakeChain`, in memory, with fault knobs, for command tests.
- `rehearsal`: the rehearsal chain kept in a JSON file, plus its management functions.
- `wallets`: wallet file lookups without bittensor, deterministic rehearsal addresses.
- `competition`: competition files (state, config, schedules, prompts, seeds) and round rules.
"""
