"""Chat rooms on quorum-registry: a ``Room`` worker kind and a ``SyncClient`` script."""
