"""Images -> features (n, p), sharded over every device, into a resumable feature store.

sources.py   image sources in row order (THINGS layout, folder / list file, TFDS)
decode.py    decoding + resizing in background threads, deterministic order
extractor.py the jitted forward pass: batch over the ('data',) mesh, parameters replicated, token pooling
store.py     the feature store: shards, record, final .npy / .h5, refusal of other keys
pipeline.py  `extract` (resume, multi-host), config wiring, `features_for_images`
"""
