"""The matching service: FastAPI app, storage and matching orchestration."""
