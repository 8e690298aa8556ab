"""Learning: networks, regularizers, the learners behind one registry, the chunked driver, checkpoints."""
