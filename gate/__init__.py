"""The gate: edge client that turns a camera frame into an encrypted probe.

Public modules (imported explicitly, so ``veilmatch --help`` never loads onnxruntime):

* ``gate.pipeline`` — ``FacePipeline`` (``from_settings``, ``process``, ``embed_one``,
  ``select``, ``dimension``, ``model_info``), ``FaceResult``, ``QualityVerdict``;
* ``gate.errors`` — ``GateError`` root, ``QualityError`` subclasses with a ``code``;
* ``gate.quality`` — ``QualityThresholds`` and the measurements behind the refusals;
* ``gate.models`` — bundled model pins, float32 conversion, verified cache;
* ``gate.offline_queue`` — ``OfflineQueue``: sealed, bounded, FIFO store of pending probes;
* ``gate.runner`` — frame sources, the frame loop and its pluggable sink;
* ``gate.samples`` / ``gate.augment`` — shipped real photos, face crops, augmentations;
* ``gate.calibrate`` — genuine/impostor score distributions and threshold rule.

See ``docs/gate.md``.
"""
