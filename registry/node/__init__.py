"""The IO shell: event loop driver, peer transport, servicers, file storage, CLI."""
