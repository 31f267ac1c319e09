"""Apply a resolved profile to this process: environment variables (and, in compat.patches, code)."""
