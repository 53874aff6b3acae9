# file_sha256, the reload's fingerprints: a FIFO in a watched directory does not block it.
ktlsd_unit_test(common filewatch)
