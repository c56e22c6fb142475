"""Translation between the core's values and the generated protobufs in ``registry.v1``."""
