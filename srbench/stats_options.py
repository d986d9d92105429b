"""The choices the statistics offer, importable without SciPy (the CLI declares its options with them)."""

ALPHA = 0.05
PROTOCOLS = ("paper", "paired")
UNITS = ("slice", "volume")
