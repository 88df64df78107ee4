"""Execution: the asyncio DAG executor, the SQLite ledger, retries and signal handling."""
