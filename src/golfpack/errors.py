"""The one exception type golfpack raises for bad input.

Every problem with user input (a corrupt artifact, a wrong shape, a missing
file, a hostile size field) becomes a GolfpackError whose message names the
problem; the CLI prints that message on one line and exits non-zero.
"""


class GolfpackError(Exception):
    """Bad input or an unsupported request, described for the user."""


class FormatError(GolfpackError):
    """An artifact (or other input file) is malformed, truncated or corrupt."""
