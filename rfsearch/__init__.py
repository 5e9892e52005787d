"""rfsearch: exact receptive-field geometry of CNNs, for millions of architectures at once."""

from importlib.metadata import PackageNotFoundError, version

from . import coords, importers, stream, zoo
from .chain_arrays import chains
from .encode import Batch, encode
from .errors import SpecError
from .evaluate import evaluate
from .importers import from_jax, from_keras, from_onnx, from_torch
from .search import SearchSummary, search
from .sources import read_chains
from .spec import Layer, Network, parse_network
from .table import COLUMNS, schema, to_arrow, write_parquet

try:
    __version__ = version("rfsearch")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "COLUMNS",
    "Batch",
    "Layer",
    "Network",
    "SearchSummary",
    "SpecError",
    "__version__",
    "chains",
    "coords",
    "encode",
    "evaluate",
    "from_jax",
    "from_keras",
    "from_onnx",
    "from_torch",
    "importers",
    "parse_network",
    "read_chains",
    "schema",
    "search",
    "stream",
    "to_arrow",
    "write_parquet",
    "zoo",
]
