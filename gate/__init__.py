"""The gate: edge client that turns a camera frame into an encrypted probe."""
