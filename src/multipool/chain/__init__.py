"""Chain layer: pure serialization, addresses, proof of work, and the daemon client."""
