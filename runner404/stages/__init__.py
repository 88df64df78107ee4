"""Stage kinds: one module each, with `DEFAULT_CONCURRENCY` and `async def run(ctx)`."""
