"""What numformer saves, in one place: atomic file writes, typed configs, arrays in
safetensors files, model folders with their checksum manifest, and run folders.

- ``files``: ``atomic_write``, ``write_json``, ``read_json``, ``sha256_file``: every file
  numformer writes goes through ``atomic_write`` (a temporary name, flushed, renamed into
  place), so a crash never leaves a half-written file under a real name.
- ``safetensors``: arrays to and from ``.safetensors`` files (never pickle).

Lower layers import nothing of numformer; everything that saves imports this unit.
"""
