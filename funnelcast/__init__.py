"""funnelcast: self-hosted lead scoring and pipeline forecasting for B2B sales teams.

This package is the front door only: the `funnelcast` command line that wires `scoring`,
`training` and `serve` together.
"""

__version__ = "0.1.0"
