"""multipool: many mining pools, one per coin, on one server."""

__version__ = "0.1.0"
