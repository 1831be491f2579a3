"""The gate-service wire protocol: frames, media types, size limits and messages.

Pure (bytes and frozen dataclasses, no HTTP, database or crypto types) and shared by
``gate`` and ``service``, so both ends parse with one set of checks. Imports only
``core``. ``protocol.wire`` is the frame codec, ``protocol.messages`` the match and
reveal messages, ``protocol.errors`` the error root (each error carries the stable code
the service answers with).
"""
