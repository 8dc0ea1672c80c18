"""Results database: runs, metrics and samples of training and evaluation, and the leaderboard.

Open a store with ``ResultsStore(database_url(db))``; the schema is migrated on open.
"""

from nftkit.results.leaderboard import FORMATS, format_leaderboard, plot_leaderboard
from nftkit.results.records import LeaderboardRow, MetricRecord, RunRecord, SampleRecord
from nftkit.results.store import (
    DB_ENV,
    DEFAULT_DB_URL,
    ResultsStore,
    config_hash,
    database_url,
)

__all__ = [
    "DB_ENV",
    "DEFAULT_DB_URL",
    "FORMATS",
    "LeaderboardRow",
    "MetricRecord",
    "ResultsStore",
    "RunRecord",
    "SampleRecord",
    "config_hash",
    "database_url",
    "format_leaderboard",
    "plot_leaderboard",
]
