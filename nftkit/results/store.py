"""The results store: runs, metrics and samples in a SQLAlchemy database, and the leaderboard.

Every method opens its own short transaction and returns plain records (``records.py``), so a
store can be shared by threads and used from several processes on one SQLite file. Opening a
store migrates its database to the newest schema. The store is assembled from one part per
table it writes (``runs.py``, ``metrics.py``, ``samples.py``) over the transaction plumbing of
``database.py``.
"""

from __future__ import annotations

from nftkit.results.engine import DB_ENV, DEFAULT_DB_URL, database_url
from nftkit.results.metrics import MetricsMixin
from nftkit.results.runs import RunsMixin, git_sha, package_versions
from nftkit.results.samples import SAMPLE_KEYS, SamplesMixin
from nftkit.results.values import canonical_json, config_hash

__all__ = [
    "DB_ENV",
    "DEFAULT_DB_URL",
    "SAMPLE_KEYS",
    "ResultsStore",
    "canonical_json",
    "config_hash",
    "database_url",
    "git_sha",
    "package_versions",
]


class ResultsStore(RunsMixin, MetricsMixin, SamplesMixin):
    """Runs, metrics and samples in the database at ``url`` (SQLAlchemy URL or SQLite path).

    Opening migrates the database to the newest schema. An unreachable database or a bad URL
    raises NftkitError naming the URL with its password masked.
    """
