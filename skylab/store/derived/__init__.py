"""What is derived from the state (the refs and notes) to save time: every file of it declared in
`catalog`, read and written by `derivedfile`'s rules (checksummed, fingerprinted by schema, written
atomically, safe to delete at any moment), dropped all at once by `skylab gc`.

This package imports nothing of it here, so that the store's modules can import its parts
without a cycle."""
