"""The gate-service wire protocol: frames, media types, size limits and messages.

Pure (bytes and dataclasses, no HTTP or database types) and shared by ``gate`` and
``service``, so both ends parse with one set of checks. Imports only ``core``.
"""
