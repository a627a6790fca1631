"""The engine: plan, per-host state machine, retries, remediations, concurrency and pacing."""
