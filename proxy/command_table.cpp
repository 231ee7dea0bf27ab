// written by the helper that owns it
