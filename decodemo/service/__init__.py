"""The compare service: one input, the three detectors of a domain side by side.

- :mod:`decodemo.service.compare`: :class:`Service` (domains, thresholds, compare);
- :mod:`decodemo.service.results`: :class:`MethodOutcome`, :class:`Comparison`, the verdict summary;
- :mod:`decodemo.service.export`: a comparison as JSON, with its maps as files.
"""

from decodemo.methods.catalogue import DIFFUSION_METHODS, TITLES
from decodemo.service.compare import DEFAULT_DOMAIN, Service
from decodemo.service.results import Comparison, MethodOutcome, summarise

#: the product's order of the three methods, left to right (from the method catalogue)
METHOD_ORDER = DIFFUSION_METHODS
METHOD_TITLES = TITLES

__all__ = ["METHOD_ORDER", "METHOD_TITLES", "DEFAULT_DOMAIN", "MethodOutcome", "Comparison", "Service", "summarise"]
