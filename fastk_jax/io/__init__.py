"""Files: result folders written atomically and read back verified (``files``)."""
