"""Training reports: one run's page (``nftkit report RUN``) and run comparisons (``compare``)."""
