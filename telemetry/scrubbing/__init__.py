"""One scrubbing policy, declared once, applied to every sink (see ``policy``)."""

from telemetry.scrubbing.patterns import FILTERED
from telemetry.scrubbing.policy import ScrubbingPolicy, Wrapper

__all__ = ["FILTERED", "ScrubbingPolicy", "Wrapper"]
