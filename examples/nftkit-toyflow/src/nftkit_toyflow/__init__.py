"""A third-party nftkit model family: a tiny pure-torch rectified-flow model."""
