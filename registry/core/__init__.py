"""The sans-IO core: consensus, membership, registry state and placement — pure, no IO."""
