"""Example third-party reward plugin for nftkit."""
