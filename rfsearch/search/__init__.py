"""The search engine: walk or sample a space on the device, filter there, write Parquet.

Pipeline: a :class:`~rfsearch.spaces.Space` is tabulated into a :class:`~.plan.Plan`
(:mod:`.tables`, :mod:`.plan`), the device programs of :mod:`.walk` score chunks of ids
against the parsed ``where`` (:mod:`.filter`; the layer-wise analysis columns through
:mod:`.layerwise`), and :mod:`.runner` streams the matches to an output dataset
(:mod:`.output`).
"""

from .runner import SearchSummary, search

__all__ = ["SearchSummary", "search"]
