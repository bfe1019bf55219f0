"""The demo "agentic platform": a FastAPI service, a downstream model provider, a load
generator and a one-command local run that follows one failing request through every sink."""
